// End to end: the merchant's report (www/report.html) on a collector configured with a site of
// its own (read and server keys, partners, a promo code). Journeys are seeded through the
// collector's real HTTP endpoints: clicks of several partners (some without a conversion), a
// promo-code conversion, an order the merchant's server confirmed at another amount and then
// partly refunded, one in another currency, and a month-old journey outside the range. The test
// computes the expected numbers itself from `GET /v1/conversions` and from what it seeded, and
// checks the page's table, chart and CSV downloads against them and against `GET /v1/report`.
// Three partners have postbacks to a receiver the test runs on 127.0.0.1 that verifies their
// signatures: one answers 200 (delivered), one 400 (failed at once), one 503 (pending, retried);
// the page's postback column must equal the counts of the real `GET /v1/postbacks` answer for
// the range's orders. Screenshots go to test-artifacts/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { after } from 'node:test';
import { useWorld, visitor, artifact, eventually } from './support.mjs';

const SITE = 'outfitters';
const READ = 'report-read-key-0001';
const SERVER = 'report-server-key-0001';
const HOSTILE_NAME = 'Anna <img src=x onerror=alert(1)>';
const FORMULA_NAME = '=HYPERLINK("http://evil.example","click")';

// ---------------------------------------------------------------- the partners' postback receiver

/** Each partner's postback secret, and how its receiver answers. */
const POSTBACKS = {
  'demo-affiliate': { secret: 'pb-secret-demo-affiliate-0001', answer: 200, status: 'delivered' },
  'outdoor-blog': { secret: 'pb-secret-outdoor-blog-000002', answer: 400, status: 'failed' },
  'influencer-anna': { secret: 'pb-secret-influencer-anna-03', answer: 503, status: 'pending' },
};

/**
 * Whether `header` (`t=<s>,v1=<hex>`) is a valid `Utt-Signature` of `body` (the raw bytes) with
 * `secret`: HMAC-SHA256 over "<t>.<body>", compared in constant time, `t` within 5 minutes.
 */
function signed(secret, header, body) {
  const parts = Object.fromEntries(String(header ?? '').split(',').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  if (!/^\d+$/.test(parts.t ?? '') || Math.abs(Date.now() / 1000 - Number(parts.t)) > 300) return false;
  if (!/^[0-9a-f]{64}$/.test(parts.v1 ?? '')) return false;
  const want = createHmac('sha256', secret).update(`${parts.t}.`).update(body).digest();
  return timingSafeEqual(want, Buffer.from(parts.v1, 'hex'));
}

/**
 * A partner's endpoint on 127.0.0.1: `POST /pb/<partner>?order=…&kind=…` records the request
 * (its `Idempotency-Key`, whether the signature is valid with that partner's secret, the body)
 * and answers as POSTBACKS says.
 */
async function startReceiver() {
  const got = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url, 'http://receiver');
      const partner = decodeURIComponent(url.pathname.replace(/^\/pb\//, ''));
      const secret = POSTBACKS[partner]?.secret;
      got.push({
        partner, method: req.method, key: req.headers['idempotency-key'], signature: req.headers['utt-signature'],
        valid: secret !== undefined && signed(secret, req.headers['utt-signature'], body),
        order: url.searchParams.get('order'), kind: url.searchParams.get('kind'), body: body.toString('utf8'),
      });
      const status = POSTBACKS[partner]?.answer ?? 404;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 400 ? 'unknown campaign' : 'noted');
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    got,
    close: () => new Promise((ok) => {
      server.close(ok);
      server.closeAllConnections();
    }),
  };
}

const receiver = await startReceiver();
after(() => receiver.close());

const postbackEntries = Object.entries(POSTBACKS).map(([partner, { secret }]) => `
[[sites.postbacks]]
partner = "${partner}"
url = "${receiver.url}/pb/${partner}?order={orderId}&kind={kind}"
secret = "${secret}"
`).join('');

