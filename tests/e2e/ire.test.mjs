// End to end, a merchant leaving impact: the thank-you page keeps its `ire('identify', ...)` and
// `ire('trackConversion', ...)` calls, made on impact's snippet before anything has loaded, and
// loads dist/ire.js after the utt snippet. The order is stored by the real collector with the
// mapped fields and credited to the partner click of the landing. Real Chromium, the real
// collector; the assertions are on what the collector stored, read through its API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useWorld, landWithConsent, unique, delivered, storedOrders } from './support.mjs';

// The merchant's confirmation page as impact's integration guide has it, plus the two lines of
// the migration: the utt snippet in the head, /ire.js at the end of the body. impact's snippet
// stays as the queue (its script from impact's CDN removed): calls before ire.js loads wait there.
function thanksPage(req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  const snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  const order = {
    orderId: q.get('order'),
    customerId: q.get('customer'),
    customerEmail: q.get('email'),
    customerStatus: 'New',
    currencyCode: 'EUR',
    orderPromoCode: 'SPRING10',
    orderDiscount: '11.99',
    items: [
      { subTotal: '119.90', category: 'shoes', sku: 'TRAIL-42', quantity: 1, name: 'Trail shoe' },
      { subTotal: '48.00', category: 'socks', sku: 'SOCK-3P', quantity: 2, name: 'Running socks' },
    ],
  };
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Thanks</title>
<script>window.ire_o='ire';window.ire=window.ire||function(){(window.ire.a=window.ire.a||[]).push(arguments)};</script>
<script>${snippet}
utt("init",{site:"demo",collector:${JSON.stringify(world.collectorUrl)}});</script>
</head><body><h1>Thank you</h1>
<script>
ire('identify', {customerId: ${JSON.stringify(order.customerId)}, customerEmail: ${JSON.stringify(order.customerEmail)}, customProfileId: ''});
ire('trackConversion', 18092, ${JSON.stringify(order)}, {verifySiteDefinitionMatch: true});
</script>
<script src="/ire.js"></script>
</body></html>`);
}

const world = useWorld({ routes: { 'GET /ire-thanks.html': thanksPage } });

test("ire('trackConversion') through ire.js: a real conversion stored with the mapped fields and credited to the click", { timeout: 90_000 }, async () => {
  const clickId = unique('IRE');
  const orderId = unique('IRE-ORD');
  const email = `${unique('buyer').toLowerCase()}@example.com`;
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}`);
  const warnings = [];
  page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));

  await page.goto(`${world.base}/ire-thanks.html?order=${orderId}&customer=C-${orderId}&email=${encodeURIComponent(email)}`);
  await page.waitForFunction(() => window.ire?.utt);
  await delivered(page);

  const stored = await storedOrders(world.api, orderId);
  assert.equal(stored.length, 1, 'stored exactly once');
  const c = stored[0];
  // 119.90 + 48.00 - 11.99: impact subtracts orderDiscount from the lines, and so does ire.js.
  assert.equal(c.amount, '155.91');
  assert.equal(c.currency, 'EUR');
  assert.equal(c.discount, '11.99');
  assert.equal(c.promoCode, 'SPRING10');
  assert.equal(c.customerStatus, 'new');
  assert.deepEqual(
    c.items.map((i) => [i.sku, i.name, i.category, i.quantity, i.price]),
    [['TRAIL-42', 'Trail shoe', 'shoes', 1, '119.90'], ['SOCK-3P', 'Running socks', 'socks', 2, '24.00']]
  );
  assert.deepEqual(c.custom, { actionTrackerId: '18092' });
  assert.equal(c.attribution?.clickId, clickId);
  assert.equal(c.attribution?.network, 'impact');

  // identify went through utt: the address left the browser only as utt's SHA-256 hash.
  const events = seen.batches.flatMap((b) => JSON.parse(b).events);
  const identified = events.filter((e) => e.type === 'identify');
  assert.equal(identified.length, 1, JSON.stringify(identified));
  assert.equal(identified[0].customerId, `C-${orderId}`);
  assert.match(identified[0].emailHash, /^[0-9a-f]{64}$/);
  for (const body of seen.batches) assert.ok(!body.toLowerCase().includes(email), 'no plain email on the wire');

  assert.deepEqual(warnings.filter((w) => w.startsWith('[utt ire]')), [
    `[utt ire] ire('trackConversion'): options {"verifySiteDefinitionMatch":true} ignored: utt has no equivalent (the collector decides what counts)`,
  ]);
  assert.deepEqual(seen.errors, []);
  await context.close();
});
