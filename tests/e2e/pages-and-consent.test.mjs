// End to end: page views in the SPA-style guides section (scenario 5) and consent (scenario 6).
// Counts come from the collector's record of the click ID (`GET /v1/clicks/{id}`), which adds
// up the page views it stored per path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  useWorld, landWithConsent, visitor, unique, acceptConsent, delivered, tagState, tagReady, tagCookies,
  tagLocalKeys, eventually, settled,
} from './support.mjs';

const world = useWorld();

/** How many consent events the collector has accepted so far (from its Prometheus metrics). */
async function consentsAccepted() {
  const m = /^utt_events_total\{type="consent",status="accepted"\} (\d+)$/m.exec(await world.api.metrics());
  return m ? Number(m[1]) : 0;
}

/** Page views per path, as the collector stored them for a click ID. */
async function viewsByPath(clickId) {
  const record = await world.api.click(clickId);
  assert.equal(record.status, 200, `the collector knows ${clickId}`);
  return Object.fromEntries(record.body.pages.map((p) => [p.path, p.views]).sort());
}

test('5. SPA navigations: one page view per real URL change, none for replaceState or a push of the same URL', { timeout: 90_000 }, async () => {
  const clickId = unique('S5');
  const { context, page, seen } = await landWithConsent(world, `/guides/?irclickid=${clickId}`);
  await delivered(page);
  // A marker that a full page load would wipe: every step below must stay in this document.
  await page.evaluate(() => (window.__sameDocument = true));

  const go = async (name, title) => {
    await Promise.all([
      page.evaluate(() => new Promise((ok) => document.addEventListener('demo:navigated', ok, { once: true }))),
      page.click(`nav a:has-text("${name}")`),
    ]);
    assert.equal(await page.textContent('#guide h1'), title);
  };
  await go('Finding your size', 'Finding your size');
  await go('Caring for your gear', 'Caring for your gear');
  // The router pushes again for a click on the current topic: same URL, no page view.
  await go('Caring for your gear', 'Caring for your gear');
  // replaceState to the same URL (the "remember my place" button): no page view.
  await page.click('#remember');
  // Back once: popstate to the entry the repeated push left, the same URL: no page view.
  // Back again: popstate to the sizing guide, a real URL change.
  const back = async (title) => {
    await Promise.all([
      page.evaluate(() => new Promise((ok) => document.addEventListener('demo:navigated', ok, { once: true }))),
      page.goBack(),
    ]);
    assert.equal(await page.textContent('#guide h1'), title);
  };
  await back('Caring for your gear');
  await back('Finding your size');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no full page load happened');
  await delivered(page);

  // By event ID: a retried or beaconed batch may carry the same event twice on the wire.
  const pageviews = [...new Map(seen.batches.flatMap((b) => JSON.parse(b).events).filter((e) => e.type === 'pageview').map((e) => [e.id, e])).values()];
  assert.deepEqual(
    pageviews.map((e) => new URL(e.url).pathname),
    ['/guides/', '/guides/sizing.html', '/guides/care.html', '/guides/sizing.html'],
    'page views on the wire, in order'
  );
  assert.deepEqual(await viewsByPath(clickId), {
    '/guides/': 1,
    '/guides/care.html': 1,
    '/guides/sizing.html': 2,
  });
  assert.equal((await world.api.click(clickId)).body.pageViews, 4);
  await context.close();
});

