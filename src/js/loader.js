
// ---- utt loader: appended to the wasm-bindgen glue above, so it shares its module scope. ----
// The asynchronous half of the browser shell: it starts the wasm, replays what the snippet
// queued, and does for the Rust tag (`tagOp`) what needs promises, timers or listeners (fetch,
// SubtleCrypto, retry timers, page lifecycle). The tag decides; this only carries out.
// Every entry point catches everything: the tag never throws into the host page.

const W = typeof window != 'undefined' ? window : 0;
let tag, timer, flight, soon, hidden;

const fail = (e) => ({ ok: false, status: 'error', error: '' + e });
// An answer as the page gets it, a refusal logged. The production wasm answers a refusal as
// `field: #12`, or `#70: #15` when the field is a member's path: the text of each code is in
// utt_texts.js beside this module, which the build writes from the tag's one list of texts
// (src/core/text.rs) and which is loaded only when a call is refused, so a page whose calls are
// right never downloads it. The debug build's wasm answers the texts themselves.
const said = async (a) => {
  if (a.status == 'error' && /#\d/.test(a.error)) {
    const t = await import('./utt_texts.js').then((x) => x.default, () => ({}));
    a.error = a.error.replace(/#(\d+)/g, (m, c) => t[c] || 'refused (code ' + c + '; utt_texts.js did not load)');
  }
  if (a.status == 'error') console.warn('[utt] ' + a.error);
  return a;
};
// The page as the tag needs it: href, referrer, flags (1: Global Privacy Control, 2:
// navigator.webdriver, automation drives the browser), user agent, title (last: it may hold a
// newline).
const page = (n = navigator) =>
  [location.href, document.referrer, !!n.globalPrivacyControl + 2 * !!n.webdriver, n.userAgent, document.title].join('\n');
const guard = (f, d) => {
  try {
    return f();
  } catch (e) {
    return d;
  }
};
// The wasm's one entry point (see `ops` in src/web/mod.rs).
const op = (n, arg) => guard(() => tagOp(globalThis, n, arg || '', page()), '');
const COMMAND = 0, IDENTIFIED = 1, PERSIST = 2, BATCH = 3, ENDPOINT = 4, SETTLE = 5, WAKE = 6;
const ONLINE = 7, NAVIGATED = 8, HIDE = 9, SERVER_COOKIE = 10, STATE = 11, DECORATE = 12, VERSION = 13;

// One storage write and one send per burst of calls: everything called before the next
// microtask shares it, so a thousand calls cost one write.
const tick = () =>
  soon ||
  (soon = Promise.resolve().then(() => {
    soon = 0;
    op(PERSIST);
    guard(send);
  }));

function send() {
  if (flight) return;
  const body = op(BATCH);
  if (body) {
    // One batch in flight; plain fetch while the page lives (text/plain: no CORS preflight).
    flight = fetch(op(ENDPOINT), { method: 'POST', body, credentials: 'omit' })
      .then(
        (r) => r.text().then((t) => [r.status, t, r.headers.get('Retry-After')]),
        () => [0]
      )
      .then((a) => {
        flight = 0;
        op(SETTLE, a[0] + '\n' + (a[2] || '') + '\n' + (a[1] || ''));
        tick();
      });
  }
  const cookie = op(SERVER_COOKIE);
  if (cookie) {
    const url = op(ENDPOINT).replace(/\/v1\/events$/, '/v1/cookie');
    fetch(url, { method: 'POST', body: cookie, credentials: 'include' }).catch(() => 0);
  }
  clearTimeout(timer);
  const wait = +op(WAKE);
  if (wait >= 0 && !flight) timer = setTimeout(tick, Math.max(wait, 50));
}

async function sha256(text) {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (b) => (b < 16 ? '0' : '') + b.toString(16)).join('');
}

// Runs one call (an arguments object or array). Resolves with the tag's answer once the event
// is durably queued; never rejects.
function call(args) {
  let text;
  try {
    text = JSON.stringify(Array.prototype.slice.call(args));
  } catch (e) {
    return Promise.resolve(fail('command: arguments are not serialisable (' + e + ')'));
  }
  return ready.then(async () => {
    if (!tag) return fail('command: the tag did not load');
    try {
      let a = await said(JSON.parse(op(COMMAND, text)));
      // A call after a page-hide flush (from the site's own pagehide listener, say) is flushed
      // again by the next hide. An answer or a retry adds nothing to flush.
      hidden = 0;
      // The journey parameter and refused values leave the address bar (see Tracker::address).
      if (a.url) history.replaceState(history.state, '', a.url);
      if (a.status == 'hash') {
        // The plain address never leaves the browser: only its SHA-256 is queued.
        const h = await sha256(a.email).catch(() => undefined);
        a = await said(JSON.parse(op(IDENTIFIED, JSON.stringify([a.customerId || null, h || null]))));
      }
      await tick();
      return a;
    } catch (e) {
      return fail('command: internal error (' + e + ')');
    }
  });
}