const world = useWorld({
  sameOrigin: true,
  config: `
[rate_limit]
per_second = 0
burst = 0

[postbacks]
initial_backoff_ms = 50
poll_ms = 20
sweep_ms = 300

[[sites]]
id = "${SITE}"
allowed_origins = ["http://127.0.0.1:*"]
read_key = "${READ}"
server_key = "${SERVER}"
[sites.promo_codes]
SPRING10 = "influencer-anna"
[sites.partners]
params = { impact = "irpid" }
[sites.partners.ids]
"impact:1001" = "demo-affiliate"
"impact:2002" = "outdoor-blog"
[sites.partners.names]
demo-affiliate = "Demo Affiliate"
influencer-anna = ${JSON.stringify(HOSTILE_NAME)}
outdoor-blog = ${JSON.stringify(FORMULA_NAME)}
${postbackEntries}`,
});

const DAY = 86_400_000;
// 10:00 UTC k days before today: inside the default range (the 30 days up to today, UTC).
const at = (k) => Math.floor(Date.now() / DAY) * DAY - k * DAY + 10 * 3_600_000;
const utcDay = (ms) => new Date(ms).toISOString().slice(0, 10);

// ---------------------------------------------------------------- seeding through HTTP

async function post(path, body, headers = {}) {
  const res = await fetch(`${world.collectorUrl}${path}`, { method: 'POST', body: JSON.stringify(body), headers });
  const text = await res.text();
  assert.equal(res.status, 200, `${path}: ${text}`);
  return JSON.parse(text);
}

const impactClick = (value, when) => ({ param: 'irclickid', network: 'impact', value, at: when, path: '/' });

/** A page view on the landing URL carrying the click. */
function landing(visitorId, click, url) {
  return { id: crypto.randomUUID(), type: 'pageview', at: click.at, visitor: visitorId, session: visitorId, url, clicks: [click] };
}

function purchase(visitorId, when, clicks, order) {
  return { id: crypto.randomUUID(), type: 'conversion', at: when, visitor: visitorId, session: visitorId, url: 'https://outfitters.example/thanks', clicks, order };
}

/** The seeded clicks in the range, by the partner their landing names: what "Clicks" must say. */
const SEEDED_CLICKS = { 'demo-affiliate': 2, 'outdoor-blog': 2, '': 1 };

async function seed() {
  const v = () => crypto.randomUUID();
  const [a, b, c, d, e, f, g, old] = [v(), v(), v(), v(), v(), v(), v(), v()];
  const ca1 = impactClick('CA1', at(5));
  const cb1 = impactClick('CB1', at(3));
  const oldClick = impactClick('OLD', at(40));
  const events = [
    // demo-affiliate: two clicks, one converts (R-1).
    landing(a, ca1, 'https://outfitters.example/?irclickid=CA1&irpid=1001'),
    purchase(a, at(4), [ca1], { orderId: 'R-1', amount: '120.00', currency: 'EUR' }),
    landing(b, impactClick('CA2', at(4)), 'https://outfitters.example/?irclickid=CA2&irpid=1001'),
    // outdoor-blog: two clicks, one converts (R-2, then confirmed by the server and refunded).
    landing(c, cb1, 'https://outfitters.example/?irclickid=CB1&irpid=2002'),
    purchase(c, at(2), [cb1], { orderId: 'R-2', amount: '80.50', currency: 'EUR' }),
    landing(d, impactClick('CB2', at(2)), 'https://outfitters.example/?irclickid=CB2&irpid=2002'),
    // A click nobody maps: no partner.
    landing(e, { param: 'gclid', network: 'google', value: 'G1', at: at(1), path: '/' }, 'https://outfitters.example/?gclid=G1'),
    // A promo-code conversion, and one in dollars credited to nobody.
    purchase(f, at(1), [], { orderId: 'R-3', amount: '59.90', currency: 'EUR', promoCode: 'spring10' }),
    purchase(g, at(1) + 60_000, [], { orderId: 'R-4', amount: '19.99', currency: 'USD' }),
    // A month ago: outside the range.
    landing(old, oldClick, 'https://outfitters.example/?irclickid=OLD&irpid=1001'),
    purchase(old, at(39), [oldClick], { orderId: 'R-0', amount: '500', currency: 'EUR' }),
  ];
  const answer = await post('/v1/events', { v: 1, site: SITE, sentAt: Date.now(), events }, { 'content-type': 'text/plain' });
  assert.deepEqual(answer.results.map((r) => r.status), events.map(() => 'accepted'), JSON.stringify(answer));
  const server = { 'content-type': 'application/json', authorization: `Bearer ${SERVER}` };
  await post(`/v1/conversions?site=${SITE}`, { order: { orderId: 'R-2', amount: '75.00', currency: 'EUR' }, at: at(2) + 5_000 }, server);
  await post(`/v1/conversions/R-2/adjustments?site=${SITE}`, { adjustmentId: 'RF-9', type: 'refund', amount: '25.25', reason: 'one item returned' }, server);
}

