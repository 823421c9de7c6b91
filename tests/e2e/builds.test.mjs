// The production tag (utt.js) and the debug build (utt_debug.js, what the debug page and
// `?utt_debug=1` load) are one crate with one core: the debug page must show exactly what the
// production tag decided. One journey with each build, each against its own collector: the
// events sent and the conversion stored are the same, and so is every refusal's message (the
// production wasm answers a code, the loader turns it into the debug build's sentence).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startWorld, landWithConsent, browseAndAdd, checkout, delivered, storedOrders, unique,
} from './support.mjs';

const worlds = {};
before(async () => {
  worlds.production = await startWorld();
  worlds.debug = await startWorld({ build: 'debug' });
});
after(async () => {
  await Promise.all(Object.values(worlds).map((w) => w.stop()));
});

/** Calls the tag must refuse, one per kind of mistake (their codes cover config, command and order). */
const REFUSED = [
  ['consent', 'maybe'],
  ['conversion', { orderId: 'A-1', amount: '5,00' }],
  ['conversion', { orderId: 'A-1', currency: 'euro' }],
  ['conversion', { orderId: 'A-1', items: [{ quantity: -1 }] }],
  ['identify', {}],
  ['identify', { email: 'not-an-email' }],
  ['event', ''],
  ['purchase', {}],
  ['init', { site: 'demo' }],
];

/** One journey: lands from a partner's link, accepts consent, adds to the cart, orders, and is refused a few calls. */
async function journey(world, clickId, email) {
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}&utm_source=partner`);
  const state = await page.evaluate(() => window.utt.state());
  await browseAndAdd(page, world.base, ['TRAIL-42']);
  const order = await checkout(page, world.base, { email });
  await delivered(page);
  const refusals = await page.evaluate((calls) => Promise.all(calls.map((c) => window.utt(...c))), REFUSED);
  const stored = await storedOrders(world.api, order.orderId);
  await context.close();
  // What may differ between two runs: IDs, times, the random order ID and the server's port.
  const norm = (text) =>
    JSON.parse(
      text
        .replaceAll(world.base, 'BASE')
        .replaceAll(order.orderId, 'ORDER')
        .replace(/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"/g, '"UUID"')
        .replace(/"(at|sentAt|receivedAt|clickAt|convertedAt)":\d+/g, '"$1":0')
    );
  // Each event once (a page-hide beacon and the next page's fetch may both carry it: the
  // collector deduplicates by ID), compared as a set in a canonical order: which of two events
  // made within the same moment comes first (the thank-you page's page view, or its conversion
  // queued before the tag had started) depends on how fast each build's files load, not on what
  // the tag decided.
  const byId = new Map();
  for (const e of seen.batches.flatMap((b) => JSON.parse(b).events)) if (!byId.has(e.id)) byId.set(e.id, e);
  const events = [...byId.values()]
    .map((e) => norm(JSON.stringify(e)))
    .sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
  return { state, events, stored: stored.map((s) => norm(JSON.stringify(s))), refusals };
}

test('one journey with each build: the same events sent, the same conversion stored, the same messages', { timeout: 120_000 }, async () => {
  const clickId = unique('BUILDS');
  const email = `${unique('builds').toLowerCase()}@example.com`;
  const production = await journey(worlds.production, clickId, email);
  const debug = await journey(worlds.debug, clickId, email);

  assert.deepEqual(Object.keys(production.state).sort(), ['consent', 'held', 'queued', 'ready'], 'the production state is four facts');
  assert.ok('clicks' in debug.state && 'sends' in debug.state, 'the debug state shows everything');
  assert.ok(production.events.some((e) => e.type === 'conversion'), JSON.stringify(production.events));
  assert.deepEqual(production.events, debug.events, 'the same events, field for field');
  assert.equal(production.stored.length, 1);
  assert.deepEqual(production.stored, debug.stored, 'the same conversion stored, with the same attribution');

  for (const [i, call] of REFUSED.entries()) {
    const [p, d] = [production.refusals[i], debug.refusals[i]];
    assert.equal(p.ok, false, JSON.stringify(call));
    assert.equal(p.status, 'error', JSON.stringify(call));
    assert.doesNotMatch(p.error, /#\d/, `the code became its sentence: ${p.error}`);
    assert.deepEqual(p, d, `the same answer in both builds for ${JSON.stringify(call)}`);
  }
  assert.equal(production.refusals[0].error, "consent: must be 'granted' or 'denied'");
  assert.equal(production.refusals[2].error, 'order.currency: must be an ISO 4217 code like EUR');
});
