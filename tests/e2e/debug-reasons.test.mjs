// Why the tag refused a value: the one thing about the journeys only the debug build shows (its
// state's `rejected`, what the debug page lists). Everything the tag decides is checked on the
// production build in journeys.test.mjs; this file holds the debug build to the reasons it gives
// for the refusals those journeys make: a click ID outside the safe set, and a journey parameter
// edited, opened in another browser, or stale. builds.test.mjs holds that both builds decide alike.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWorld, visitor, unique, tagReady, tagState } from './support.mjs';

const world = useWorld({ build: 'debug' });

const MIN = 60_000;

/** Opens `url` on `page` and answers the clicks the tag holds and the values it refused, with why. */
async function land(page, url) {
  await page.goto(url);
  await tagReady(page);
  const s = await tagState(page);
  return [s.clicks.map((c) => c.value), s.rejected];
}

test('a click ID outside the safe set is refused as such', async () => {
  const { context, page } = await visitor(world);
  const refused = '%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E';
  assert.deepEqual(await land(page, `${world.base}/?irclickid=${refused}`), [
    [],
    [{ param: 'irclickid', reason: 'character outside the safe set' }],
  ]);
  await context.close();
});

test('an edited, foreign or stale journey parameter is refused, each with its reason', async () => {
  const Z = unique('DZ');
  const { context, page } = await visitor(world);
  const t0 = Date.now();
  await context.clock.install({ time: t0 });
  await page.goto(`${world.base}/?irclickid=${Z}`);
  await tagReady(page);
  const href = await page.evaluate(() => {
    const a = Object.assign(document.createElement('a'), { href: '/product.html?sku=CAP-1', textContent: 'p' });
    document.querySelector('main').prepend(a);
    a.dispatchEvent(new MouseEvent('mousedown', { bubbles: true }));
    return a.href;
  });
  assert.ok(new URL(href).searchParams.get('_uttj')?.includes(Z), `a decorated link: ${href}`);

  assert.deepEqual(await land(page, href), [[Z], []], 'untouched, in this browser, now: adopted');
  const tampered = { param: '_uttj', reason: 'tampered, or from another browser' };
  const edited = href.replace(Z, Z.slice(0, -1) + (Z.endsWith('A') ? 'B' : 'A'));
  assert.deepEqual(await land(page, edited), [[], [tampered]], 'edited');
  const other = await visitor(world, { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AnotherBrowser/1.0' });
  assert.deepEqual(await land(other.page, href), [[], [tampered]], 'in another browser');
  await page.clock.setSystemTime(t0 + 6 * MIN);
  assert.deepEqual(await land(page, href), [[], [{ param: '_uttj', reason: 'expired' }]], 'six minutes later');
  await other.context.close();
  await context.close();
});
