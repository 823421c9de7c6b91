
// ---- utt loader: appended to the wasm-bindgen glue above, so it shares its module scope. ----
// It starts the wasm, replays the calls the snippet queued, and turns `window.utt` into the real
// API. Every entry point catches everything: the tag never throws into the host page.

const w = typeof window !== 'undefined' ? window : undefined;
let tag;

function fail(error) {
  return { ok: false, status: 'error', error: String(error) };
}

// Runs one call (an arguments object or array). Resolves with the tag's answer; never rejects.
function call(args) {
  let text;
  try {
    text = JSON.stringify(Array.prototype.slice.call(args));
  } catch (e) {
    return Promise.resolve(fail('command: arguments are not serialisable (' + e + ')'));
  }
  return ready.then(() => {
    if (!tag) return fail('command: the tag did not load');
    try {
      return tag.command(text).then(JSON.parse, fail);
    } catch (e) {
      return fail('command: internal error (' + e + ')');
    }
  });
}

function state() {
  try {
    return tag ? JSON.parse(tag.state()) : { ready: false };
  } catch (e) {
    return { ready: false, error: String(e) };
  }
}

const ready = __wbg_init()
  .then(() => {
    tag = new Tag();
  })
  .catch((e) => {
    try {
      console.warn('[utt] the tag could not start: ' + e);
    } catch (_) {}
  });

/** The `utt(...)` command API, shared by the snippet and the ES module. */
export function utt() {
  return call(arguments);
}
utt.state = state;
utt.loaded = false;
utt.ready = ready;

if (w) {
  const stub = w.utt;
  const queued = (stub && stub.q) || [];
  w.utt = utt;
  // SPA navigations: tell the tag after pushState/replaceState; it decides whether the URL
  // really changed.
  try {
    const h = w.history;
    ['pushState', 'replaceState'].forEach((m) => {
      const orig = h[m];
      h[m] = function () {
        const r = orig.apply(this, arguments);
        try {
          w.dispatchEvent(new Event('utt:navigate'));
        } catch (_) {}
        return r;
      };
    });
  } catch (_) {}
  ready.then(() => {
    utt.loaded = !!tag;
    // Replay in order: each call is handed to the tag before the next.
    queued.forEach((args) => call(args));
  });
}

/** `utt('init', config)` */
export const init = (config) => call(['init', config]);
/** `utt('pageview', props)` */
export const pageview = (props) => call(props === undefined ? ['pageview'] : ['pageview', props]);
/** `utt('conversion', order)` */
export const conversion = (order) => call(['conversion', order]);
/** `utt('identify', customer)` */
export const identify = (customer) => call(['identify', customer]);
/** `utt('consent', 'granted' | 'denied')` */
export const consent = (choice) => call(['consent', choice]);
/** `utt('event', name, props)` */
export const event = (name, props) => call(props === undefined ? ['event', name] : ['event', name, props]);
/** `utt('flush')` */
export const flush = () => call(['flush']);
export { state };
