// End to end: the partner debug page (scenario 8). It reads the collector's API; the
// assertions check what it shows against what the collector stored, and that hostile input
// stays text. Screenshots go to test-artifacts/. (The merchant's report: report.test.mjs.)
//
// Same origin: the collector serves the shop and the debug page, as `cargo xtask demo` does, so
// the pages' `collector:""` (this origin) is tested here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  useWorld, landWithConsent, visitor, unique, delivered, artifact,
} from './support.mjs';

const world = useWorld({ sameOrigin: true });

const HOSTILE = '<img src=x onerror=alert(1)>';

test('8. the debug page shows the click ID, its store presence and the collector record; a hostile click ID stays inert text', { timeout: 90_000 }, async () => {
  const clickId = unique('S8');
  const { context, page, seen } = await landWithConsent(world, `/?irclickid=${clickId}&utm_source=partner`);
  await delivered(page);

  await page.goto(`${world.base}/debug.html`);
  await page.waitForSelector('body[data-ready]');
  const row = page.locator(`tr.click[data-value="${clickId}"]`);
  await row.locator('.collector .badge.ok').waitFor();
  assert.equal(await row.locator('.click-value').textContent(), clickId);
  assert.equal(await row.locator('.in-cookie').textContent(), 'yes');
  assert.equal(await row.locator('.in-local').textContent(), 'yes');
  // What the page shows is what the collector stored, once the debug page's own page view
  // (which carries the click too) has been acknowledged and the page redrawn.
  await delivered(page);
  const record = await world.api.click(clickId);
  assert.equal(record.status, 200);
  await page.click('#refresh');
  const views = `${record.body.pageViews} page view(s)`;
  await page.waitForFunction(
    ([value, text]) => document.querySelector(`tr.click[data-value="${value}"] .collector`)?.textContent.includes(text),
    [clickId, views]
  );
  assert.equal(record.body.pageViews, 2, 'the landing and the debug page itself');
  assert.equal(await page.textContent('#consent-state'), 'granted');

  // A partner pastes a link with a hostile click ID.
  await page.fill('#link', `/?irclickid=${HOSTILE}&utm_source=partner`);
  await page.click('#link-open');
  await page.locator('#steps li.bad', { hasText: 'Refused' }).waitFor();
  assert.equal(await page.locator('#link-params .param-value').first().textContent(), HOSTILE, 'shown as text');
  // The frame's tag has read the link and decided about the value (it reports the refusal): by
  // then the page and the frame have shown whatever they show of it. An element made from the
  // value would be in the document from that moment; its handler need not have run to be found.
  const landing = await (await page.$('#landing')).contentFrame();
  await landing.waitForFunction(() => (window.utt?.state?.().rejected ?? []).length > 0);
  const images = await Promise.all(page.frames().map((f) => f.evaluate(() => document.querySelectorAll('img').length)));
  assert.deepEqual(images, images.map(() => 0), 'no element was made from the value, in the page or the frame');
  assert.deepEqual(seen.dialogs, [], 'no dialog opened');
  assert.deepEqual(seen.errors, []);
  // The frame's address no longer shows the refused value (the tag cuts it): find it by element.
  assert.ok(!landing.url().includes('irclickid'), landing.url());
  const frameState = await landing.evaluate(() => window.utt.state());
  assert.deepEqual(frameState.rejected, [{ param: 'irclickid', reason: 'character outside the safe set' }]);
  assert.ok(!frameState.clicks.some((c) => c.value.includes('<')), 'never stored');
  await page.waitForFunction(() => (window.frames[0]?.utt?.state().queue ?? [1]).length === 0);
  assert.ok(!seen.batches.some((b) => b.includes('onerror')), 'never sent, not even inside the page URL');
  assert.notEqual((await world.api.click(HOSTILE)).status, 200, 'the collector has nothing for it');

  // The link test end to end for a good link, for the screenshot and the partner's main use.
  const fresh = unique('S8B');
  await page.fill('#link', `/product.html?sku=TRAIL-42&gclid=${fresh}`);
  await page.click('#link-open');
  await page.locator('#steps li.ok', { hasText: 'The collector has a record' }).waitFor({ timeout: 30_000 });
  assert.equal((await world.api.click(fresh)).status, 200);
  await page.locator(`tr.click[data-value="${fresh}"] .collector .badge.ok`).waitFor();
  await page.screenshot({ path: artifact('debug-page.png'), fullPage: true });
  await context.close();
});

test("a partner in a fresh browser: the link test waits for consent, then completes end to end", { timeout: 90_000 }, async () => {
  const clickId = unique('S8C');
  const { context, page, seen } = await visitor(world);
  await page.goto(`${world.base}/debug.html`);
  await page.waitForSelector('body[data-ready]');
  await page.fill('#link', `${world.base}/?irclickid=${clickId}&utm_source=partner`);
  await page.click('#link-open');
  await page.locator('#steps li', { hasText: 'Waiting for consent' }).waitFor();
  assert.equal((await world.api.click(clickId)).status, 404, 'nothing sent before consent');
  assert.ok(!seen.batches.some((b) => b.includes(clickId)));

  await page.click('#grant');
  await page.locator('#steps li.ok', { hasText: 'The collector has a record' }).waitFor({ timeout: 30_000 });
  const record = await world.api.click(clickId);
  assert.equal(record.status, 200);
  assert.deepEqual(record.body.pages.map((p) => p.path), ['/'], 'the landing page view, released by the grant');
  await page.locator(`tr.click[data-value="${clickId}"] .collector .badge.ok`).waitFor();
  assert.equal(await page.locator(`tr.click[data-value="${clickId}"] .in-cookie`).textContent(), 'yes');
  await context.close();
});
