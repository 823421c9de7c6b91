// End to end: the server-set cookie (`serverCookie: true`) for a collector on the shop's own
// site, here the same origin. Only once the visitor consents does the tag POST its record to
// `/v1/cookie` (with credentials), and the collector answers with a `Set-Cookie` that
// re-issues the `_utt` cookie (not HttpOnly: the tag reads it; Safari does not cap a cookie
// set this way to 7 days).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useWorld, visitor, unique, tagReady, tagCookies, delivered } from './support.mjs';

const world = useWorld({ sameOrigin: true });

/** A page of the shop with the snippet, consent denied until asked, and `serverCookie` on. */
function writePage() {
  const snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  writeFileSync(
    join(world.dist, 'server-cookie.html'),
    `<!doctype html><html><head><meta charset="utf-8"><title>Server cookie</title><script>
${snippet}
utt("init",{site:"demo",collector:"",consent:"denied",whileDenied:"wait",serverCookie:true});
</script></head><body><p>server cookie</p></body></html>`
  );
}

test('the collector re-issues the record cookie from the server, and only after consent', { timeout: 90_000 }, async () => {
  writePage();
  const clickId = unique('SRVCK');
  const { context, page, seen } = await visitor(world);
  // Every call of the tag to /v1/cookie, as the page made it.
  await page.addInitScript(() => {
    window.cookieCalls = [];
    const fetch = window.fetch;
    window.fetch = function (url, options) {
      if (String(url).endsWith('/v1/cookie')) window.cookieCalls.push({ credentials: options?.credentials, body: options?.body });
      return fetch.apply(this, arguments);
    };
  });
  await page.goto(`${world.base}/server-cookie.html?irclickid=${clickId}`);
  await tagReady(page);
  // A flush resolves once the tag has run its sending step, the one that would offer the cookie.
  await page.evaluate(() => window.utt('flush'));
  assert.deepEqual(await page.evaluate(() => window.cookieCalls), [], 'nothing offered before consent');
  assert.deepEqual(await tagCookies(context), [], 'no cookie at all before consent');

  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/cookie');
  assert.equal((await page.evaluate(() => window.utt('consent', 'granted'))).status, 'queued');
  const response = await answered;
  const calls = await page.evaluate(() => window.cookieCalls);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].credentials, 'include');
  const offer = JSON.parse(calls[0].body);
  assert.deepEqual(Object.keys(offer).sort(), ['maxAge', 'name', 'site', 'value']);
  assert.equal(offer.site, 'demo');
  assert.equal(offer.name, '_utt');
  assert.ok(decodeURIComponent(offer.value).includes(clickId), offer.value);
  // A click just now: the cookie lives the whole 30-day window, give or take the seconds it took.
  assert.ok(offer.maxAge <= 30 * 86_400 && offer.maxAge > 30 * 86_400 - 60, `maxAge ${offer.maxAge}`);

  assert.equal(response.status(), 204);
  // On 127.0.0.1 over http: host-only (no Domain), not Secure, and readable by the tag.
  assert.equal(
    await response.headerValue('set-cookie'),
    `_utt=${offer.value}; Path=/; Max-Age=${offer.maxAge}; SameSite=Lax`
  );
  const [cookie] = (await tagCookies(context)).filter((c) => c.name === '_utt');
  assert.equal(cookie.value, offer.value);
  assert.equal(cookie.httpOnly, false);
  assert.equal(cookie.sameSite, 'Lax');
  assert.equal(cookie.domain, new URL(world.base).hostname);
  await delivered(page);
  assert.equal((await world.api.click(clickId)).status, 200);
  assert.deepEqual(seen.errors, []);
  await context.close();
});