test('6. consent denied: no cookie, no localStorage, nothing identifying sent; granted later: the held events go', { timeout: 90_000 }, async () => {
  const denied = unique('S6A');
  const later = unique('S6B');
  const { context, page, seen } = await visitor(world);
  await page.goto(`${world.base}/?irclickid=${denied}&utm_source=partner`);
  await tagReady(page);
  const consentsBefore = await consentsAccepted();
  await page.click('#consent-decline');
  // The denial is sent (anonymously); the landing's page view stays held in memory.
  await eventually('the denial to be sent', () => seen.batches.length > 0);
  await page.waitForFunction(() => window.utt.state().queued === 0);
  // Browse on while denied.
  await page.goto(`${world.base}/product.html?sku=TRAIL-42`);
  await tagReady(page);
  await page.click('#add-to-cart');
  await page.waitForSelector('#added a');
  await settled(page);

  const product = await tagState(page);
  assert.equal(product.consent, 'denied');
  assert.equal(product.held, 2, 'the page view and the add-to-cart event wait in memory');
  assert.deepEqual(await tagCookies(context), [], 'no tag cookie');
  assert.deepEqual(await tagLocalKeys(page), [], 'no tag localStorage entry');

  // What went on the wire while denied: only the anonymous record of the denial.
  const sent = seen.batches.flatMap((b) => JSON.parse(b).events);
  assert.ok(sent.length >= 1, 'the denial itself was sent (anonymously)');
  for (const e of sent) {
    assert.equal(e.type, 'consent', `only consent events while denied, saw ${e.type}`);
    assert.equal(e.consent, 'denied');
    assert.equal(e.visitor, undefined, 'no visitor ID');
    assert.equal(e.session, undefined, 'no session ID');
    assert.deepEqual(e.clicks ?? [], [], 'no click IDs');
    assert.equal(new URL(e.url).search, '', 'no query string (it carried the click ID)');
  }
  assert.ok(!seen.batches.some((b) => b.includes(denied)), 'the click ID never left the browser');
  // And the collector has nothing for it.
  assert.equal((await world.api.click(denied)).status, 404);
  // The shop passes the refusal on again on each page (the tag cannot store a no): one anonymous
  // denial per page, each stored once.
  assert.equal(sent.length, 2, 'the denial on the landing page and again on the product page');
  await eventually('both denials stored', async () => (await consentsAccepted()) === consentsBefore + sent.length);

  // A later visit through another partner link, still denied: the page view waits in memory.
  await page.goto(`${world.base}/product.html?sku=CAP-1&irclickid=${later}`);
  await tagReady(page);
  await settled(page);
  assert.equal((await tagState(page)).held, 1, 'the page view is held, not sent');
  assert.equal((await world.api.click(later)).status, 404);
  // The visitor changes their mind in the cookie settings.
  await page.click('#cookie-settings');
  await acceptConsent(page);
  await delivered(page);

  const record = await eventually(`the collector's record of ${later}`, async () => {
    const r = await world.api.click(later);
    return r.status === 200 && r;
  });
  assert.equal(record.body.pageViews, 1, 'the held page view was delivered after the grant');
  assert.deepEqual(record.body.pages.map((p) => p.path), ['/product.html']);
  assert.equal((await world.api.click(denied)).status, 404, 'the click seen while denied stays unknown');
  assert.deepEqual((await tagCookies(context)).map((c) => c.name).sort(), ['_utt', '_utt_c']);
  assert.ok((await tagLocalKeys(page)).includes('_utt'));
  await context.close();
});

test("6. a denial carries only the referrer's host; with consent, the other site's origin and path", { timeout: 90_000 }, async () => {
  // A referrer from another site, with a path and a query that name the visitor.
  const referer = 'https://search.example:8443/results/jane-doe?q=my+name&uid=42';
  const { context, page, seen } = await visitor(world);
  await page.goto(`${world.base}/?irclickid=${unique('REF')}`, { referer });
  await tagReady(page);
  assert.equal(await page.evaluate(() => document.referrer), referer, 'the page sees the whole referrer');
  await page.click('#consent-decline');
  await eventually('the denial to be sent', () => seen.batches.length > 0);
  await page.waitForFunction(() => window.utt.state().queued === 0);
  const sent = seen.batches.flatMap((b) => JSON.parse(b).events);
  assert.deepEqual(sent.map((e) => [e.type, e.consent, e.referrer]), [['consent', 'denied', 'search.example']]);
  assert.ok(!seen.batches.some((b) => b.includes('jane-doe') || b.includes('uid=42')), 'neither its path nor its query left');
  await context.close();

  const yes = await visitor(world);
  await yes.page.goto(`${world.base}/`, { referer });
  await acceptConsent(yes.page);
  await delivered(yes.page);
  const events = yes.seen.batches.flatMap((b) => JSON.parse(b).events);
  assert.deepEqual(events.map((e) => e.type).sort(), ['consent', 'pageview']);
  for (const e of events) assert.equal(e.referrer, 'https://search.example:8443/results/jane-doe', e.type);
  await yes.context.close();
});