/**
 * `{ready, queued, held, consent}` in the production build; in the debug build also everything
 * the debug page shows: config, clicks and where they are stored, the queue, the sends.
 */
function state() {
  return guard(() => JSON.parse(op(STATE)), { ready: false });
}

// Starts the wasm beside this module (the build names it: utt_bg.wasm or utt_debug_bg.wasm):
// compiled while it downloads, or from its bytes when the server does not say application/wasm.
// The glue's own loader is dropped by the build: it handles module forms the tag never uses.
const ready = fetch(new URL(UTT_WASM, import.meta.url))
  .then((r, i = __wbg_get_imports()) => {
    if (!r.ok) throw r.status;
    return WebAssembly.instantiateStreaming(r.clone(), i).catch(() => r.arrayBuffer().then((b) => WebAssembly.instantiate(b, i)));
  })
  .then((w) => {
    __wbg_finalize_init(w.instance, w.module);
    tag = 1;
  })
  .catch((e) => guard(() => console.warn('[utt] the tag could not start: ' + e)));

/** The `utt(...)` command API, shared by the snippet and the ES module. */
export function utt() {
  return call(arguments);
}
utt.state = state;
utt.ready = ready;
// '' until the wasm has started.
utt.version = () => op(VERSION);

if (W) {
  const queued = (W.utt && W.utt.q) || [];
  W.utt = utt;
  const on = (name, f, capture) => W.addEventListener(name, (e) => tag && guard(() => f(e)), capture);
  // Hidden or closed: write everything now and hand what waits to sendBeacon, once. A tab
  // being closed or left fires both pagehide and visibilitychange (hidden), in an order that
  // depends on the browser: the second finds nothing new and does nothing, so a closing page
  // builds and sends its batch once.
  // Shown again (visible, or back from the back/forward cache), the next hide flushes again.
  const hide = () => hidden || ((hidden = 1), op(HIDE));
  on('pagehide', hide);
  on('pageshow', () => (hidden = 0));
  on('visibilitychange', () => (document.visibilityState == 'hidden' ? hide() : (hidden = 0)));
  on('online', () => (op(ONLINE), tick()));
  // SPA navigations: the tag decides whether the URL really changed.
  const nav = () => ((hidden = 0), op(NAVIGATED), tick());
  on('popstate', nav);
  guard(() =>
    ['pushState', 'replaceState'].forEach((m) => {
      const orig = history[m];
      history[m] = function () {
        const r = orig.apply(this, arguments);
        tag && guard(nav);
        return r;
      };
    })
  );
  // A link or form about to be followed: the tag says whether the journey must go with it
  // (consent still pending, or one of the site's linkDomains), and to what URL.
  const link = (e) => {
    const a = e.target.closest('[href]');
    const u = a && op(DECORATE, a.href);
    if (u) a.href = u;
  };
  on('mousedown', link, 1);
  on('click', link, 1);
  on('submit', (e) => {
    const f = e.target, u = op(DECORATE, f.action);
    if (!u) return;
    if (f.method != 'get') return (f.action = u);
    // A GET form's query is made from its fields, so the journey goes in one.
    const i = f.elements._uttj || f.appendChild(Object.assign(document.createElement('input'), { type: 'hidden', name: '_uttj' }));
    i.value = new URL(u).searchParams.get('_uttj');
  }, 1);
  // Replay in order: each call reaches the tag before the next.
  queued.forEach((args) => call(args));
}

/** `utt('init', config)` */
export const init = (config) => call(['init', config]);
/** `utt('pageview', props?)` */
export const pageview = (props) => call(props === undefined ? ['pageview'] : ['pageview', props]);
/** `utt('conversion', order)` */
export const conversion = (order) => call(['conversion', order]);
/** `utt('identify', customer)` */
export const identify = (customer) => call(['identify', customer]);
/** `utt('consent', 'granted' | 'denied')` */
export const consent = (choice) => call(['consent', choice]);
/** `utt('event', name, props?)` */
export const event = (name, props) => call(props === undefined ? ['event', name] : ['event', name, props]);
/** `utt('flush')`: send what waits now. */
export const flush = () => call(['flush']);
export { state };
