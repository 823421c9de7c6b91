// The built tag (dist/) in headless Chromium against a stand-in collector: the snippet's queue
// replayed in order, the ES-module API, the beacon when the page goes away, SPA page views, and
// no exception reaching the page whatever it is called with.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, launchChromium, serveStatic, acceptingCollector, openPage, stopAll } from './harness.mjs';

const SNIPPET = readFileSync(join(ROOT, 'dist', 'snippet.js'), 'utf8').split('\n')[0];
let site, browser, server;
// Every batch the stand-in collector received, parsed; `hold` makes it leave requests unanswered.
const batches = [];
let hold = false;

function page(name, head, body = '') {
  writeFileSync(join(site, name), `<!doctype html><html><head><title>${name}</title>${head}</head><body>${body}</body></html>`);
}

before(async () => {
  site = mkdtempSync(join(tmpdir(), 'utt-site-'));
  for (const f of ['utt.js', 'utt_bg.wasm', 'utt_texts.js']) copyFileSync(join(ROOT, 'dist', f), join(site, f));
  page(
    'replay.html',
    `<script>${SNIPPET}
utt('init', {site: 'demo'});
utt('event', 'one');
utt('event', 'two', {n: 2});
utt('event', 'three');
</script>`
  );
  page('plain.html', `<script>${SNIPPET} utt('init', {site: 'demo'});</script>`);
  for (const dir of ['octet', 'gone']) {
    mkdirSync(join(site, dir));
    copyFileSync(join(site, 'utt.js'), join(site, dir, 'utt.js'));
    copyFileSync(join(site, 'utt_texts.js'), join(site, dir, 'utt_texts.js'));
    writeFileSync(
      join(site, dir, 'start.html'),
      `<!doctype html><script type="module">const m = await import('./utt.js'); window.answer = await m.init({site: 'demo'});</script>`
    );
  }
  page('module.html', `<script type="module">window.mod = await import('/utt.js');</script>`);
  server = await serveStatic({
    '/': site,
    // The tag is served slowly, so every call above is made before it has loaded.
    'GET /utt.js': async (req, res) => {
      await new Promise((r) => setTimeout(r, 300));
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(join(site, 'utt.js')));
    },
    // The same wasm from a server that does not say application/wasm (instantiateStreaming
    // refuses it; the loader starts it from its bytes), and a wasm that is not there.
    'GET /octet/utt_bg.wasm': (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(readFileSync(join(site, 'utt_bg.wasm')));
    },
    'GET /gone/utt_bg.wasm': (req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    },
    // Every batch is recorded; with `hold` set it is never answered: the page must not depend on it.
    'POST /v1/events': acceptingCollector((batch) => {
      batches.push(batch);
      return !hold;
    }),
  });
  browser = await launchChromium();
});

after(() => stopAll({ browser, server, site }));

const open = (path, ready = () => window.utt && window.utt.state && window.utt.state().ready) =>
  openPage(browser, server.url + path, ready);

const events = () => batches.flatMap((b) => b.events);

