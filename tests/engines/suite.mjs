// The cross-engine smoke suite, written once and run by `firefox.test.mjs` and
// `webkit.test.mjs` in their engine (`driver.mjs`). The world is the end-to-end tests' own
// (`tests/e2e/support.mjs`): the real collector on http://127.0.0.1:P2, the demo shop on
// http://localhost:P1, two sites as merchants deploy the tag; assertions are on what the
// collector stored. A few pages of the shop's own are added as routes. This file holds no tests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorld, unique, storedOrders, decodeRecord } from '../e2e/support.mjs';
import { ENGINES, launch, missing } from './driver.mjs';

/** The demo shop's init line (consent starts denied, events wait for the answer). */
const SHOP_INIT = (collector) => `{site:"demo",collector:${JSON.stringify(collector)},consent:"denied",whileDenied:"wait"}`;

const NONCE = 'ZW5naW5lLXRlc3Qtbm9uY2U';

/**
 * Records, from the very start of a page, what a visitor's console would show as errors
 * (uncaught errors and unhandled rejections) and the CSP violations the browser reports.
 */
const RECORDER = `<script nonce="${NONCE}">
window.seen = { errors: [], violations: [] };
addEventListener('error', (e) => seen.errors.push(String(e.message)));
addEventListener('unhandledrejection', (e) => seen.errors.push(String(e.reason)));
document.addEventListener('securitypolicyviolation', (e) => seen.violations.push(e.violatedDirective));
</script>`;

/**
 * Defines the suite's tests for `engine` (a key of ENGINES), with one browser and one world
 * for the file.
 */
