// End to end, bot filtering with a real automated browser: Playwright's Chromium reports
// navigator.webdriver = true (and headless Chromium's user agent says HeadlessChrome), so the tag
// flags its batches and the collector classes them as automation. The same journey, a landing on
// a partner click and a conversion, on two sites of one collector: `prod` keeps the default
// exclusions (bot and automation), so its order is stored but neither listed nor credited;
// `staging` counts automation (`exclude = ["bot"]`, how a site marks its own test traffic), so
// its order is listed and credited. Assertions on what the collector stored and answers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useWorld, visitor, tagReady, delivered, eventually, unique, metricValue } from './support.mjs';

const CONFIG = `
[[sites]]
id = "prod"
allowed_origins = ["http://localhost:*", "http://127.0.0.1:*"]

[[sites]]
id = "staging"
allowed_origins = ["http://localhost:*", "http://127.0.0.1:*"]
[sites.traffic]
exclude = ["bot"]
`;

// A merchant's page with the snippet for the site named in its query, and a conversion when it
// names an order.
function page(req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  const snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  const init = { site: q.get('site'), collector: world.collectorUrl };
  const order = q.get('order');
  const conversion = order ? `utt("conversion",${JSON.stringify({ orderId: order, amount: '42.00', currency: 'EUR' })});` : '';
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Shop</title>
<script>${snippet}
utt("init",${JSON.stringify(init)});${conversion}</script>
</head><body><h1>Shop</h1></body></html>`);
}

const world = useWorld({ config: CONFIG, routes: { 'GET /page.html': page } });

const getJson = async (path) => {
  const res = await fetch(world.collectorUrl + path);
  return { status: res.status, body: await res.json() };
};

/** Lands on a partner click and converts, on `site`, in a new automated browser context. */
async function clickAndConvert(site) {
  const clickId = unique('BOTCLICK');
  const orderId = unique('BOTORDER');
  const { context, page: tab, seen } = await visitor(world);
  await tab.goto(`${world.base}/page.html?site=${site}&irclickid=${clickId}`);
  await tagReady(tab);
  assert.equal(await tab.evaluate(() => navigator.webdriver), true, 'Playwright drives this browser');
  await tab.goto(`${world.base}/page.html?site=${site}&order=${orderId}`);
  await delivered(tab);
  // Every batch said the browser is automated.
  assert.ok(seen.batches.length > 0);
  for (const b of seen.batches) assert.equal(JSON.parse(b).webdriver, true, b);
  assert.deepEqual(seen.errors, []);
  await context.close();
  return { clickId, orderId };
}

/** The conversions of `site` with this order ID (`traffic=all` or the site's default). */
async function orders(site, orderId, all) {
  const { status, body } = await getJson(`/v1/conversions?site=${site}${all ? '&traffic=all' : ''}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.conversions.filter((c) => c.orderId === orderId);
}

test('an automated browser\'s conversion on a site with the default exclusions is stored but not reported or credited', { timeout: 90_000 }, async () => {
  const before = metricValue(await world.api.metrics(), 'utt_flagged_events_total{class="automation"}');
  const { clickId, orderId } = await clickAndConvert('prod');
  // Stored (traffic=all shows it, with its class and its click's)…
  const c = await eventually('the order stored', async () => (await orders('prod', orderId, true))[0]);
  assert.equal(c.traffic, 'automation');
  assert.equal(c.attribution?.clickId, clickId);
  assert.deepEqual(c.touchpoints.map((t) => [t.clickId, t.traffic]), [[clickId, 'automation']]);
  // …but not in the site's default answer,
  assert.deepEqual(await orders('prod', orderId, false), []);
  // counted in /metrics,
  const after = metricValue(await world.api.metrics(), 'utt_flagged_events_total{class="automation"}');
  assert.ok(after >= before + 2, `flagged automation events ${before} -> ${after}`);
  // and the partner's debug check says why the click earned nothing.
  const { status, body } = await getJson(`/v1/clicks/${clickId}?site=prod`);
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(body.conversions, []);
  assert.deepEqual(body.flagged.map((f) => [f.orderId, f.traffic, f.clickTraffic]), [[orderId, 'automation', 'automation']]);
});

test('a site that counts automation (its own test traffic) reports and credits the same journey', { timeout: 90_000 }, async () => {
  const { clickId, orderId } = await clickAndConvert('staging');
  const c = await eventually('the order listed', async () => (await orders('staging', orderId, false))[0]);
  assert.equal(c.traffic, 'automation');
  assert.equal(c.attribution?.clickId, clickId);
  assert.equal(c.attribution?.network, 'impact');
  const { body } = await getJson(`/v1/clicks/${clickId}?site=staging`);
  assert.deepEqual(body.flagged, []);
  assert.deepEqual(body.conversions.map((x) => [x.orderId, x.traffic]), [[orderId, 'automation']]);
});
