// End to end, the journeys that decide who gets paid: a partner click through to a stored,
// credited conversion (scenario 1), two partners days apart (2), a reloaded thank-you page (3),
// a promo code without a click (4) and a purchase on a second device (7). Real Chromium, the
// real collector; every assertion is on what the collector stored, read through its API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  useWorld, landWithConsent, visitor, unique, acceptConsent, delivered, browseAndAdd, checkout,
  tagCookies, tagLocalKeys, storedOrders, storedRecords,
} from './support.mjs';

// The production build, as merchants ship it: what the tag keeps is read where the browser
// keeps it (the journey record in the `_utt` cookie and localStorage), what it sends from the
// collector.
const world = useWorld();

const DAY = 86_400_000;

/** The click values of the journey record in each store (a store without a record fails). */
async function clicksKept(page) {
  const records = await storedRecords(page);
  for (const store of ['cookie', 'local']) assert.ok(records[store], `a journey record in ${store}: ${JSON.stringify(records)}`);
  return { cookie: records.cookie.clicks.map((c) => c.value), local: records.local.clicks.map((c) => c.value) };
}

test('1. partner link → landing → browse → checkout: the conversion is stored once and credited to that partner', { timeout: 90_000 }, async () => {
  const clickId = unique('S1');
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}&utm_source=partner&utm_medium=affiliate`);

  // Captured into both first-party stores, the journey record of the cookie and of localStorage.
  const records = await storedRecords(page);
  for (const store of ['cookie', 'local']) {
    const click = records[store]?.clicks.find((c) => c.value === clickId);
    assert.ok(click, `the ${store} record holds ${clickId}: ${JSON.stringify(records[store])}`);
    assert.equal(click.param, 'irclickid');
    assert.equal(click.network, 'impact');
  }
  assert.deepEqual((await tagCookies(context)).map((c) => c.name).filter((n) => n === '_utt'), ['_utt']);
  assert.ok((await tagLocalKeys(page)).includes('_utt'));

  await browseAndAdd(page, world.base, ['TRAIL-42', 'SOCK-3P', 'SOCK-3P']);
  const order = await checkout(page, world.base);
  await delivered(page);

  const stored = await storedOrders(world.api, order.orderId);
  assert.equal(stored.length, 1, 'stored exactly once');
  const c = stored[0];
  assert.equal(c.amount, order.amount);
  assert.equal(c.amount, '167.90', 'amount kept exactly as the shop gave it');
  assert.equal(c.currency, 'EUR');
  assert.deepEqual(c.items.map((i) => [i.sku, i.quantity, i.price]), [['TRAIL-42', 1, '119.90'], ['SOCK-3P', 2, '24.00']]);
  assert.equal(c.attribution?.model, 'last_click');
  assert.equal(c.attribution?.clickId, clickId);
  assert.equal(c.attribution?.network, 'impact');
  assert.equal(c.attribution?.crossDevice, false);
  assert.deepEqual(c.touchpoints.map((t) => t.clickId), [clickId]);

  // The partner's own view of the click: every page of the journey, and the order it earned.
  const record = await world.api.click(clickId);
  assert.equal(record.status, 200);
  // Landing, 3 product views, cart, checkout, thanks: each page view once, however often sent.
  assert.deepEqual(
    Object.fromEntries(record.body.pages.map((p) => [p.path, p.views]).sort()),
    { '/': 1, '/cart.html': 1, '/checkout.html': 1, '/product.html': 3, '/thanks.html': 1 }
  );
  assert.equal(record.body.pageViews, 7);
  assert.deepEqual(record.body.conversions.map((x) => x.orderId), [order.orderId]);
  assert.deepEqual(seen.dialogs, []);
  assert.deepEqual(seen.errors, []);
  await context.close();
});

test('2. two partners on different days: the last click is credited and both touchpoints are kept', { timeout: 90_000 }, async () => {
  const first = unique('S2A');
  const second = unique('S2B');
  const { context, page } = await visitor(world);
  // Ten days ago, so every time the tag sends is in the past: the collector attributes by the
  // event times the tag sends, not by when they arrive.
  const t0 = Date.now() - 10 * DAY;
  await context.clock.install({ time: t0 });

  await page.goto(`${world.base}/?irclickid=${first}&utm_source=partner-a`);
  await acceptConsent(page);
  await delivered(page);

  await page.clock.setSystemTime(t0 + 3 * DAY);
  await page.goto(`${world.base}/product.html?sku=CAP-1&awc=${second}`);
  await delivered(page);
  // Both clicks in the journey record, the first partner's first, in both stores.
  assert.deepEqual(await clicksKept(page), { cookie: [first, second], local: [first, second] });

  await page.clock.setSystemTime(t0 + 4 * DAY);
  await page.click('#add-to-cart');
  await page.waitForSelector('#added a');
  const order = await checkout(page, world.base);
  await delivered(page);

  const [last] = await storedOrders(world.api, order.orderId);
  assert.equal(last.attribution?.model, 'last_click');
  assert.equal(last.attribution?.clickId, second);
  assert.equal(last.attribution?.network, 'awin');
  assert.deepEqual(last.touchpoints.map((t) => t.clickId), [first, second], 'both touchpoints, oldest first');
  const gap = last.touchpoints[1].at - last.touchpoints[0].at;
  assert.ok(gap >= 3 * DAY - 60_000 && gap <= 3 * DAY + 60_000, `the clicks are three days apart: ${gap} ms`);
  assert.ok(last.at - t0 >= 4 * DAY - 60_000, 'the conversion carries the (controlled) time of the purchase');

  const [firstModel] = await world.api.orders(order.orderId, 'first_click');
  assert.equal(firstModel.attribution?.model, 'first_click');
  assert.equal(firstModel.attribution?.clickId, first);
  await context.close();
});

test('3. reloading the thank-you page does not count the order twice', { timeout: 90_000 }, async () => {
  const clickId = unique('S3');
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}`);
  await browseAndAdd(page, world.base, ['JACKET-W']);
  const order = await checkout(page, world.base);
  assert.equal(await page.getAttribute('#tracking', 'data-status'), 'queued');
  await delivered(page);

  await page.reload();
  await page.waitForSelector('#tracking[data-status]');
  assert.equal(await page.getAttribute('#tracking', 'data-status'), 'duplicate', 'the tag remembers the order it sent');
  await page.reload();
  await page.waitForSelector('#tracking[data-status]');
  await delivered(page);

  // Even when the tag's memory of sent orders is gone (storage cleared on this device), the
  // collector keeps one conversion per (site, orderId).
  await page.evaluate(() => localStorage.removeItem('_utt_o'));
  await page.reload();
  await page.waitForSelector('#tracking[data-status]');
  assert.equal(await page.getAttribute('#tracking', 'data-status'), 'queued', 'without its memory the tag sends again');
  await delivered(page);
  const conversionsSent = seen.batches.flatMap((b) => JSON.parse(b).events).filter((e) => e.type === 'conversion' && e.order.orderId === order.orderId);
  assert.equal(new Set(conversionsSent.map((e) => e.id)).size, 2, 'two distinct conversion events reached the wire');

  const stored = await world.api.orders(order.orderId);
  assert.equal(stored.length, 1, `one stored conversion, got ${stored.length}`);
  assert.equal(stored[0].attribution?.clickId, clickId);
  const record = await world.api.click(clickId);
  assert.deepEqual(record.body.conversions.map((x) => x.orderId), [order.orderId]);
  await context.close();
});

