// End to end, across origins: the collector's rate limit answers a batch 429 with `Retry-After`,
// and the tag waits at least that long before its next attempt. The shop is on
// http://localhost:PORT and the collector on http://127.0.0.1:PORT, so the tag can read the
// header only if the collector lists it in `Access-Control-Expose-Headers`; otherwise it falls
// back to its own backoff (`src/core/retry.rs`), which for a first retry is 500 to 999 ms.
//
// The collector's bucket refills one token every 5 s (`per_minute = 12`), so its `Retry-After`
// is 5. A first retry that honours it waits 5,000 ms or more, which the fallback never does, so
// the tag's own schedule tells the two apart exactly: the production tag, as merchants ship it,
// persists every event with its failed attempts and the time of its next one (`_utt_q` in
// localStorage, `{"e":event,"a":attempts,"n":notBefore}`) before anything else happens to it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWorld, visitor, unique, tagReady, tagState, delivered, eventually } from './support.mjs';

/** The demo site, and a bucket of one request refilled every 5 s for each client IP. */
const CONFIG = `
[rate_limit]
per_second = 0
per_minute = 12
burst = 1

[[sites]]
id = "demo"
allowed_origins = ["http://127.0.0.1:*", "http://localhost:*"]
`;

const world = useWorld({ config: CONFIG });

/** The IDs of the events in a batch's body (none for a body that is not a batch). */
function eventIds(body) {
  try {
    return JSON.parse(body).events.map((e) => e.id);
  } catch {
    return [];
  }
}

/**
 * Empties this machine's bucket (the browser and this process are both 127.0.0.1): the limit is
 * checked before anything else, so a bodiless POST takes the token, and the next one is 429.
 */
async function drainBucket() {
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${world.collectorUrl}/v1/events`, { method: 'POST' });
    await res.arrayBuffer();
    if (res.status === 429) return;
  }
  throw new Error('the collector never answered 429: is the rate limit configured?');
}

test('429 with Retry-After from the collector on another origin: the next attempt waits at least that long', { timeout: 60_000 }, async () => {
  const clickId = unique('RA');
  const { context, page, seen } = await visitor(world);
  const answers = [];
  page.on('response', (r) => {
    if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/v1/events') {
      // Playwright sees every header, whatever CORS lets the page read.
      answers.push({ status: r.status(), headers: r.headers(), ids: eventIds(r.request().postData()) });
    }
  });
  // Consent starts denied and the shop's events wait for it, so nothing is sent until the grant.
  await page.goto(`${world.base}/?irclickid=${clickId}`);
  await tagReady(page);
  const before = await tagState(page);
  assert.equal(before.consent, 'denied');
  assert.ok(before.held >= 1, `the page view waits for consent: ${JSON.stringify(before)}`);
  assert.deepEqual(seen.batches, [], 'nothing sent before consent');

  // The bucket is empty and refills a token every 5 s: the batch the grant releases (the consent
  // and the held page view) is answered 429, unless it took over 5 s to leave; then the next
  // event's batch is. Each try is a new batch, so the first 429 is always a first attempt.
  // `sentAfter`: the page's clock (the tag's) just before the call whose batch is sent, so
  // before the 429 arrives and is settled.
  await drainBucket();
  let sentAfter = await page.evaluate(() => Date.now());
  await page.evaluate(() => window.utt('consent', 'granted'));
  for (let tries = 1; ; tries++) {
    await eventually('an answer to the batch', () => answers.length >= tries);
    if (answers.some((a) => a.status === 429)) break;
    assert.ok(tries < 5, `five batches in a row were not rate limited: ${JSON.stringify(answers.map((a) => a.status))}`);
    await drainBucket();
    sentAfter = await page.evaluate(() => Date.now());
    await page.evaluate((i) => window.utt('event', 'nudge', { i }), tries);
  }

  // The moment the tag settled the 429: every event of the batch still queued in localStorage
  // with one failed attempt, read before the next attempt can change that (at least 5 s away).
  const answer = answers.find((a) => a.status === 429);
  const waiting = await (
    await page.waitForFunction((ids) => {
      const stored = JSON.parse(localStorage.getItem('_utt_q') || '[]').filter((q) => ids.includes(q.e.id));
      return stored.length === ids.length && stored.every((q) => q.a === 1) && stored;
    }, answer.ids)
  ).jsonValue();
  const retryAfter = answer.headers['retry-after'];
  assert.equal(retryAfter, '5', `the collector's 429 carries Retry-After: 5: ${JSON.stringify(answer.headers)}`);
  const wanted = 5000;
  assert.ok(answer.headers['access-control-allow-origin'], 'the 429 is readable by the shop');
  assert.equal(waiting.length, answer.ids.length, 'a 429 is retried, not dropped: every event of the batch waits for its second attempt');
  for (const q of waiting) {
    const wait = q.n - sentAfter;
    assert.ok(
      wait >= wanted,
      `the tag schedules its next attempt ${wait} ms after the batch was made, under the ${wanted} ms Retry-After asks for: ` +
        `it fell back to its own backoff, so it did not read the header (exposed to other origins: ` +
        `${JSON.stringify(answer.headers['access-control-expose-headers'] ?? null)})`
    );
  }

  // And it keeps to that schedule: in the page's own clock, the next request for the batch
  // starts at least Retry-After after the 429 arrived.
  await delivered(page, 30_000);
  const [first, next] = await page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .filter((e) => e.name.endsWith('/v1/events'))
      .map((e) => ({ start: e.startTime, end: e.responseEnd, status: e.responseStatus }))
  ).then((all) => {
    const i = all.findIndex((e) => e.status === 429);
    return [all[i], all[i + 1]];
  });
  assert.ok(next, 'the batch was sent again');
  assert.ok(next.start - first.end >= wanted, `the next attempt started ${Math.round(next.start - first.end)} ms after the 429`);

  // Delivered in the end: the collector has the page view that was rate limited.
  const record = await eventually(`the collector's record of ${clickId}`, async () => {
    const r = await world.api.click(clickId);
    return r.status === 200 && r;
  });
  assert.equal(record.body.pageViews, 1);
  assert.deepEqual(seen.errors, []);
  await context.close();
});