async function read(path) {
  const res = await fetch(`${world.collectorUrl}${path}`, { headers: { authorization: `Bearer ${READ}` } });
  assert.equal(res.status, 200, path);
  return res.json();
}

/**
 * The site's postback deliveries once the seeded orders' have each reached the status their
 * receiver makes (delivered, failed; pending after at least one attempt at the 503 receiver).
 */
function settledPostbacks() {
  return eventually('the postbacks delivered, refused and retried', async () => {
    const list = (await read(`/v1/postbacks?site=${SITE}&limit=10000`)).postbacks;
    const done = list.length === 5 && list.every((p) => p.status === POSTBACKS[p.partner]?.status && p.attempts >= 1);
    if (!done) throw new Error(JSON.stringify(list));
    return list;
  }, { timeout: 30_000 });
}

// ---------------------------------------------------------------- the test's own arithmetic

/** Exact decimal sums, as the collector promises them (the larger number of fraction digits). */
function dec(text) {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  assert.ok(m, `a decimal: ${text}`);
  const digits = (m[3] ?? '').length;
  const units = BigInt(m[2] + (m[3] ?? '').padEnd(8, '0'));
  return { units: m[1] ? -units : units, digits };
}
const plus = (a, b) => ({ units: a.units + b.units, digits: Math.max(a.digits, b.digits) });
const ZERO = { units: 0n, digits: 0 };
function show({ units, digits }) {
  const abs = units < 0n ? -units : units;
  const int = abs / 100_000_000n;
  const frac = String(abs % 100_000_000n).padStart(8, '0').slice(0, digits);
  return `${units < 0n ? '-' : ''}${int}${digits ? `.${frac}` : ''}`;
}

/** Per partner ID ('' for none) and currency: conversions, gross, adjustments, net. */
function sums(conversions, pick = () => true) {
  const out = new Map();
  for (const c of conversions.filter(pick)) {
    const key = `${c.attribution?.partner ?? ''}|${c.currency}`;
    const s = out.get(key) ?? { n: 0, gross: ZERO, adj: ZERO, net: ZERO };
    out.set(key, { n: s.n + 1, gross: plus(s.gross, dec(c.gross)), adj: plus(s.adj, dec(c.adjustmentTotal)), net: plus(s.net, dec(c.net)) });
  }
  return out;
}

// ---------------------------------------------------------------- reading the page

const cells = (page, selector) => page.$$eval(selector, (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));

/** A small RFC 4180 reader (quotes, doubled quotes, CRLF). */
function parseCsv(text) {
  assert.ok(text.startsWith('\ufeff'), 'a byte-order mark for spreadsheets');
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 1; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += ch;
  }
  assert.equal(row.length + cell.length, 0, 'the file ends with CRLF');
  return rows;
}

/** The by-partner table's postback column, as `name: cell` per row. */
const postbackColumn = (rows) => rows.map((r) => `${r[0]}: ${r[8]}`);

/** That column for the seeded partners' [delivered, pending, failed] counts and the total's. */
function columnSaying(demo, blog, anna, total) {
  const say = ([d, p, f]) => `${d} delivered, ${p} pending, ${f} failed`;
  return [`Demo Affiliate: ${say(demo)}`, `${FORMULA_NAME}: ${say(blog)}`, `${HOSTILE_NAME}: ${say(anna)}`, 'no partner: —', `Total: ${say(total)}`, 'Total: '];
}

