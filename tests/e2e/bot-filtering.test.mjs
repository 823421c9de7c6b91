// End to end, bot filtering with a real automated browser: Playwright's Chromium reports
// navigator.webdriver = true (and headless Chromium's user agent says HeadlessChrome), so the tag
// flags its batches and the collector classes them as automation. The same journey, a landing on
// a partner click and a conversion, on two sites of one collector: `prod` keeps the default
// exclusions (bot and automation), so its order is stored but neither listed nor credited;
// `staging` counts automation (`exclude = ["bot"]`, how a site marks its own test traffic), so
// its order is listed and credited. Assertions on what the collector stored and answers, and
// on what the partner debug page, opened in the same automated browser, shows of it; and a
// landing without an order, whose click the debug page names automation, excluded on `prod`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useWorld, visitor, tagReady, delivered, eventually, unique, metricValue, artifact, ROOT } from './support.mjs';

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

/** The site named in a page's query, and the tag's configuration for it. */
function siteInit(req) {
  const q = new URL(req.url, 'http://x').searchParams;
  return { q, init: { site: q.get('site'), collector: world.collectorUrl } };
}

// A merchant's page with the snippet for the site named in its query, and a conversion when it
// names an order.
function page(req, res) {
  const { q, init } = siteInit(req);
  const snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  const order = q.get('order');
  const conversion = order ? `utt("conversion",${JSON.stringify({ orderId: order, amount: '42.00', currency: 'EUR' })});` : '';
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Shop</title>
<script>${snippet}
utt("init",${JSON.stringify(init)});${conversion}</script>
</head><body><h1>Shop</h1></body></html>`);
}

// The shop's partner debug page (www/debug.html, unchanged) as the site named in the query
// deploys it: with that site's `init` instead of the demo's (site "demo", which this collector
// does not serve).
function debugPage(req, res) {
  const { init } = siteInit(req);
  const html = readFileSync(join(ROOT, 'www', 'debug.html'), 'utf8');
  const line = /^utt\("init",\{.*\}\);$/m;
  if (!line.test(html)) throw new Error('www/debug.html has no utt("init",{…}); line to give the site');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html.replace(line, () => `utt("init",${JSON.stringify(init)});`));
}

const world = useWorld({ config: CONFIG, routes: { 'GET /page.html': page, 'GET /debug.html': debugPage } });

const getJson = async (path) => {
  const res = await fetch(world.collectorUrl + path);
  return { status: res.status, body: await res.json() };
};

/**
 * Lands on a partner click and converts, on `site`, in a new automated browser context; answers
 * the IDs and that context's tab, which the caller closes.
 */
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
  return { clickId, orderId, context, tab, seen };
}

/**
 * Opens the partner debug page of `site` in the converting browser and waits until the
 * collector's record of `clickId` there has `text`; answers that record's text.
 */
async function debugRecord(tab, site, clickId, text) {
  await tab.goto(`${world.base}/debug.html?site=${site}`);
  await tab.waitForSelector('body[data-ready]');
  const cell = tab.locator(`tr.click[data-value="${clickId}"] .collector`);
  // The page redraws itself every few seconds: wait for the record, not for a time.
  await cell.filter({ hasText: text }).waitFor();
  return cell.textContent();
}

/** The conversions of `site` with this order ID (`traffic=all` or the site's default). */
async function orders(site, orderId, all) {
  const { status, body } = await getJson(`/v1/conversions?site=${site}${all ? '&traffic=all' : ''}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.conversions.filter((c) => c.orderId === orderId);
}

test('an automated browser\'s conversion on a site with the default exclusions is stored but not reported or credited', { timeout: 90_000 }, async () => {
  const before = metricValue(await world.api.metrics(), 'utt_flagged_events_total{class="automation"}');
  const { clickId, orderId, context, tab, seen } = await clickAndConvert('prod');
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

  // The partner's debug page, opened in that browser, shows the same: the click's class, and
  // the order it earned nothing for, with why.
  const text = await debugRecord(tab, 'prod', clickId, 'Not credited');
  assert.ok(text.includes('0 conversion(s) credited'), text);
  assert.ok(text.includes('This click came from traffic classed automation: a browser driven by automation software'), text);
  assert.ok(text.includes('This site excludes automation traffic: this click earns no credit.'), text);
  assert.ok(text.includes(`${orderId} (42.00 EUR). Not credited: the order and the click came from traffic classed automation, which this site excludes.`), text);
  assert.equal(await tab.locator(`tr.click[data-value="${clickId}"] .collector .flagged`).count(), 1);
  await tab.screenshot({ path: artifact('debug-page-flagged.png'), fullPage: true });
  assert.deepEqual(seen.errors, []);
  await context.close();
});

test('a site that counts automation (its own test traffic) reports and credits the same journey', { timeout: 90_000 }, async () => {
  const { clickId, orderId, context, tab, seen } = await clickAndConvert('staging');
  const c = await eventually('the order listed', async () => (await orders('staging', orderId, false))[0]);
  assert.equal(c.traffic, 'automation');
  assert.equal(c.attribution?.clickId, clickId);
  assert.equal(c.attribution?.network, 'impact');
  const { body } = await getJson(`/v1/clicks/${clickId}?site=staging`);
  assert.deepEqual(body.flagged, []);
  assert.deepEqual(body.conversions.map((x) => [x.orderId, x.traffic]), [[orderId, 'automation']]);

  // The debug page shows it credited, and says the site counts the class.
  const text = await debugRecord(tab, 'staging', clickId, '1 conversion(s) credited');
  assert.ok(text.includes(`1 conversion(s) credited: ${orderId} (42.00 EUR), from traffic classed automation, which this site counts`), text);
  assert.ok(text.includes('This click came from traffic classed automation'), text);
  assert.ok(text.includes('This site counts automation traffic.'), text);
  assert.ok(!text.includes('Not credited') && !text.includes('earns no credit'), text);
  await tab.screenshot({ path: artifact('debug-page-counted.png'), fullPage: true });
  assert.deepEqual(seen.errors, []);
  await context.close();
});

test('a click with no order (a landing only) is named automation, and excluded, on the site that excludes it', { timeout: 90_000 }, async () => {
  const clickId = unique('BOTLANDING');
  const { context, page: tab, seen } = await visitor(world);
  await tab.goto(`${world.base}/page.html?site=prod&irclickid=${clickId}`);
  await tagReady(tab);
  await delivered(tab);
  // The click API names the click's own class, without any conversion to carry it.
  const { status, body } = await eventually('the landing stored', async () => {
    const r = await getJson(`/v1/clicks/${clickId}?site=prod`);
    return r.status === 200 && r;
  });
  assert.equal(status, 200);
  assert.deepEqual([body.traffic, body.excluded, body.conversions, body.flagged], ['automation', true, [], []]);

  // The debug page, in that browser, says so: the class, and that this site gives it no credit.
  const text = await debugRecord(tab, 'prod', clickId, 'earns no credit');
  assert.ok(text.includes('0 conversion(s) credited'), text);
  assert.ok(text.includes('This click came from traffic classed automation: a browser driven by automation software'), text);
  assert.ok(text.includes('This site excludes automation traffic: this click earns no credit.'), text);
  assert.ok(!text.includes('Not credited'), text);
  await tab.screenshot({ path: artifact('debug-page-landing-excluded.png'), fullPage: true });
  assert.deepEqual(seen.errors, []);
  await context.close();
});
