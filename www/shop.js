// The demo shop's own code: its catalogue, its cart, its page frame and its consent banner, and
// the one place it talks to the tag. A real merchant has all of this already; the only utt
// parts are the snippet in each page's head and the `track()` calls below.

import { h, fill } from '/dom.js';

/** Prices are integer cents: money is never floating point, in the shop or in the tag. */
export const PRODUCTS = [
  { sku: 'TRAIL-42', name: 'Trail runner', category: 'shoes', cents: 11990, blurb: 'Grippy, light and made for muddy mornings.' },
  { sku: 'JACKET-W', name: 'Wind jacket', category: 'outerwear', cents: 8950, blurb: 'Packs into its own pocket; shrugs off a squall.' },
  { sku: 'SOCK-3P', name: 'Merino socks, 3 pairs', category: 'socks', cents: 2400, blurb: 'Warm when wet, and they do not smell after a week.' },
  { sku: 'CAP-1', name: 'Running cap', category: 'accessories', cents: 1995, blurb: 'Shade for long summer runs.' },
];

export const CURRENCY = 'EUR';

/** The shop's promo codes. The collector maps the same codes to the partners who own them. */
export const PROMO_CODES = {
  SPRING10: { label: '10% off', discount: (cents) => Math.round(cents / 10) },
  WELCOME5: { label: '€5 off', discount: (cents) => Math.min(cents, 500) },
};

export function product(sku) {
  return PRODUCTS.find((p) => p.sku === sku);
}

/** Cents as the decimal string the tag takes for amounts (`11990` → `"119.90"`). */
export function decimal(cents) {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

export function price(cents) {
  return `€${decimal(cents)}`;
}

// ---- the cart, kept in localStorage like many small shops do ----

const CART = 'demo_cart';

export function cart() {
  try {
    const lines = JSON.parse(localStorage.getItem(CART) ?? '[]');
    return Array.isArray(lines) ? lines.filter((l) => product(l.sku) && l.quantity > 0) : [];
  } catch {
    return [];
  }
}

export function saveCart(lines) {
  localStorage.setItem(CART, JSON.stringify(lines));
  updateCartCount();
}

export function addToCart(sku, quantity = 1) {
  const lines = cart();
  const line = lines.find((l) => l.sku === sku);
  if (line) line.quantity += quantity;
  else lines.push({ sku, quantity });
  saveCart(lines);
}

export function cartTotal(lines = cart()) {
  return lines.reduce((sum, l) => sum + product(l.sku).cents * l.quantity, 0);
}

// ---- the signed-in customer (the demo has no passwords: signing in just remembers the email) ----

const CUSTOMER = 'demo_customer';

export function customer() {
  try {
    return JSON.parse(localStorage.getItem(CUSTOMER) ?? 'null');
  } catch {
    return null;
  }
}

export function signIn(email) {
  const c = { id: customerIdFor(email), email };
  localStorage.setItem(CUSTOMER, JSON.stringify(c));
  return c;
}

export function signOut() {
  localStorage.removeItem(CUSTOMER);
}

// A stable, made-up customer number, as a shop's user table would give.
function customerIdFor(email) {
  let n = 7;
  for (const ch of email.trim().toLowerCase()) n = (n * 31 + ch.codePointAt(0)) % 1_000_000_007;
  return `CUST-${n}`;
}

// ---- the tag ----

let api;

/**
 * The tag's `utt` function, loaded as an ES module so calls answer with a Promise. The snippet
 * in the head loads the same module (same URL, so the same instance); importing it here only
 * gives this code the answers. If the tag is blocked, the shop still works: `track()` answers
 * `{ok: false}` and the checkout goes on.
 */
export function tag() {
  api ??= import('/utt.js').then(
    (m) => m.utt,
    (err) => {
      console.warn('utt did not load; the shop works on without it', err);
      return null;
    }
  );
  return api;
}

/** Calls the tag, e.g. `track('conversion', {...})`; answers `{ok, status, ...}` and never throws. */
export async function track(...args) {
  const utt = await tag();
  if (!utt) return { ok: false, status: 'error', error: 'the tag did not load' };
  return utt(...args);
}

// ---- the page frame: header, footer, consent banner ----

const CONSENT = 'demo_consent_choice';

/** Adds the header, footer and (until the visitor chooses) the consent banner to the page. */
export function frame(active) {
  const nav = [
    ['/', 'Shop', 'shop'],
    ['/guides/', 'Running guides', 'guides'],
    ['/account.html', 'Account', 'account'],
    ['/cart.html', 'Cart', 'cart'],
  ];
  const header = h(
    'header',
    { className: 'site-header' },
    h('a', { href: '/', className: 'logo' }, 'Trailhead Outfitters'),
    h(
      'nav',
      {},
      nav.map(([href, label, key]) =>
        h(
          'a',
          { href, className: key === active ? 'active' : '' },
          label,
          key === 'cart' ? h('span', { className: 'count', id: 'cart-count' }) : null
        )
      )
    )
  );
  const footer = h(
    'footer',
    { className: 'site-footer' },
    h('span', {}, 'A demo shop for utt, the partnership tracking tag. '),
    h('a', { href: '/debug.html' }, 'Partner debug page'),
    ' · ',
    h('a', { href: '/report.html' }, 'Site-owner report'),
    ' · ',
    h('a', { href: '#', id: 'cookie-settings', onclick: (e) => (e.preventDefault(), showBanner()) }, 'Cookie settings')
  );
  document.body.prepend(header);
  document.body.append(footer);
  updateCartCount();
  const choice = localStorage.getItem(CONSENT);
  if (!choice) showBanner();
  // A refusal is passed on again on every page: the tag stores nothing while consent is denied,
  // so it cannot remember a no by itself (it remembers a yes), and until it hears one it treats
  // the page as undecided (and carries a partner click in the site's links).
  else if (choice === 'denied') track('consent', 'denied');
}

function updateCartCount() {
  const el = document.getElementById('cart-count');
  if (!el) return;
  const n = cart().reduce((sum, l) => sum + l.quantity, 0);
  fill(el, n ? String(n) : '');
}

/** The visitor's recorded choice (`granted`, `denied`), or null before they choose. */
export function consentChoice() {
  return localStorage.getItem(CONSENT);
}

// The banner is the shop's consent tool. The tag starts with consent denied (see the snippet's
// init line) and stores nothing until the visitor accepts; the choice is passed on with
// `utt('consent', ...)`. The tag remembers a grant for later pages; a refusal is passed on again
// on each page (see `frame`).
function showBanner() {
  document.getElementById('consent-banner')?.remove();
  const choose = async (choice) => {
    localStorage.setItem(CONSENT, choice);
    banner.remove();
    const answer = await track('consent', choice);
    document.dispatchEvent(new CustomEvent('demo:consent', { detail: { choice, answer } }));
  };
  const banner = h(
    'section',
    { id: 'consent-banner', className: 'consent', role: 'dialog', 'aria-label': 'Cookie consent' },
    h('p', {}, h('strong', {}, 'Cookies and partner tracking. '),
      'We remember which partner sent you here (a click ID, kept 30 days) so we can pay them a commission. ',
      'Nothing is stored or sent about you unless you accept.'),
    h('div', { className: 'buttons' },
      h('button', { id: 'consent-accept', className: 'primary', onclick: () => choose('granted') }, 'Accept'),
      h('button', { id: 'consent-decline', onclick: () => choose('denied') }, 'Decline'))
  );
  document.body.append(banner);
}
