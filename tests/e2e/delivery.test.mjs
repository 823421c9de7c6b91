// End to end: conversions that must survive the page going away (scenario 9) and the collector
// being unreachable (scenario 10). The tag promises that once a call's Promise resolves the
// event is durably queued; these tests hold it to that, on the collector's stored data.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  eventually, useWorld, landWithConsent, watch, unique, delivered, tagState, tagReady, browseAndAdd, storedOrders,
} from './support.mjs';

const world = useWorld();

/** Fills the checkout form and submits it, without waiting for the thank-you page's answer. */
async function placeOrder(page, email) {
  await page.goto(`${world.base}/checkout.html`);
  await page.fill('#email', email);
  await Promise.all([page.waitForURL(/\/thanks\.html\?order=/), page.click('#place-order')]);
  return new URL(page.url()).searchParams.get('order');
}

/** A shopper with a click and a cart, ready to check out; answers the click ID too. */
async function readyToBuy(prefix) {
  const clickId = unique(prefix);
  const v = await landWithConsent(world, `/?irclickid=${clickId}`);
  await browseAndAdd(v.page, world.base, ['SOCK-3P']);
  await delivered(v.page);
  return { ...v, clickId };
}

test('9. the tab closed right after the conversion call: the beacon on pagehide delivers it', { timeout: 90_000 }, async () => {
  const { context, page, clickId } = await readyToBuy('S9');
  // Hold back every live fetch from the thank-you page on, so the only way out is the one that
  // outlives the page: the beacon on pagehide.
  await page.route('**/v1/events', (route) =>
    route.request().resourceType() === 'fetch' ? new Promise(() => {}) : route.continue()
  );
  const orderId = await placeOrder(page, `${unique('s9').toLowerCase()}@example.com`);
  const answer = await page.evaluate(() => window.demoConversion);
  assert.equal(answer.status, 'queued', 'durably queued before the tab closes');
  await page.close({ runBeforeUnload: true });

  const stored = await storedOrders(world.api, orderId);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].eventId, answer.id, 'the very event the call queued');
  assert.equal(stored[0].attribution?.clickId, clickId);
  await context.close();
});

test('9. the tab closed and its beacon lost too: the next visit sends the conversion from the persisted queue', { timeout: 90_000 }, async () => {
  const { context, page, clickId } = await readyToBuy('S9Q');
  // Nothing from this tab reaches the collector any more: its fetches fail, and its beacons
  // are accepted by the browser but lost on the way (Playwright cannot intercept beacons, so
  // the page's sendBeacon is replaced by one that says yes and sends nothing).
  let blocked = 0;
  await page.route('**/v1/events', (route) => {
    blocked += 1;
    return route.abort('connectionrefused');
  });
  await page.addInitScript(() => {
    navigator.sendBeacon = () => true;
  });
  const orderId = await placeOrder(page, `${unique('s9q').toLowerCase()}@example.com`);
  const answer = await page.evaluate(() => window.demoConversion);
  assert.equal(answer.status, 'queued');
  // The tab has tried to send the conversion (it was persisted before: see `queued`).
  await eventually('the tab to try to send', () => blocked >= 1);
  assert.ok((await tagState(page)).queued >= 1, 'still queued in the tab');
  // Closed (with runBeforeUnload, close() does not wait for it): the tab can send nothing more.
  await Promise.all([page.waitForEvent('close'), page.close({ runBeforeUnload: true })]);
  assert.deepEqual(await world.api.orders(orderId), [], 'nothing got through from the closed tab');

  // The next visit, in the same browser, finds the conversion in localStorage and sends it.
  const next = watch(await context.newPage(), context);
  await next.page.goto(`${world.base}/`);
  await tagReady(next.page);
  const stored = await storedOrders(world.api, orderId);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].eventId, answer.id, 'the very event the closed tab queued');
  assert.equal(stored[0].attribution?.clickId, clickId);
  await delivered(next.page);
  assert.equal((await world.api.orders(orderId)).length, 1);
  await context.close();
});

test('9. a conversion and at once another page: the page hide sends one beacon, and the collector stores the order once', { timeout: 90_000 }, async () => {
  const { context, page, clickId } = await readyToBuy('S9B');
  // Every sendBeacon call of the shop's pages is counted in localStorage (which outlives the
  // page), and this page's live fetches never answer: only the page-hide flush gets out.
  await context.addInitScript(() => {
    const beacon = navigator.sendBeacon.bind(navigator);
    navigator.sendBeacon = (url, body) => {
      localStorage.setItem('test_beacons', String(Number(localStorage.getItem('test_beacons') || 0) + 1));
      return beacon(url, body);
    };
  });
  await page.goto(`${world.base}/cart.html`);
  await delivered(page);
  await page.route('**/v1/events', (route) =>
    route.request().resourceType() === 'fetch' ? new Promise(() => {}) : route.continue()
  );
  const orderId = unique('S9B');
  const answer = await page.evaluate(async (orderId) => {
    localStorage.removeItem('test_beacons');
    const answer = await window.utt('conversion', { orderId, amount: '19.90', currency: 'EUR' });
    location.href = '/product.html?sku=SOCK-3P';
    return answer;
  }, orderId);
  assert.equal(answer.status, 'queued');
  await page.waitForURL(/\/product\.html/);
  // The left page's beacon alone delivers it: the new page has not sent anything yet.
  const [stored] = await storedOrders(world.api, orderId);
  assert.equal(stored.eventId, answer.id);
  assert.equal(stored.attribution?.clickId, clickId);
  assert.equal(await page.evaluate(() => localStorage.getItem('test_beacons')), '1', 'one beacon for visibilitychange and pagehide together');
  await page.unroute('**/v1/events');
  await delivered(page);
  assert.equal((await world.api.orders(orderId)).length, 1, 'stored exactly once');
  await context.close();
});

test('10. the collector unreachable during checkout: the conversion is delivered once it is back, exactly once', { timeout: 90_000 }, async () => {
  const clickId = unique('S10');
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}`);
  await browseAndAdd(page, world.base, ['TRAIL-42']);
  await delivered(page);

  // The collector's ingest stops answering for this browser: every batch fails to connect.
  let refused = 0;
  await context.route('**/v1/events', (route) => {
    refused += 1;
    return route.abort('connectionrefused');
  });
  const orderId = await placeOrder(page, `${unique('s10').toLowerCase()}@example.com`);
  const answer = await page.evaluate(() => window.demoConversion);
  assert.equal(answer.status, 'queued');
  // At least two failed attempts, so the retry (with backoff) has been exercised.
  await eventually('two failed attempts', () => refused >= 2, { timeout: 20_000 });
  assert.deepEqual(await world.api.orders(orderId), [], 'nothing stored while unreachable');
  assert.ok((await tagState(page)).queued >= 1, 'the conversion waits in the queue for the next retry');

  // Back again: the tag's next retry delivers it, on this same page.
  await context.unroute('**/v1/events');
  await delivered(page, 30_000);
  const stored = await storedOrders(world.api, orderId);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].eventId, answer.id);
  assert.equal(stored[0].attribution?.clickId, clickId);

  // Later visits find nothing left to send, and the collector still holds exactly one.
  await page.goto(`${world.base}/`);
  await delivered(page);
  assert.equal((await tagState(page)).queued, 0);
  const conversionsSent = seen.batches.flatMap((b) => JSON.parse(b).events).filter((e) => e.type === 'conversion');
  assert.ok(conversionsSent.every((e) => e.id === answer.id), 'every retry carried the same event ID');
  assert.equal((await world.api.orders(orderId)).length, 1, 'exactly one stored conversion');
  await context.close();
});
