// The guides section navigates like a single-page app: a click on a topic fetches that topic's
// page, swaps in its article and calls `history.pushState`; Back and Forward swap it back on
// `popstate`. Every topic is also a real page, so a reload or a shared link still works.
// The tag watches pushState/replaceState/popstate itself: this router never calls it.

import { frame } from '/shop.js';

frame('guides');

const article = () => document.getElementById('guide');

function markCurrent() {
  for (const a of document.querySelectorAll('a[data-spa]')) {
    if (new URL(a.href).pathname === location.pathname) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// Our own pages, from our own origin: parsing them is how the section gets its content, and
// DOMParser runs no scripts. Data from elsewhere is never parsed as HTML anywhere in the demo.
async function show(url) {
  const res = await fetch(url, { credentials: 'same-origin' });
  if (!res.ok) {
    location.assign(url);
    return;
  }
  const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
  const next = doc.getElementById('guide');
  if (!next) {
    location.assign(url);
    return;
  }
  article().replaceWith(document.importNode(next, true));
  document.title = doc.title;
  markCurrent();
  wireRemember();
  document.dispatchEvent(new CustomEvent('demo:navigated', { detail: { url: String(url) } }));
}

function wireRemember() {
  document.getElementById('remember')?.addEventListener('click', () => {
    // Same URL, new history state: a SPA does this all the time (scroll, filters). The tag
    // must not count it as a page view.
    history.replaceState({ scrollY: window.scrollY }, '', location.href);
    document.dispatchEvent(new CustomEvent('demo:remembered'));
  });
}

document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[data-spa]');
  if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  // Many routers push even when the link points at the current page; the tag must see that
  // the URL did not change and count nothing.
  history.pushState({}, '', a.href);
  show(a.href);
});

window.addEventListener('popstate', () => show(location.href));

markCurrent();
wireRemember();
