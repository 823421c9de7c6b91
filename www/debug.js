// The partner debug page: what the tag captured and stored in this browser, what it sent and
// what the collector answered, and the collector's own record of each click ID. Every value is
// rendered as text through `h()`: a click ID is data from a URL anyone can craft, and on this
// page it must never become markup.

import { h, fill, when, relative, yesNo } from '/dom.js';

const $ = (id) => document.getElementById(id);

/** The tag whose state the page shows: this page's own, or the landing page's after a link test. */
let source = { utt: null, label: 'this page' };

async function ownTag() {
  try {
    const m = await import('/utt_debug.js');
    await m.utt.ready;
    return m.utt;
  } catch {
    return null;
  }
}

/** The collector's base URL, from the tag's effective configuration (`""` means this origin). */
function collectorBase(state) {
  const url = new URL(state?.config?.collector || '/v1/events', location.href);
  url.pathname = url.pathname.replace(/\/v1\/events$/, '');
  url.search = '';
  return url.href.replace(/\/$/, '');
}

/**
 * The collector's record for one click ID on this site: `{status, body}`; never throws. Without
 * the site's read key (never on a page) it has the credited conversions' count and times, not
 * their order IDs and amounts.
 */
async function clickRecord(state, id) {
  try {
    const site = state?.config?.site ? `?site=${encodeURIComponent(state.config.site)}` : '';
    const res = await fetch(`${collectorBase(state)}/v1/clicks/${encodeURIComponent(id)}${site}`, { credentials: 'omit' });
    const text = await res.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: res.status, body };
  } catch (err) {
    return { status: 0, body: { error: String(err) } };
  }
}

function table(head, rows, empty) {
  if (!rows.length) return h('p', { className: 'muted' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))), h('tbody', {}, rows));
}