async function downloaded(page, button) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
  return { name: file.suggestedFilename(), text: await readFile(await file.path(), 'utf8') };
}

async function submitted(page, site, key) {
  await page.fill('#site', site);
  await page.fill('#key', key);
  await page.evaluate(() => delete document.body.dataset.state);
  await page.click('#open');
  await page.waitForSelector('body[data-state="ok"], body[data-state="error"]');
  return page.locator('#status').textContent();
}

test('the report by partner equals the read API, with its chart, orders and CSV', { timeout: 120_000 }, async () => {
  await seed();
  const api = await read(`/v1/report?site=${SITE}`);
  const conversions = (await read(`/v1/conversions?site=${SITE}&since=${api.fromMs}`)).conversions.filter((c) => c.at < api.toMs);
  assert.deepEqual(conversions.map((c) => c.orderId).sort(), ['R-1', 'R-2', 'R-3', 'R-4'], 'the range holds the seeded orders, not the old one');
  const r2 = conversions.find((c) => c.orderId === 'R-2');
  assert.deepEqual([r2.confirmed, r2.gross, r2.adjustmentTotal, r2.net], [true, '75.00', '-25.25', '49.75']);

  // Real postbacks: each credited order (and R-2's refund) to its partner's receiver, R-4
  // (nobody's) to none; R-0 too, though outside the range.
  const deliveries = await settledPostbacks();
  assert.deepEqual(deliveries.map((d) => `${d.kind} ${d.orderId} ${d.adjustmentId ?? '-'} ${d.partner} ${d.status}`).sort(), [
    'adjustment R-2 RF-9 outdoor-blog failed',
    'conversion R-0 - demo-affiliate delivered',
    'conversion R-1 - demo-affiliate delivered',
    'conversion R-2 - outdoor-blog failed',
    'conversion R-3 - influencer-anna pending',
  ]);
  for (const d of deliveries) {
    const reqs = receiver.got.filter((g) => g.key === d.id);
    const what = `${d.kind} ${d.orderId} to ${d.partner}`;
    // Delivered and refused ones were sent once; the one the receiver answers 503 is retried
    // (at least as often as the collector counted when it was read), each time the same bytes.
    if (d.status === 'pending') assert.ok(reqs.length >= d.attempts, `${what}: ${reqs.length} request(s), ${d.attempts} attempt(s)`);
    else assert.equal(reqs.length, 1, `${what} was received once`);
    assert.equal(new Set(reqs.map((g) => g.body)).size, 1, `${what}: every attempt sends the same body`);
    for (const g of reqs) {
      assert.ok(g.valid, `${what}: a valid signature (${g.signature})`);
      assert.deepEqual([g.method, g.partner, g.order, g.kind], ['POST', d.partner, d.orderId, d.kind]);
      const body = JSON.parse(g.body);
      assert.deepEqual([body.deliveryId, body.kind, body.site, body.orderId, body.adjustmentId, body.partner],
        [d.id, d.kind, SITE, d.orderId, d.adjustmentId, d.partner]);
    }
    if (d.status === 'failed') assert.match(d.lastError, /^HTTP 400: unknown campaign/);
  }
  assert.deepEqual(receiver.got.filter((g) => !deliveries.some((d) => d.id === g.key)), [], 'nothing else was posted');
  const first = receiver.got[0];
  assert.equal(signed(POSTBACKS[first.partner].secret, first.signature, Buffer.from(`${first.body} `)), false, 'the check refuses another body');
  const body = (kind, order) => JSON.parse(receiver.got.find((g) => g.kind === kind && g.order === order).body);
  assert.deepEqual([body('conversion', 'R-1').amount, body('conversion', 'R-1').currency, body('conversion', 'R-1').clickId], ['120.00', 'EUR', 'CA1']);
  assert.deepEqual([body('adjustment', 'R-2').amount, body('adjustment', 'R-2').adjustmentType, body('adjustment', 'R-2').netAmount], ['-25.25', 'refund', '49.75']);
  assert.deepEqual([body('conversion', 'R-3').amount, body('conversion', 'R-3').network, body('conversion', 'R-3').clickId], ['59.90', null, null]);

  // What the postback column must say: the deliveries of the range's orders, by partner.
  const inRange = new Set(conversions.map((c) => c.orderId));
  const postbackCell = (id, total = false) => {
    if (!total && id === '') return '—';
    const n = { delivered: 0, pending: 0, failed: 0 };
    for (const d of deliveries) if (inRange.has(d.orderId) && (total || d.partner === id)) n[d.status] += 1;
    return `${n.delivered} delivered, ${n.pending} pending, ${n.failed} failed`;
  };

  const { context, page, seen } = await visitor(world);
  const asked = [];
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname === '/v1/postbacks') asked.push([url.searchParams.toString(), req.headers().authorization]);
  });
  await page.goto(`${world.base}/report.html`);
  await page.waitForSelector('body[data-ready]');
  assert.equal(await page.inputValue('#site'), '', 'no site is assumed');

  // Refusals, each explained.
  assert.match(await submitted(page, SITE, ''), /read key is missing for site “outfitters”/);
  assert.match(await submitted(page, SITE, 'not-the-key'), /read key is wrong/);
  assert.match(await submitted(page, 'nosuchsite', READ), /has no site “nosuchsite”/);
  const reportUrl = (url) => url.pathname === '/v1/report';
  await page.route(reportUrl, (route) => route.abort('connectionrefused'));
  assert.match(await submitted(page, SITE, READ), /cannot be reached/);
  await page.unroute(reportUrl);
  assert.equal(await page.isVisible('#report'), false);

  assert.match(await submitted(page, SITE, READ), /4 conversion\(s\)/);
  assert.equal(await page.inputValue('#to'), api.to, 'the default range ends today (UTC)');
  assert.equal(await page.inputValue('#from'), api.from);

  // By partner: the rows the collector computed, equal to the test's own sums.
  const table = await cells(page, '#partners-table tbody tr');
  const expected = [];
  const own = sums(conversions);
  const names = { 'demo-affiliate': 'Demo Affiliate', 'outdoor-blog': FORMULA_NAME, 'influencer-anna': HOSTILE_NAME, '': 'no partner' };
  for (const p of api.partners) {
    const id = p.partner ?? '';
    const currencies = [...own.keys()].filter((k) => k.startsWith(`${id}|`)).map((k) => k.split('|')[1]).sort();
    const lines = currencies.length ? currencies : [null];
    lines.forEach((cur, i) => {
      const s = cur && own.get(`${id}|${cur}`);
      expected.push([names[id], id, i ? '' : String(SEEDED_CLICKS[id] ?? 0), String(s ? s.n : 0), cur ?? '',
        s ? show(s.gross) : '', s ? show(s.adj) : '', s ? show(s.net) : '', i ? '' : postbackCell(id)]);
    });
  }
  const all = sums(conversions.map((c) => ({ ...c, attribution: null })));
  ['EUR', 'USD'].forEach((cur, i) => {
    const s = all.get(`|${cur}`);
    expected.push(['Total', '', i ? '' : '5', String(s.n), cur, show(s.gross), show(s.adj), show(s.net), i ? '' : postbackCell('', true)]);
  });
  assert.deepEqual(table, expected);
  assert.deepEqual(table.find((r) => r[1] === 'outdoor-blog'), [FORMULA_NAME, 'outdoor-blog', '2', '1', 'EUR', '75.00', '-25.25', '49.75', '0 delivered, 0 pending, 2 failed']);
  assert.deepEqual(table.at(-2), ['Total', '', '5', '3', 'EUR', '254.90', '-25.25', '229.65', '1 delivered, 1 pending, 2 failed']);
  // The postback column: R-0's delivery (outside the range) is not counted; nobody's orders have none.
  assert.deepEqual(postbackColumn(table), columnSaying([1, 0, 0], [0, 0, 2], [0, 1, 0], [1, 1, 2]));
  assert.deepEqual(asked, [[`site=${SITE}&since=${api.fromMs}&limit=10000`, `Bearer ${READ}`]]);
  assert.deepEqual(api.partners.map((p) => p.partner), ['demo-affiliate', 'outdoor-blog', 'influencer-anna', null]);
  // Data stays text: the hostile partner name is shown, never made an element.
  assert.equal(await page.locator('#report img').count(), 0);
  assert.deepEqual(seen.dialogs, []);

  // The chart: a bar per day and partner with conversions, a point per day for each partner
  // with revenue in the chosen currency, equal to the test's sums per UTC day.
  const bars = await page.$$eval('#chart-conversions rect.bar', (els) => els.map((e) => `${e.dataset.day} ${e.dataset.partner} ${e.dataset.value}`));
  const perDay = new Map();
  for (const c of conversions) {
    const k = `${utcDay(c.at)} ${c.attribution?.partner ?? ''}`;
    perDay.set(k, (perDay.get(k) ?? 0) + 1);
  }
  assert.deepEqual(bars.sort(), [...perDay].map(([k, n]) => `${k} ${n}`).sort());
  const points = async () => page.$$eval('#chart-revenue circle.point', (els) => els.map((e) => `${e.dataset.day} ${e.dataset.partner} ${e.dataset.value}`));
  const revenue = (cur) => conversions.filter((c) => c.currency === cur).map((c) => `${utcDay(c.at)} ${c.attribution?.partner ?? ''} ${c.net}`).sort();
  let shown = await points();
  const eurPartners = new Set(conversions.filter((c) => c.currency === 'EUR').map((c) => c.attribution?.partner ?? ''));
  assert.equal(shown.length, eurPartners.size * api.days.length, 'a point on every day of the range');
  assert.deepEqual(shown.filter((p) => !p.endsWith(' 0')).sort(), revenue('EUR'));
  assert.equal(await page.getAttribute('#chart-revenue', 'data-currency'), 'EUR');
  await page.screenshot({ path: artifact('report.png'), fullPage: true });
  await page.locator('#chart').screenshot({ path: artifact('report-chart.png') });
  await page.selectOption('#chart-currency', 'USD');
  await page.waitForSelector('#chart-revenue[data-currency="USD"]');
  shown = await points();
  assert.deepEqual(shown.filter((p) => !p.endsWith(' 0')), revenue('USD'));

  // The orders, newest first, with their touchpoints and settlement.
  const orders = await cells(page, '#orders-table tbody tr');
  assert.deepEqual(orders.map((o) => o[0]), ['R-4', 'R-3', 'R-2', 'R-1']);
  const r2row = orders[2];
  assert.deepEqual(r2row.slice(2, 11), [FORMULA_NAME, 'outdoor-blog', 'last_click impact CB1', '', 'EUR', '75.00', '-25.25', '49.75', 'yes (browser: 80.50)']);
  assert.match(r2row[11], /^=HYPERLINK.*: impact CB1 at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  assert.deepEqual(orders[1].slice(2, 6), [HOSTILE_NAME, 'influencer-anna', 'promo code', 'spring10']);
  assert.deepEqual(orders[0].slice(2, 5), ['no partner', '', 'none']);

  // CSV downloads: the same rows as the tables; formula-looking cells made inert.
  const head = (sel) => page.$$eval(`${sel} thead th`, (th) => th.map((c) => c.textContent));
  for (const [button, sel, rows] of [['#csv-partners', '#partners-table', table], ['#csv-orders', '#orders-table', orders]]) {
    const file = await downloaded(page, button);
    assert.match(file.name, new RegExp(`^${button.slice(5)}-outfitters-${api.from}-to-${api.to}\\.csv$`));
    const parsed = parseCsv(file.text);
    const inert = (cell) => (/^[=+\-@]/.test(cell) && !/^-?\d+(\.\d+)?$/.test(cell) ? `'${cell}` : cell);
    assert.deepEqual(parsed, [await head(sel), ...rows.map((r) => r.map(inert))]);
  }
  const partnersCsv = (await downloaded(page, '#csv-partners')).text;
  assert.ok(partnersCsv.includes(`"'=HYPERLINK(""http://evil.example"",""click"")"`), 'quoted and prefixed');
  assert.ok(partnersCsv.includes(',-25.25,'), 'a negative amount stays a number');

  // More deliveries since the range began than one answer holds (10000, answered here by the
  // test): the page asks again from the last one's planning time, and counts a delivery seen on
  // both pages once.
  const postbacksUrl = (url) => url.pathname === '/v1/postbacks';
  const T = api.fromMs + 9_998;
  const pb = (n, orderId, partner, status, createdAt, kind = 'conversion') => ({
    id: n.toString(16).padStart(32, '0'), kind, orderId, adjustmentId: kind === 'adjustment' ? 'RF-9' : null, partner, status,
    attempts: 1, lastError: status === 'failed' ? 'HTTP 500' : null, createdAt, nextAttemptAt: null, deliveredAt: null,
  });
  const filler = Array.from({ length: 9_998 }, (_, i) => pb(1_000 + i, 'R-0', 'demo-affiliate', 'delivered', api.fromMs + i));
  const boundary = [pb(1, 'R-1', 'demo-affiliate', 'delivered', T), pb(2, 'R-2', 'outdoor-blog', 'failed', T)];
  const pages = {
    [api.fromMs]: [...filler, ...boundary],
    [T]: [...boundary, pb(3, 'R-2', 'outdoor-blog', 'pending', T + 1, 'adjustment'), pb(4, 'R-3', 'influencer-anna', 'failed', T + 5)],
  };
  asked.length = 0;
  await page.route(postbacksUrl, (route) => {
    const rows = pages[new URL(route.request().url()).searchParams.get('since')];
    return route.fulfill({ status: rows ? 200 : 500, contentType: 'application/json', body: JSON.stringify(rows ? { site: SITE, postbacks: rows } : { error: 'unexpected' }) });
  });
  await submitted(page, SITE, READ);
  const column = async () => postbackColumn(await cells(page, '#partners-table tbody tr'));
  assert.deepEqual(await column(), columnSaying([1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 2]));
  assert.deepEqual(asked.map(([q]) => q), [`site=${SITE}&since=${api.fromMs}&limit=10000`, `site=${SITE}&since=${T}&limit=10000`]);
  // A collector without postbacks (one from before them answers 404): "—" throughout.
  await page.unroute(postbacksUrl);
  await page.route(postbacksUrl, (route) => route.fulfill({ status: 404, contentType: 'application/json', body: '{"error":"not found"}' }));
  await submitted(page, SITE, READ);
  assert.deepEqual((await column()).map((r) => r.slice(r.lastIndexOf(': ') + 2)), ['—', '—', '—', '—', '—', '']);
  await page.unroute(postbacksUrl);
  // A partner the site has no postback for says so, rather than "0 delivered" (the answer names
  // the partners the site posts back to).
  await page.route(postbacksUrl, (route) => route.fulfill({
    status: 200, contentType: 'application/json',
    body: JSON.stringify({ site: SITE, partners: ['demo-affiliate', 'outdoor-blog'], postbacks: [] }),
  }));
  await submitted(page, SITE, READ);
  const none = '0 delivered, 0 pending, 0 failed';
  assert.deepEqual(await column(), [`Demo Affiliate: ${none}`, `${FORMULA_NAME}: ${none}`, `${HOSTILE_NAME}: no postback`, 'no partner: —', `Total: ${none}`, 'Total: ']);
  await page.unroute(postbacksUrl);

  // Another model and a reload: the tab remembers the site and key.
  await page.selectOption('#model', 'first_click');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('first click'));
  await page.reload();
  await page.waitForSelector('body[data-state="ok"]');
  assert.equal(await page.inputValue('#site'), SITE);
  assert.deepEqual(await cells(page, '#partners-table tbody tr'), table);
  assert.deepEqual(seen.errors, []);
  await context.close();
});
