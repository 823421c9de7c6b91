// The cookie domain `auto` on real names, which 127.0.0.1 and localhost (no candidates at all)
// cannot show: Chromium maps `*.shop.test` and `*.github.io` to the loopback address and
// accepts the test server's self-signed certificate, so the built tag runs on
// https://www.shop.test and https://foo.github.io against a stand-in collector on the same
// origin. The tag tries the highest candidate domain first and keeps the first the browser
// accepts: Chromium's public suffix list decides, as it would on a merchant's site.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, launchChromium, serveStatic, selfSignedCertificate, acceptingCollector, stopAll } from './harness.mjs';

const SNIPPET = readFileSync(join(ROOT, 'dist', 'snippet.js'), 'utf8').split('\n')[0];
const NAMES = ['www.shop.test', '*.shop.test', '*.github.io'];
let site, browser, server, port;

before(async () => {
  site = mkdtempSync(join(tmpdir(), 'utt-site-'));
  for (const f of ['utt.js', 'utt_bg.wasm', 'utt_texts.js']) copyFileSync(join(ROOT, 'dist', f), join(site, f));
  writeFileSync(
    join(site, 'plain.html'),
    `<!doctype html><html><head><title>plain</title><script>${SNIPPET} utt('init', {site: 'demo'});</script></head><body></body></html>`
  );
  server = await serveStatic(
    {
      '/': site,
      'POST /v1/events': acceptingCollector(),
    },
    { tls: selfSignedCertificate(NAMES) }
  );
  port = server.port;
  browser = await launchChromium({
    args: ['--host-resolver-rules=MAP *.shop.test 127.0.0.1, MAP *.github.io 127.0.0.1', '--ignore-certificate-errors'],
  });
});

after(() => stopAll({ browser, server, site }));

/** Opens the tag's page on `host` in `context` (a landing with a click) and waits until it runs. */
async function land(context, host, clickId) {
  const page = await context.newPage();
  await page.goto(`https://${host}:${port}/plain.html?gclid=${clickId}`);
  await page.waitForFunction(() => window.utt && window.utt.state && window.utt.state().ready);
  return page;
}

/** The record cookie the page itself can read, or null. */
const readable = (page) =>
  page.evaluate(() => document.cookie.split('; ').find((c) => c.startsWith('_utt='))?.slice(5) ?? null);

test('www.shop.test keeps the record on shop.test, Secure, shared with the site\'s other hosts', async () => {
  const context = await browser.newContext();
  const page = await land(context, 'www.shop.test', 'Shop-1');
  const records = (await context.cookies()).filter((c) => c.name === '_utt');
  assert.equal(records.length, 1, JSON.stringify(records));
  const [record] = records;
  assert.equal(record.domain, '.shop.test', 'Domain=shop.test: the registrable domain, not the public suffix .test');
  assert.equal(record.secure, true, 'Secure on an https page');
  assert.equal(record.sameSite, 'Lax');
  assert.equal(record.path, '/');
  assert.match(decodeURIComponent(record.value), /Shop-1/);
  assert.match(await page.evaluate(() => localStorage.getItem('_utt')), /Shop-1/, 'and in localStorage');
  // The probe cookie is gone.
  assert.deepEqual((await context.cookies()).map((c) => c.name).filter((n) => n === '_utt_t'), []);
  // Another host of the same site reads the same record.
  const other = await context.newPage();
  await other.goto(`https://checkout.shop.test:${port}/utt.js`);
  assert.equal(await readable(other), record.value);
  await context.close();
});

test('foo.github.io keeps the record on itself, never on the public suffix github.io', async () => {
  const context = await browser.newContext();
  const page = await land(context, 'foo.github.io', 'Pages-1');
  const records = (await context.cookies()).filter((c) => c.name === '_utt');
  assert.equal(records.length, 1, JSON.stringify(records));
  const [record] = records;
  // github.io is refused (a public suffix: anyone can have a name under it), so the tag keeps
  // the next candidate, the site's own registrable domain, which is the host itself: Domain=
  // foo.github.io, for it and its subdomains (Playwright writes a Domain cookie with a dot).
  assert.equal(record.domain, '.foo.github.io');
  assert.equal(record.secure, true);
  assert.match(decodeURIComponent(record.value), /Pages-1/);
  const sub = await context.newPage();
  await sub.goto(`https://shop.foo.github.io:${port}/utt.js`);
  assert.equal(await readable(sub), record.value, 'the site\'s own subdomain shares it');
  // Another site under the same suffix never sees it.
  const other = await context.newPage();
  await other.goto(`https://bar.github.io:${port}/utt.js`);
  assert.equal(await readable(other), null, 'another github.io site does not');
  await context.close();
});