function facts(el, pairs) {
  fill(el, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** An order as the click API gives it: its ID and amount with the site's read key, else its time. */
const orderLabel = (c) => (c.orderId === undefined ? when(c.at) : `${c.orderId} (${c.amount ?? '?'} ${c.currency ?? ''})`);

/** What the collector's traffic classes mean, for a partner reading why a click earned nothing. */
const CLASSES = {
  automation: 'a browser driven by automation software (WebDriver, Playwright, Puppeteer, Selenium) or a headless browser',
  bot: 'a crawler, monitor, link previewer or HTTP library, or a request without a browser\'s user agent',
};

/** A class other than `human` (a collector from before bot filtering names none). */
const notHuman = (t) => typeof t === 'string' && t !== 'human';

/** Why the site did not credit a conversion this click would have earned (a `flagged` entry). */
function whyFlagged(f) {
  const order = notHuman(f.traffic);
  const click = notHuman(f.clickTraffic);
  if (order && click && f.traffic === f.clickTraffic) return `the order and the click came from traffic classed ${f.traffic}, which this site excludes`;
  if (order && click) return `the order came from traffic classed ${f.traffic} and the click from traffic classed ${f.clickTraffic}; this site excludes at least one of these classes`;
  if (order) return `the order came from traffic classed ${f.traffic}, which this site excludes`;
  if (click) return `the click came from traffic classed ${f.clickTraffic}, which this site excludes`;
  return 'its traffic class is one this site excludes';
}

/**
 * What the collector's record says about traffic that is not a person's: the click's class, whether
 * the site excludes it, and why any conversion was not credited. The click's class is the
 * record's own `traffic` (with orders or without); a collector from before it names the class
 * only on the conversions it lists (`clickTraffic`), and does not say whether the site excludes it.
 */
function trafficNotes(b) {
  const flagged = Array.isArray(b.flagged) ? b.flagged : [];
  const own = 'traffic' in b;
  const classes = own ? [b.traffic].filter(notHuman)
    : [...new Set([...b.conversions, ...flagged].map((c) => c.clickTraffic).filter(notHuman))];
  return [
    classes.map((t) => h('div', { className: 'click-traffic' },
      h('span', { className: 'badge warn' }, t),
      ` This click came from traffic classed ${t}: ${CLASSES[t] ?? 'not a person\'s browser'}.`,
      own && b.excluded === true && h('strong', { className: 'click-excluded' }, ` This site excludes ${t} traffic: this click earns no credit.`),
      own && b.excluded === false && ` This site counts ${t} traffic.`)),
    flagged.map((f) => h('div', { className: 'flagged' },
      h('span', { className: 'badge no' }, 'not credited'),
      ` ${orderLabel(f)}. Not credited: ${whyFlagged(f)}.`)),
  ];
}

function recordSummary(rec) {
  if (rec.status === 404) return h('span', { className: 'badge warn' }, 'not seen yet');
  if (rec.status !== 200) return h('span', { className: 'badge no' }, `error ${rec.status}: ${rec.body?.error ?? ''}`);
  const b = rec.body;
  return h('div', { className: 'collector-record' },
    h('span', { className: 'badge ok' }, 'received'),
    h('div', {}, `first seen ${when(b.firstSeen)}`),
    h('div', {}, `${b.pageViews} page view(s) on ${b.pages.length} page(s)`),
    h('div', { className: 'credited' }, `${b.conversions.length} conversion(s) credited`,
      b.conversions.length ? `: ${b.conversions.map((c) => {
        const counted = [...new Set([c.traffic, c.clickTraffic].filter(notHuman))];
        return counted.length ? `${orderLabel(c)}, from traffic classed ${counted.join(' and ')}, which this site counts` : orderLabel(c);
      }).join('; ')}` : ''),
    trafficNotes(b));
}

/** Redraws every panel from the chosen tag's state and the collector's records. */
let renderSeq = 0;

async function render() {
  const seq = ++renderSeq;
  const utt = source.utt;
  const state = utt ? safeState(utt) : { ready: false };
  const clicks = state.clicks ?? [];
  const records = await Promise.all(clicks.map((c) => clickRecord(state, c.value)));
  // A newer redraw started while the collector answered: it has the fresher state.
  if (seq !== renderSeq) return;
  fill($('source'), `Showing the tag on ${source.label}.`);
  facts($('tag'), [
    ['Tag loaded', yesNo(state.ready, 'yes', 'no: the tag did not start (blocked, or a script error)')],
    ['Version', state.version ?? '—'],
    ['Consent', state.consent ? h('span', { className: state.consent === 'granted' ? 'badge ok' : 'badge no', id: 'consent-state' }, state.consent) : '—'],
    ['Visitor ID', h('code', { id: 'visitor-id' }, state.visitor ?? '—')],
    ['Session ID', h('code', {}, state.session ?? '—')],
    ['Orders already sent', (state.orders ?? []).length ? (state.orders ?? []).join(', ') : 'none'],
  ]);
  renderConsent(state);

  fill($('clicks'), table(
    ['Parameter', 'Network', 'Click ID', 'Captured', 'Expires', 'Role', 'In cookie', 'In localStorage', 'Landing', 'Collector'],
    clicks.map((c, i) =>
      h('tr', { className: 'click', dataset: { value: c.value } },
        h('td', {}, h('code', {}, c.param)),
        h('td', {}, c.network),
        h('td', {}, h('code', { className: 'click-value' }, c.value)),
        h('td', {}, when(c.at)),
        h('td', {}, when(c.expiresAt), h('div', { className: 'muted' }, c.expired ? 'expired' : relative(c.expiresAt))),
        h('td', {}, [c.first && 'first', c.last && 'last'].filter(Boolean).join(', ') || 'between'),
        h('td', { className: 'in-cookie' }, yesNo(c.inCookie)),
        h('td', { className: 'in-local' }, yesNo(c.inLocalStorage)),
        h('td', {}, h('code', {}, c.path ?? ''),
          c.utm ? h('div', { className: 'muted' }, Object.entries(c.utm).map(([k, v]) => `utm_${k}=${v}`).join(' ')) : null),
        h('td', { className: 'collector' }, recordSummary(records[i])))
    ),
    'No click ID captured in this browser yet. Test a link above.'
  ));
  const rejected = state.rejected ?? [];
  fill($('rejected'), rejected.length
    ? [h('h3', {}, 'Refused on this page'),
        h('p', { className: 'muted' }, 'These parameters looked like click IDs but their values are not safe tokens, or a journey parameter (_uttj) from a link was stale, edited or made in another browser: they are never stored or sent.'),
        table(['Parameter', 'Why'], rejected.map((r) => h('tr', { className: 'rejected' }, h('td', {}, h('code', {}, r.param)), h('td', {}, r.reason))), '')]
    : []);

  const queue = state.queue ?? [];
  fill($('queue'), [
    state.held ? h('p', { className: 'notice' }, `${state.held} event(s) held in memory until consent is granted.`) : null,
    state.dropped ? h('p', { className: 'notice' }, `${state.dropped} call(s) on this page were answered "dropped": the queue's budget (1 MB; page views and custom events may use 800 KB, the rest is kept for conversions) or the 1,000 events held for consent were used up. Nothing already queued is ever pushed out.`) : null,
    table(['Event', 'Type', 'Attempts', 'Next try', 'State'],
      queue.map((q) =>
        h('tr', {},
          h('td', {}, h('code', {}, q.id)),
          h('td', {}, `${q.event?.type ?? '?'}${q.conversion ? ` (order ${q.event?.order?.orderId ?? '?'})` : ''}`),
          h('td', {}, String(q.attempts)),
          h('td', {}, q.notBefore ? `${when(q.notBefore)} (${relative(q.notBefore)})` : 'now'),
          h('td', {}, q.inFlight ? 'sending' : 'waiting'))),
      'Nothing waiting: the collector acknowledged every event.'),
  ]);

  const sends = [...(state.sends ?? [])].reverse();
  fill($('sends'), table(['When', 'How', 'Events', 'HTTP status', 'Delivered', 'Retrying', 'Dropped'],
    sends.map((s) =>
      h('tr', {},
        h('td', {}, when(s.at)),
        h('td', {}, s.via),
        h('td', {}, String(s.events)),
        h('td', {}, s.via === 'beacon' ? 'not readable (beacon)' : s.status === 0 ? 'network error' : String(s.status)),
        h('td', {}, String(s.delivered)),
        h('td', {}, String(s.retrying)),
        h('td', {}, (s.dropped ?? []).map((d) => h('div', {}, h('code', {}, d.id), `: ${d.reason}`))))),
    'Nothing sent yet from this page.'));

  const config = state.config ?? {};
  facts($('config'), Object.entries(config).map(([k, v]) => [k, h('code', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
}

function safeState(utt) {
  try {
    return utt.state();
  } catch (err) {
    return { ready: false, error: String(err) };
  }
}

function renderConsent(state) {
  const box = $('consent-note');
  if (!state.ready || state.consent !== 'denied') {
    fill(box);
    return;
  }
  fill(box, h('div', { className: 'notice' },
    h('p', {}, 'Consent is denied in this browser, so the tag stores nothing and sends nothing identifying. ',
      'A visitor accepts with the shop\'s cookie banner; to test your link, accept for this browser:'),
    h('button', {
      id: 'grant',
      onclick: async () => {
        localStorage.setItem('demo_consent_choice', 'granted');
        await source.utt?.('consent', 'granted');
        render();
      },
    }, 'Accept tracking in this browser')));
}

// ---- the link test ----

function step(text) {
  const li = h('li', {}, text);
  $('steps').append(li);
  return {
    ok: (t) => (fill(li, t ?? text), (li.className = 'ok')),
    bad: (t) => (fill(li, t ?? text), (li.className = 'bad')),
    note: (t) => fill(li, t),
  };
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Waits for the frame to land on this origin with the tag started; answers its `utt` or null. */
async function frameTag(frame, timeout) {
  const until = Date.now() + timeout;
  let elsewhere = false;
  while (Date.now() < until) {
    try {
      const w = frame.contentWindow;
      // Reading `location` throws while the frame is on another origin (a network's redirect).
      elsewhere = false;
      if (w.location.origin === location.origin && w.location.href !== 'about:blank' && w.utt?.state?.().ready) return { utt: w.utt };
    } catch {
      elsewhere = true;
    }
    await sleep(100);
  }
  return { utt: null, elsewhere };
}

let testing = 0;

async function testLink(raw) {
  const run = ++testing;
  $('link-result').hidden = false;
  fill($('steps'));
  let url;
  try {
    url = new URL(raw.trim(), location.href);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    step('').bad('That is not a web address. Paste the whole link, e.g. /?irclickid=…');
    return;
  }
  const params = [...url.searchParams];
  const paramRows = () =>
    params.map(([k, v]) => {
      const st = source.utt ? safeState(source.utt) : {};
      const click = (st.clicks ?? []).find((c) => c.param === k && c.value === v);
      const refused = (st.rejected ?? []).find((r) => r.param === k);
      const role = click ? h('span', { className: 'badge ok' }, `click ID, network ${click.network}`)
        : refused ? h('span', { className: 'badge no' }, `refused: ${refused.reason}`)
        : k.startsWith('utm_') ? 'campaign context (UTM)'
        : 'not a tracking parameter';
      return h('tr', {}, h('td', {}, h('code', {}, k)), h('td', {}, h('code', { className: 'param-value' }, v)), h('td', {}, role));
    });
  const showParams = () => fill($('link-params'), h('thead', {}, h('tr', {}, h('th', {}, 'Parameter'), h('th', {}, 'Value'), h('th', {}, 'What the tag did'))), h('tbody', {}, paramRows()));
  showParams();
  if (!params.length) step('').bad('The link has no parameters, so there is no click ID to capture.');
  if (url.origin !== location.origin) {
    step('').note(`This link starts on ${url.origin}, not on this shop (${location.origin}). If it redirects to the shop, the check follows it.`);
  }

  const open = step('Opening the link as a visitor would…');
  // A fresh frame each time, so the previous landing page's tag can never answer for this one.
  const frame = h('iframe', { className: 'landing', id: 'landing', title: 'The landing page, as a visitor sees it' });
  $('landing').replaceWith(frame);
  // With `utt_debug=1` the shop's snippet loads the debug build there (the same decisions as
  // the production tag, with the state this page reads). A link that redirects through another
  // site may drop it; the page then says the landing page's tag cannot be read.
  const landing = new URL(url.href);
  landing.searchParams.set('utt_debug', '1');
  frame.src = landing.href;
  const { utt, elsewhere } = await frameTag(frame, 20_000);
  if (run !== testing) return;
  if (!utt) {
    open.bad(elsewhere
      ? `The link did not end on ${location.origin}. The debug page only sees the site it is served from: open it on the host name the link lands on (www. or not, http or https).`
      : 'The landing page did not load with the tag on this shop within 20 seconds.');
    return;
  }
  open.ok(`Landed on ${frame.contentWindow.location.pathname}; the tag is running there.`);
  source = { utt, label: 'the landing page opened above' };
  showParams();
  render();

  let st = safeState(utt);
  const ours = (st.clicks ?? []).filter((c) => params.some(([k, v]) => c.param === k && c.value === v));
  const refused = (st.rejected ?? []).filter((r) => params.some(([k]) => r.param === k));
  const capture = step('Capturing the click ID…');
  if (refused.length) {
    capture.bad(`Refused: ${refused.map((r) => `${r.param} (${r.reason})`).join('; ')}. A refused value is never stored or sent.`);
  }
  if (!ours.length) {
    if (!refused.length) capture.bad('No click ID in this link is one the tag tracks. Check the parameter name with the shop.');
    await render();
    return;
  }
  capture.ok(`Captured ${ours.map((c) => `${c.param} (${c.network})`).join(', ')}.`);

  const stored = step('Storing it first-party…');
  const delivery = step('Sending it to the collector…');
  const record = step('Asking the collector what it received…');
  // Wait for consent (a visitor may have to accept in the frame), storage and delivery.
  const until = Date.now() + 120_000;
  for (;;) {
    if (run !== testing) return;
    st = safeState(utt);
    const mine = (st.clicks ?? []).filter((c) => ours.some((o) => o.param === c.param && o.value === c.value));
    if (st.consent !== 'granted') {
      stored.note('Waiting for consent: nothing is stored until the visitor accepts. Accept the cookie banner in the frame below, or press "Accept tracking in this browser" in section 2.');
    } else if (mine.every((c) => c.inCookie && c.inLocalStorage)) {
      stored.ok('Stored in the cookie and in localStorage.');
    } else if (mine.some((c) => c.inCookie || c.inLocalStorage)) {
      stored.ok(`Stored in ${mine.some((c) => c.inCookie) ? 'the cookie' : 'localStorage'} only (the other store is unavailable in this browser).`);
    }
    const waiting = (st.queue ?? []).length + (st.held ?? 0);
    if (st.consent === 'granted' && waiting === 0) {
      delivery.ok('Delivered: the collector acknowledged every event.');
      break;
    }
    if (Date.now() > until) {
      delivery.bad(`Still waiting after 2 minutes: ${waiting} event(s) not acknowledged. See "Recent sends" below.`);
      break;
    }
    await sleep(250);
  }
  const records = await Promise.all(ours.map((c) => clickRecord(st, c.value)));
  if (records.every((r) => r.status === 200)) {
    record.ok(`The collector has a record for ${ours.map((c) => c.value).join(', ')}: first seen ${when(records[0].body.firstSeen)}, ${records[0].body.pageViews} page view(s).`);
  } else {
    record.bad(`The collector has no record yet (answer ${records.map((r) => r.status).join(', ')}).`);
  }
  await render();
}

// ---- start ----

$('link-form').addEventListener('submit', (e) => {
  e.preventDefault();
  testLink($('link').value);
});
$('refresh').addEventListener('click', () => render());

source = { utt: await ownTag(), label: 'this page' };
await render();
document.body.dataset.ready = '1';
setInterval(() => {
  if (!document.hidden) render();
}, 3000);