async function until(check, what) {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('calls made before the tag loads are replayed in order after it loads', async () => {
  batches.length = 0;
  const { context, errors } = await open('/replay.html?irclickid=Replay-1');
  await until(() => events().length >= 4, 'four events');
  const got = events().map((e) => (e.type === 'event' ? e.name : e.type));
  assert.deepEqual(got, ['pageview', 'one', 'two', 'three']);
  const at = events().map((e) => e.at);
  assert.deepEqual([...at].sort((a, b) => a - b), at, 'times follow the call order');
  assert.ok(events().every((e) => e.clicks[0]?.value === 'Replay-1'), 'the landing click rides on every event');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the ES module API answers each call with a promise once the event is queued', async () => {
  batches.length = 0;
  const { p, context, errors } = await open('/module.html', () => window.mod);
  const answers = await p.evaluate(async () => {
    const m = window.mod;
    return [
      await m.init({ site: 'demo' }),
      await m.conversion({ orderId: 'ES-1', amount: 19.9, currency: 'EUR', items: [{ sku: 'A', quantity: 1 }] }),
      await m.conversion({ orderId: 'ES-1', amount: 19.9, currency: 'EUR' }),
      await m.identify({ email: ' Jane.Doe@Example.com ' }),
      await m.conversion({ orderId: 'ES-2', currency: 'euro' }),
      localStorage.getItem('_utt_q') !== null,
      m.utt.version(),
    ];
  });
  assert.equal(answers[0].status, 'ready');
  assert.match(answers[0].version, /^\d+\.\d+\.\d+/);
  assert.equal(answers[6], answers[0].version, 'utt.version() is the version init answered');
  assert.equal(answers[1].status, 'queued');
  assert.match(answers[1].id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  assert.equal(answers[2].status, 'duplicate');
  assert.equal(answers[3].status, 'queued');
  assert.deepEqual(answers[4], { ok: false, status: 'error', error: 'order.currency: must be an ISO 4217 code like EUR' });
  await until(() => events().some((e) => e.type === 'identify'), 'the identify event');
  const identify = events().find((e) => e.type === 'identify');
  // SHA-256 of the normalised "jane.doe@example.com"; the address itself never leaves.
  assert.equal(identify.emailHash, '86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d');
  assert.ok(!JSON.stringify(batches).includes('jane'));
  const conversion = events().find((e) => e.type === 'conversion');
  assert.equal(conversion.order.amount, 19.9, 'a number amount stays a number, untouched');
  assert.equal(events().filter((e) => e.type === 'conversion').length, 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a page that goes away hands what waits to sendBeacon', async () => {
  batches.length = 0;
  hold = true; // the collector takes the first batch and never answers it
  try {
    const { p, context } = await open('/plain.html');
    await until(() => batches.length === 1, 'the first batch');
    await p.evaluate(() => utt('conversion', { orderId: 'BEACON-1', amount: '5.00', currency: 'EUR' }));
    await p.goto('about:blank'); // pagehide
    // The beacon carries the conversion and the unanswered page view again. (Leaving the page
    // also aborts the held request, and the tag may then start a fetch of the conversion alone
    // before the page is gone; that one can arrive first, so look for the beacon among all.)
    const beacon = (b) =>
      b.events.some((e) => e.order?.orderId === 'BEACON-1') && b.events.some((e) => e.type === 'pageview');
    await until(() => batches.some(beacon), 'a beacon with the conversion and the unanswered page view');
    await context.close();
  } finally {
    hold = false; // a failure here must not leave the next tests unanswered
  }
});

test('every event is in localStorage before the fetch that sends it is made', async () => {
  batches.length = 0;
  const context = await browser.newContext();
  // At each call of fetch to the collector: which of the body's events the stored queue holds.
  await context.addInitScript(() => {
    window.sendsSeen = [];
    const fetch = window.fetch;
    window.fetch = function (url, options) {
      if (String(url).endsWith('/v1/events')) {
        const stored = localStorage.getItem('_utt_q') ?? '';
        window.sendsSeen.push(JSON.parse(options.body).events.map((e) => [e.id, stored.includes(e.id)]));
      }
      return fetch.apply(this, arguments);
    };
  });
  const p = await context.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  await p.goto(server.url + '/plain.html?irclickid=Persist-1');
  await p.waitForFunction(() => window.utt && window.utt.state && window.utt.state().ready);
  await p.evaluate(() =>
    Promise.all([utt('event', 'one'), utt('conversion', { orderId: 'PERSIST-1', amount: '5.00', currency: 'EUR' })])
  );
  await until(() => events().length >= 3, 'three events');
  const sends = (await p.evaluate(() => window.sendsSeen)).flat();
  assert.deepEqual(
    [...new Set(sends.map(([id]) => id))].sort(),
    events().map((e) => e.id).sort(),
    'every event the collector got went through fetch'
  );
  assert.deepEqual(sends.filter(([, stored]) => !stored), [], 'events sent before they were stored');
  assert.deepEqual(errors, []);
  await context.close();
});

test('SPA navigations send a page view per real URL change only', async () => {
  batches.length = 0;
  const { p, context, errors } = await open('/plain.html');
  await p.evaluate(() => {
    history.pushState({}, '', '/app/products');
    history.replaceState({}, '', '/app/products'); // same URL: no page view
    history.pushState({}, '', '/app/cart');
    history.back();
  });
  await until(() => events().filter((e) => e.type === 'pageview').length >= 4, 'four page views');
  // A marker called after every navigation: once it has arrived, so has everything queued before it.
  await p.evaluate(() => utt('event', 'marker'));
  await until(() => events().some((e) => e.name === 'marker'), 'the marker');
  const urls = events().filter((e) => e.type === 'pageview').map((e) => new URL(e.url).pathname);
  assert.deepEqual(urls, ['/plain.html', '/app/products', '/app/cart', '/app/products']);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a burst of a thousand calls costs a few storage writes, not a thousand', async () => {
  const { p, context, errors } = await open('/plain.html');
  const r = await p.evaluate(async () => {
    // Count what reaches localStorage while the burst runs.
    const writes = {};
    const setItem = Storage.prototype.setItem;
    Storage.prototype.setItem = function (k, v) {
      writes[k] = (writes[k] || 0) + 1;
      return setItem.call(this, k, v);
    };
    const t0 = performance.now();
    const calls = [];
    for (let i = 0; i < 1000; i++) calls.push(utt('event', 'tick', { i }));
    const syncMs = performance.now() - t0;
    const answers = await Promise.all(calls);
    const totalMs = performance.now() - t0;
    Storage.prototype.setItem = setItem;
    return { writes, syncMs, totalMs, queued: answers.filter((a) => a.status === 'queued').length };
  });
  // Figures for the log, not assertions: timing depends on the machine.
  console.log(`# 1000 calls: ${r.syncMs.toFixed(1)} ms to call, ${r.totalMs.toFixed(1)} ms until all durably queued; writes ${JSON.stringify(r.writes)}`);
  assert.equal(r.queued, 1000);
  assert.ok((r.writes._utt_q || 0) <= 3, `queue written ${r.writes._utt_q} times`);
  assert.ok((r.writes._utt || 0) <= 3, `record written ${r.writes._utt} times`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('on localhost the cookie is host-only and readable', async () => {
  const context = await browser.newContext();
  const p = await context.newPage();
  await p.goto(server.url.replace('127.0.0.1', 'localhost') + '/plain.html?gclid=Local-1');
  await p.waitForFunction(() => window.utt && window.utt.state && window.utt.state().ready);
  const cookies = await context.cookies();
  const record = cookies.find((c) => c.name === '_utt');
  assert.ok(record, 'the record cookie is set');
  assert.equal(record.domain, 'localhost', 'no Domain attribute: host-only');
  assert.equal(record.sameSite, 'Lax');
  assert.equal(record.path, '/');
  assert.match(decodeURIComponent(record.value), /Local-1/);
  assert.match(await p.evaluate(() => localStorage.getItem('_utt')), /Local-1/, 'and in localStorage');
  await context.close();
});

test('no call, however wrong, throws into the page', async () => {
  const { p, context, errors } = await open('/plain.html');
  const answers = await p.evaluate(async () => {
    const cyclic = {};
    cyclic.self = cyclic;
    const calls = [
      [],
      [42],
      ['nope'],
      ['conversion'],
      ['conversion', { orderId: { nested: true } }],
      ['conversion', cyclic],
      ['event', 'x', { big: 1n }],
      ['init', { site: 'demo' }],
      ['identify', { email: '<img src=x onerror=alert(1)>' }],
      ['consent', 'perhaps'],
    ];
    const out = [];
    for (const c of calls) out.push(await utt(...c));
    return out;
  });
  for (const a of answers) {
    assert.equal(a.ok, false, JSON.stringify(a));
    assert.equal(a.status, 'error');
    assert.ok(a.error.length > 5);
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test('the tag starts from a server that sends the wasm without its MIME type, and a missing wasm throws nothing', async () => {
  const started = await open('/octet/start.html', () => window.answer);
  assert.deepEqual(
    await started.p.evaluate(() => [window.answer.status, window.utt.state().ready]),
    ['ready', true],
    'instantiateStreaming refuses application/octet-stream: the loader starts the wasm from its bytes'
  );
  assert.deepEqual(started.errors, []);
  await started.context.close();

  const missing = await open('/gone/start.html', () => window.answer);
  assert.deepEqual(
    await missing.p.evaluate(() => [window.answer.ok, window.answer.error, window.utt.state().ready]),
    [false, 'command: the tag did not load', false]
  );
  assert.deepEqual(missing.errors, []);
  await missing.context.close();
});
