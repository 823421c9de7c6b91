// The `ire()` compatibility script (dist/ire.js, as built) in headless Chromium: what impact's
// `ire('identify', ...)` and `ire('trackConversion', ...)` calls become as `utt(...)` calls,
// the console warnings for what has no equivalent, calls queued by impact's snippet before the
// script loaded, a parallel run with impact's own tag, and no exception reaching the page. Here
// `window.utt` is a recorder, so the exact arguments utt receives are asserted; the end-to-end
// test (tests/e2e/ire.test.mjs) drives the real tag and collector.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, launchChromium, serveStatic, openPage, stopAll } from './harness.mjs';

let site, browser, server;

// impact's snippet, as its installation guide shows it, without the script it loads from
// impact's CDN: `ire` queues its calls in `ire.a`.
const IMPACT_STUB = `window.ire_o='ire';window.ire=window.ire||function(){(window.ire.a=window.ire.a||[]).push(arguments)};`;
// A stand-in for `window.utt` that records a copy of every call and answers like the tag; and
// console.warn recorded too.
const RECORDER = `
window.calls = [];
window.utt = function () {
  var args = JSON.parse(JSON.stringify(Array.prototype.slice.call(arguments)));
  calls.push(args);
  return Promise.resolve({ ok: true, status: 'queued', id: 'E' + calls.length });
};
window.warnings = [];
var warn0 = console.warn;
console.warn = function () { warnings.push(Array.prototype.join.call(arguments, ' ')); warn0.apply(console, arguments); };`;
// impact's own tag, reduced to how it takes over `ire` (as in the tag impact serves): it replays
// the calls queued in `window[ire_o].a`, then replaces `ire` with its own function.
const IMPACT_TAG = `
window.impactSaw = [];
(function (w, f, v) {
  var a = w[v] && w[w[v]].a ? w[w[v]].a : [];
  var nf = function (args) { impactSaw.push(Array.prototype.slice.call(args)); };
  for (var x = 0; x < a.length; x++) nf(a[x]);
  w[f] = function () { nf(arguments); };
})(window, 'ire', 'ire_o');`;

function page(name, body) {
  writeFileSync(join(site, name), `<!doctype html><html><head><title>${name}</title></head><body>${body}</body></html>`);
}

before(async () => {
  site = mkdtempSync(join(tmpdir(), 'utt-ire-'));
  copyFileSync(join(ROOT, 'dist', 'ire.js'), join(site, 'ire.js'));
  page(
    'queued.html',
    `<script>${IMPACT_STUB}${RECORDER}
ire('identify', {customerId: 'C-1', customerEmail: 'Jane@Example.com', customProfileId: 'P-9'});
ire('trackConversion', 1234, {orderId: 'EARLY-1', orderSubTotalPostDiscount: '10.00', currencyCode: 'USD'});
</script><script src="/ire.js"></script>`
  );
  page('plain.html', `<script>${RECORDER}</script><script src="/ire.js"></script>`);
  page('impact-later.html', `<script>${IMPACT_STUB}${RECORDER}ire('identify', {customerId: 'A'});</script><script src="/ire.js"></script>`);
  page('impact-first.html', `<script>${IMPACT_STUB}${RECORDER}ire('identify', {customerId: 'A'});${IMPACT_TAG}</script><script src="/ire.js"></script>`);
  server = await serveStatic({ '/': site });
  browser = await launchChromium();
});

after(() => stopAll({ browser, server, site }));

const open = (path) => openPage(browser, server.url + path, () => window.ire && window.ire.utt);

const recorded = (p) => p.evaluate(() => ({ calls: window.calls, warnings: window.warnings }));
// Each warning that contains every one of `parts`.
const warned = (warnings, ...parts) => warnings.filter((w) => w.startsWith('[utt ire] ') && parts.every((x) => w.includes(x)));