test('4. a promo code without a click credits the partner who owns the code', { timeout: 90_000 }, async () => {
  const { context, page } = await landWithConsent(world, `/`);
  assert.deepEqual(await clicksKept(page), { cookie: [], local: [] });
  await browseAndAdd(page, world.base, ['TRAIL-42']);
  const order = await checkout(page, world.base, { promo: 'spring10' });
  assert.equal(order.promoCode, 'SPRING10');
  await delivered(page);

  const [c] = await storedOrders(world.api, order.orderId);
  assert.equal(c.promoCode, 'SPRING10');
  assert.equal(c.discount, '11.99');
  assert.equal(c.amount, '107.91');
  assert.deepEqual(c.touchpoints, []);
  assert.equal(c.attribution?.model, 'promo_code');
  assert.equal(c.attribution?.partner, 'influencer-anna');
  assert.deepEqual(c.promo, { code: 'SPRING10', partner: 'influencer-anna' });
  await context.close();
});

test('7. cross-device: a click and a sign-in on one device, a purchase with the same email on another, credits the click', { timeout: 90_000 }, async () => {
  const clickId = unique('S7');
  const name = unique('runner').toLowerCase();

  const laptop = await landWithConsent(world, `/?irclickid=${clickId}`);
  await laptop.page.goto(`${world.base}/account.html`);
  await laptop.page.fill('#signin-email', `${name}@example.com`);
  await laptop.page.click('#signin-submit');
  await laptop.page.waitForSelector('#identify-status');
  assert.equal(await laptop.page.textContent('#identify-status'), 'Identify: queued');
  await delivered(laptop.page);
  const laptopVisitor = (await storedRecords(laptop.page)).local?.visitor;
  assert.ok(laptopVisitor, 'the laptop has a visitor ID');

  // Another browser, no click; the same person types their address differently.
  const phone = await landWithConsent(world, `/`);
  assert.deepEqual(await clicksKept(phone.page), { cookie: [], local: [] });
  assert.notEqual((await storedRecords(phone.page)).local?.visitor, laptopVisitor);
  await browseAndAdd(phone.page, world.base, ['CAP-1']);
  const order = await checkout(phone.page, world.base, { email: `  ${name.toUpperCase()}@Example.COM ` });
  await delivered(phone.page);
  // The plain address never left either browser: only its hash did.
  for (const body of [...laptop.seen.batches, ...phone.seen.batches]) {
    assert.ok(!body.toLowerCase().includes(`${name}@example.com`), 'no plain email on the wire');
  }

  const [c] = await storedOrders(world.api, order.orderId);
  assert.equal(c.attribution?.clickId, clickId, `credited to the laptop's click: ${JSON.stringify(c.attribution)}`);
  assert.equal(c.attribution?.crossDevice, true);
  assert.deepEqual(c.touchpoints.map((t) => [t.clickId, t.crossDevice]), [[clickId, true]]);
  await laptop.context.close();
  await phone.context.close();
});