export function engineSuite(engine) {
  const name = ENGINES[engine].name;
  let world, browser, snippet;
  const page = (head) => `<!doctype html><html><head><meta charset="utf-8"><title>utt in ${name}</title>${RECORDER}${head}</head><body><p id="page">the page works</p></body></html>`;
  const tagged = (calls) => `<script nonce="${NONCE}">\n${snippet}\nutt("init",${SHOP_INIT(world.collectorUrl)});\n${calls}</script>`;
  /** The shop's pages of this suite: `GET /engine/<name>.html` answers `pages[name](query)` → {csp?, head}. */
  const pages = {
    // A conversion called before the tag loaded: the snippet queues it and the tag replays it.
    order: (q) => ({
      head: tagged(`utt("conversion",{orderId:${JSON.stringify(q.get('order'))},amount:"42.00",currency:"EUR"});\n`),
    }),
    // A page of the shop with the tag, for the next visit.
    plain: () => ({ head: tagged('') }),
    // No tag at all: reads the shop origin's storage without sending anything.
    blank: () => ({ head: '' }),
    // The documented policy without 'wasm-unsafe-eval': the browser refuses to compile the wasm.
    'no-wasm': () => ({
      csp: `default-src 'self'; script-src 'self' 'nonce-${NONCE}'; connect-src 'self' ${world.collectorUrl}`,
      head: tagged(''),
    }),
  };
  const route = (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const make = pages[url.pathname.slice('/engine/'.length, -'.html'.length)];
    if (!make) {
      res.writeHead(404).end();
      return;
    }
    const { csp, head } = make(url.searchParams);
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      ...(csp ? { 'content-security-policy': csp } : {}),
    });
    res.end(page(head));
  };

  before(async () => {
    const absent = missing(engine);
    if (absent) throw new Error(`${name}: ${absent}`);
    world = await startWorld({
      chromium: false,
      routes: Object.fromEntries(Object.keys(pages).map((p) => [`GET /engine/${p}.html`, route])),
    });
    snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
    browser = await launch(engine);
  });
  after(async () => {
    await browser?.close();
    await world?.stop();
  });

  const ready = () => browser.waitFor('the tag to start', 'return window.utt?.state?.().ready === true');
  const drained = () =>
    browser.waitFor('the tag to have nothing left to send', 'const s = window.utt.state(); return s.ready && s.queued === 0 && !s.held');
  const errors = () => browser.execute('return window.seen ? window.seen.errors : []');

  test(`${name}: a partner click, consent, and a conversion replayed from the snippet, credited by the collector`, { timeout: 60_000 }, async () => {
    const clickId = unique('ENG');
    await browser.navigate(`${world.base}/?irclickid=${clickId}`);
    await ready();
    await browser.execute("document.querySelector('#consent-accept').click()");
    await browser.waitFor('consent to be granted', "return window.utt.state().consent === 'granted'");
    await drained();
    assert.equal((await world.api.click(clickId)).status, 200, 'the collector stored the click');

    // The click is kept in the first-party cookie and in localStorage, as the same record.
    const stored = await browser.execute(`return {
      cookie: document.cookie.split('; ').find((c) => c.startsWith('_utt='))?.slice(5) ?? null,
      local: localStorage.getItem('_utt'),
    }`);
    const cookie = decodeRecord(stored.cookie);
    const local = decodeRecord(stored.local);
    assert.ok(cookie, `a journey record in the _utt cookie: ${stored.cookie}`);
    assert.ok(local, `a journey record in localStorage: ${stored.local}`);
    assert.deepEqual(cookie, local, 'the same record in both');
    assert.ok(JSON.stringify(cookie.clicks).includes(clickId), `the record holds the click: ${JSON.stringify(cookie.clicks)}`);
    const jar = await browser.cookies();
    const utt = jar.find((c) => c.name === '_utt');
    assert.ok(utt?.expiry > Date.now() / 1000 + 86_400, `the _utt cookie outlives the session: ${JSON.stringify(utt)}`);
    assert.equal(utt.domain.replace(/^\./, ''), 'localhost');

    // Another page calls the conversion before the tag has loaded: the snippet queues it, the
    // tag replays it with the consent given on the landing page, and the collector credits it.
    const orderId = unique('ENGO');
    await browser.navigate(`${world.base}/engine/order.html?order=${orderId}`);
    await ready();
    const [order] = await storedOrders(world.api, orderId);
    assert.equal(order.amount, '42.00');
    assert.equal(order.attribution?.clickId, clickId, `credited to the partner's click: ${JSON.stringify(order)}`);
    await drained();
    assert.equal((await world.api.orders(orderId)).length, 1);
    assert.deepEqual(await errors(), []);
  });

  test(`${name}: a conversion and at once the tab closed: one beacon delivers it, exactly once`, { timeout: 60_000 }, async () => {
    // A second tab stays open to look at the shop's storage once the first is gone.
    const second = await browser.newTab();
    await browser.navigate(`${world.base}/engine/plain.html`);
    await ready();
    await drained();
    // Every sendBeacon call is counted in localStorage (and then made), and the tag's live
    // fetches to the collector never answer: the only way out is what the page-hide handler sends.
    await browser.execute(`
      const beacon = navigator.sendBeacon.bind(navigator);
      navigator.sendBeacon = (url, body) => {
        localStorage.setItem('test_beacons', String(Number(localStorage.getItem('test_beacons') || 0) + 1));
        return beacon(url, body);
      };
      const live = window.fetch;
      window.fetch = (url, init) => (String(url).endsWith('/v1/events') ? new Promise(() => {}) : live(url, init));
      localStorage.removeItem('test_beacons');`);
    const orderId = unique('ENGC');
    const answer = await browser.execute(
      `return utt('conversion', {orderId: ${JSON.stringify(orderId)}, amount: '19.90', currency: 'EUR'})`
    );
    assert.equal(answer.status, 'queued', `durably queued: ${JSON.stringify(answer)}`);
    await browser.closeTab();
    await browser.switchTo(second);

    const [order] = await storedOrders(world.api, orderId);
    assert.equal(order.eventId, answer.id, 'the very event the call queued');
    await browser.navigate(`${world.base}/engine/blank.html`);
    const beacons = await browser.waitFor('the closed tab to have counted its beacons', "return localStorage.getItem('test_beacons')");
    assert.equal(beacons, '1', 'hiding and closing the page sends one beacon, not one per event');

    // The next page finds the conversion still queued (no answer reached the closed tab),
    // sends it again, and the collector keeps one.
    await browser.navigate(`${world.base}/engine/plain.html`);
    await ready();
    await drained();
    assert.equal((await world.api.orders(orderId)).length, 1, 'stored exactly once');
  });

  test(`${name}: a CSP without 'wasm-unsafe-eval' keeps the tag off, without an error in the page`, { timeout: 60_000 }, async () => {
    const clickId = unique('ENGCSP');
    await browser.navigate(`${world.base}/engine/no-wasm.html?irclickid=${clickId}`);
    await browser.waitFor('the loader to run', "return typeof window.utt?.state === 'function'");
    const off = await browser.execute('return window.utt.ready.then(() => window.utt.state())');
    assert.equal(off.ready, false, 'the tag did not start');
    const answer = await browser.execute("return utt('pageview')");
    assert.equal(answer.ok, false, `a call answers an error instead of throwing: ${JSON.stringify(answer)}`);
    assert.equal(await browser.execute("return document.getElementById('page').textContent"), 'the page works');
    assert.deepEqual(await errors(), [], 'nothing thrown into the page');
    assert.equal((await world.api.click(clickId)).status, 404, 'nothing sent');
  });
}