test("calls impact's snippet queued before the script loaded are replayed in order", async () => {
  const { p, context, errors } = await open('/queued.html');
  const { calls, warnings } = await recorded(p);
  assert.deepEqual(calls, [
    ['identify', { customerId: 'C-1', email: 'Jane@Example.com' }],
    ['conversion', { orderId: 'EARLY-1', currency: 'USD', amount: '10.00', custom: { actionTrackerId: '1234' } }],
  ]);
  assert.equal(warned(warnings, "ire('identify')", 'customProfileId').length, 1, warnings.join('\n'));
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('identify: a plain email goes to utt (which hashes it); a SHA-1 hash is left out with a warning', async () => {
  const { p, context, errors } = await open('/plain.html');
  const answers = await p.evaluate(async () => [
    await ire('identify', { customerId: 77, customerEmail: 'a.b@example.com' }),
    await ire('identify', { customerId: 'C-2', customerEmail: 'da39a3ee5e6b4b0d3255bfef95601890afd80709' }),
    await ire('identify', { customerEmail: 'DA39A3EE5E6B4B0D3255BFEF95601890AFD80709', customProfileId: 'P' }),
    await ire('identify', { customerId: '', customerEmail: '', customProfileId: '' }),
  ]);
  const { calls, warnings } = await recorded(p);
  assert.deepEqual(calls, [
    ['identify', { customerId: '77', email: 'a.b@example.com' }],
    ['identify', { customerId: 'C-2' }],
  ]);
  assert.deepEqual(answers.slice(0, 2), [
    { ok: true, status: 'queued', id: 'E1' },
    { ok: true, status: 'queued', id: 'E2' },
  ]);
  // Nothing utt can use: no call, and an answer that says so.
  for (const a of answers.slice(2)) {
    assert.equal(a.ok, false);
    assert.equal(a.status, 'error');
    assert.match(a.error, /no customerId or email address/);
  }
  assert.equal(warned(warnings, 'customerEmail', 'SHA-1', 'left out').length, 2, warnings.join('\n'));
  assert.equal(warned(warnings, 'customProfileId').length, 1, warnings.join('\n'));
  // Empty values are "not given", as impact treats them: no warning for them.
  assert.equal(warnings.length, 3, warnings.join('\n'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('trackConversion: every mapped field, the amount from the lines less the discount, and warnings for the rest', async () => {
  const { p, context, errors } = await open('/plain.html');
  const answer = await p.evaluate(() =>
    ire(
      'trackConversion',
      18092,
      {
        orderId: 'ORD-77',
        customerId: 'C-9',
        customerEmail: 'da39a3ee5e6b4b0d3255bfef95601890afd80709',
        customerStatus: 'Existing',
        currencycode: 'eur', // impact matches names without regard to case
        orderPromoCode: 'SPRING10',
        orderDiscount: '11.99',
        orderShipping: '4.95',
        items: [
          { subTotal: '119.90', category: 'shoes', sku: 'TRAIL-42', quantity: 1, name: 'Trail shoe' },
          { subTotal: '48.00', category: 'socks', sku: 'SOCK-3P', quantity: '2', name: 'Socks', brand: 'Acme' },
          { subTotal: 10, sku: 'THIRD', quantity: 3 },
        ],
      },
      { verifySiteDefinitionMatch: true }
    )
  );
  const { calls, warnings } = await recorded(p);
  assert.deepEqual(calls, [
    ['identify', { customerId: 'C-9' }],
    [
      'conversion',
      {
        orderId: 'ORD-77',
        currency: 'EUR',
        promoCode: 'SPRING10',
        customerStatus: 'returning',
        discount: '11.99',
        items: [
          { sku: 'TRAIL-42', name: 'Trail shoe', category: 'shoes', quantity: 1, price: '119.90' },
          { sku: 'SOCK-3P', name: 'Socks', category: 'socks', quantity: 2, price: '24.00' },
          { sku: 'THIRD', quantity: 3 },
        ],
        // 119.90 + 48.00 + 10 - 11.99, exactly.
        amount: '165.91',
        custom: { actionTrackerId: '18092', orderShipping: '4.95' },
      },
    ],
  ]);
  assert.deepEqual(answer, { ok: true, status: 'queued', id: 'E2' }, "ire() answers what utt('conversion') answered");
  for (const parts of [
    ['customerEmail', 'SHA-1'],
    ['items[1]', 'brand'],
    ['items[2].subTotal', 'quantity 3'],
    ['orderShipping', 'order.custom'],
    ['verifySiteDefinitionMatch', 'ignored'],
  ]) {
    assert.equal(warned(warnings, "ire('trackConversion')", ...parts).length, 1, `${parts}: ${warnings.join('\n')}`);
  }
  assert.equal(warnings.length, 5, warnings.join('\n'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('trackConversion: where the amount comes from, and money utt would refuse kept aside instead of losing the order', async () => {
  const { p, context, errors } = await open('/plain.html');
  await p.evaluate(() => {
    // orderSubTotalPostDiscount is the amount as given, whatever the lines say.
    ire('trackConversion', 1, { orderId: 'A1', orderSubTotalPostDiscount: 99.5, items: [{ subTotal: '10.00', quantity: 4 }] });
    // Pre-discount subtotal less the discount; numbers keep their digits.
    ire('trackConversion', 1, { orderId: 'A2', orderSubTotalPreDiscount: 100, orderDiscount: 0.25 });
    // Unit price × quantity when the line gives a price; subTotal 10 for 4 is 2.5 a unit.
    ire('trackConversion', 1, { orderId: 'A3', items: [{ price: '1.10', quantity: 3 }, { subTotal: 10, quantity: 4 }] });
    // A discount above the total: no amount rather than a negative one.
    ire('trackConversion', 1, { orderId: 'A4', orderSubTotalPreDiscount: '5.00', orderDiscount: '6.00' });
    // Not decimals: kept in custom, the order still counted.
    ire('trackConversion', 1, { orderId: 'A5', orderDiscount: '-5', orderSubTotalPostDiscount: '12,50' });
    // A lead without any amount: nothing to warn about.
    ire('trackConversion', 2, { orderId: 'LEAD-1' });
    // utt takes at most 8 digits after the point: no unit price rather than one utt would refuse.
    ire('trackConversion', 1, { orderId: 'A6', items: [{ subTotal: '1.00000000', quantity: 3 }] });
    // A float with 17 digits after the point, or spaces around an amount, are not amounts for utt.
    ire('trackConversion', 1, { orderId: 'A7', orderSubTotalPostDiscount: 0.1 + 0.2, orderDiscount: ' 1.00' });
  });
  const { calls, warnings } = await recorded(p);
  const orders = Object.fromEntries(calls.map(([, o]) => [o.orderId, o]));
  assert.equal(orders.A1.amount, 99.5);
  assert.deepEqual(orders.A1.items, [{ quantity: 4, price: '2.50' }]);
  assert.equal(orders.A2.amount, '99.75');
  assert.equal(orders.A2.discount, 0.25);
  assert.equal(orders.A3.amount, '13.30');
  assert.deepEqual(orders.A3.items, [{ quantity: 3, price: '1.10' }, { quantity: 4, price: '2.5' }]);
  assert.equal('amount' in orders.A4, false);
  assert.equal(warned(warnings, 'no amount', 'orderSubTotalPreDiscount').length, 1, warnings.join('\n'));
  assert.deepEqual(orders.A5.custom, { actionTrackerId: '1', orderDiscount: '-5', orderSubTotalPostDiscount: '12,50' });
  assert.equal('discount' in orders.A5 || 'amount' in orders.A5, false);
  assert.equal(warned(warnings, 'orderDiscount "-5" is not a decimal amount').length, 1, warnings.join('\n'));
  assert.deepEqual(orders['LEAD-1'], { orderId: 'LEAD-1', custom: { actionTrackerId: '2' } });
  assert.deepEqual(orders.A6.items, [{ quantity: 3 }]);
  assert.equal(orders.A6.amount, '1.00000000');
  assert.equal(warned(warnings, 'items[0].subTotal 1.00000000', 'quantity 3').length, 1, warnings.join('\n'));
  assert.deepEqual(orders.A7.custom, { actionTrackerId: '1', orderSubTotalPostDiscount: 0.30000000000000004, orderDiscount: ' 1.00' });
  assert.equal('discount' in orders.A7 || 'amount' in orders.A7, false);
  assert.equal(warnings.length, 6, warnings.join('\n'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('nothing reaches the page: bad calls answer an error and are reported in the console', async () => {
  const { p, context, errors } = await open('/plain.html');
  const answers = await p.evaluate(async () => {
    const hostile = {};
    Object.defineProperty(hostile, 'orderId', { enumerable: true, get: () => { throw new Error('boom'); } });
    const out = [];
    for (const args of [
      [],
      [null],
      ['trackCart', 1, {}],
      ['generateClickId', () => {}],
      ['trackConversion'],
      ['trackConversion', 1, 'not an object'],
      ['trackConversion', 1, hostile],
      ['identify'],
      ['identify', 'jane@example.com'],
      ['toString'],
    ]) {
      out.push(await ire(...args));
    }
    return out;
  });
  for (const a of answers) {
    assert.equal(a.ok, false, JSON.stringify(a));
    assert.equal(a.status, 'error');
    assert.match(a.error, /^ire: /);
  }
  const { calls, warnings } = await recorded(p);
  assert.deepEqual(calls, []);
  assert.equal(warned(warnings, "ire('trackCart') has no utt equivalent").length, 1, warnings.join('\n'));
  assert.equal(warned(warnings, "ire('toString') has no utt equivalent").length, 1, warnings.join('\n'));
  assert.equal(warned(warnings, 'internal error', 'boom').length, 1, warnings.join('\n'));
  assert.deepEqual(errors, []);
  await context.close();
});

test("a parallel run with impact's tag loading later: impact replays every call once, then keeps receiving them", async () => {
  const { p, context, errors } = await open('/impact-later.html');
  await p.evaluate(() => ire('trackConversion', 5, { orderId: 'P-1' }));
  await p.addScriptTag({ content: IMPACT_TAG });
  await p.evaluate(() => ire('trackConversion', 5, { orderId: 'P-2' }));
  const { impactSaw, calls, own } = await p.evaluate(() => ({ impactSaw: window.impactSaw, calls: window.calls, own: !!window.ire.utt }));
  assert.deepEqual(impactSaw, [
    ['identify', { customerId: 'A' }],
    ['trackConversion', 5, { orderId: 'P-1' }],
    ['trackConversion', 5, { orderId: 'P-2' }],
  ]);
  assert.deepEqual(calls.map((c) => [c[0], c[1].customerId ?? c[1].orderId]), [['identify', 'A'], ['conversion', 'P-1'], ['conversion', 'P-2']]);
  assert.equal(own, true, 'ire is still the shim');
  assert.deepEqual(errors, []);
  await context.close();
});

test("a parallel run with impact's tag loaded first: each call goes to both", async () => {
  const { p, context, errors } = await open('/impact-first.html');
  await p.evaluate(() => ire('identify', { customerId: 'B' }));
  const { impactSaw, calls } = await p.evaluate(() => ({ impactSaw: window.impactSaw, calls: window.calls }));
  // impact replayed its own queue when it loaded; utt did not see that call (it was made before
  // the shim, and impact's tag had already taken it from the queue).
  assert.deepEqual(impactSaw, [['identify', { customerId: 'A' }], ['identify', { customerId: 'B' }]]);
  assert.deepEqual(calls, [['identify', { customerId: 'B' }]]);
  assert.deepEqual(errors, []);
  await context.close();
});

test("trackConversion's customer fields are identified once: not again when the page already identified with them", async () => {
  const { p, context, errors } = await open('/plain.html');
  await p.evaluate(() => {
    ire('identify', { customerId: 'C-5', customerEmail: 'c5@example.com' });
    ire('trackConversion', 1, { orderId: 'D-1', customerId: 'C-5', customerEmail: 'c5@example.com' });
    ire('trackConversion', 1, { orderId: 'D-2', customerId: 'C-6' });
    ire('trackConversion', 1, { orderId: 'D-3', customerId: 'C-6' });
  });
  const { calls } = await recorded(p);
  assert.deepEqual(calls.map(([name, arg]) => [name, arg.orderId ?? arg.customerId]), [
    ['identify', 'C-5'],
    ['conversion', 'D-1'],
    ['identify', 'C-6'],
    ['conversion', 'D-2'],
    ['conversion', 'D-3'],
  ]);
  assert.deepEqual(errors, []);
  await context.close();
});
