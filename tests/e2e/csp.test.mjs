// End to end: the Content-Security-Policy and Subresource Integrity setups docs/csp.md and
// docs/site-owners.md document, proven in Chromium against the collector. The page under test
// is served by the shop's server (on its own origin) with any CSP header; the collector is on
// another origin, which the policies name in `connect-src`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useWorld, visitor, unique, tagReady, delivered, storedOrders } from './support.mjs';

/** The page the next `open()` shows at /csp-check.html: its CSP (or none) and its `<head>`. */
let shown = { policy: null, head: '' };

const world = useWorld({
  routes: {
    'GET /csp-check.html': (req, res) => {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        ...(shown.policy ? { 'content-security-policy': shown.policy } : {}),
      });
      res.end(`<!doctype html><html><head><meta charset="utf-8"><title>CSP check</title>${shown.head}</head><body><p id="page">the page works</p></body></html>`);
    },
  },
});

const NONCE = 'c3VwZXItcmFuZG9tLW5vbmNl';

/** Has the shop serve `head` at /csp-check.html with the given CSP and opens it; answers what the page saw. */
async function open(policy, head, query) {
  shown = { policy, head };
  const v = await visitor(world);
  const violations = [];
  await v.page.exposeFunction('reportViolation', (d) => violations.push(d));
  await v.page.addInitScript(() =>
    document.addEventListener('securitypolicyviolation', (e) => window.reportViolation(`${e.violatedDirective} ${e.blockedURI}`))
  );
  await v.page.goto(`${world.base}/csp-check.html${query}`);
  return { ...v, violations };
}

/** The init line's configuration: the demo site and the collector on its own origin. */
const demo = () => `{site:"demo",collector:${JSON.stringify(world.collectorUrl)}}`;

/** `connect-src` as docs/csp.md documents it: this origin (the wasm) and the collector's. */
const connect = () => `connect-src 'self' ${world.collectorUrl}`;

/** The snippet as dist/snippet.js has it (its first line, read on first use), inited with `init`. */
let SNIPPET;
const snippet = (init, nonce = NONCE) => {
  SNIPPET ??= readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  return `<script nonce="${nonce}">\n${SNIPPET}\nutt("init",${init});\n</script>`;
};

test('the documented CSP (nonce, self, wasm-unsafe-eval, connect-src) lets the tag run and deliver', { timeout: 60_000 }, async () => {
  const clickId = unique('CSP');
  const policy = `default-src 'self'; script-src 'self' 'nonce-${NONCE}' 'wasm-unsafe-eval'; ${connect()}`;
  const { context, page, violations, seen } = await open(policy, snippet(demo()), `?irclickid=${clickId}`);
  await tagReady(page);
  await delivered(page);
  assert.equal((await world.api.click(clickId)).status, 200, 'the collector received the click');
  assert.deepEqual(violations, []);
  assert.deepEqual(seen.errors, []);
  await context.close();
});

test("the same policy with 'strict-dynamic' needs no origin for utt.js", { timeout: 60_000 }, async () => {
  const clickId = unique('CSPSD');
  const policy = `script-src 'nonce-${NONCE}' 'strict-dynamic' 'wasm-unsafe-eval'; ${connect()}; object-src 'none'; base-uri 'none'`;
  const { context, page, violations } = await open(policy, snippet(demo()), `?irclickid=${clickId}`);
  await tagReady(page);
  await delivered(page);
  assert.equal((await world.api.click(clickId)).status, 200);
  assert.deepEqual(violations, []);
  await context.close();
});

test("without 'wasm-unsafe-eval' the tag stays off and the page is unaffected", { timeout: 60_000 }, async () => {
  const clickId = unique('CSPNO');
  const policy = `default-src 'self'; script-src 'self' 'nonce-${NONCE}'; ${connect()}`;
  const { context, page, violations, seen } = await open(policy, snippet(demo()), `?irclickid=${clickId}`);
  await page.waitForFunction(() => typeof window.utt?.state === 'function');
  await page.evaluate(() => window.utt.ready);
  assert.equal((await page.evaluate(() => window.utt.state())).ready, false);
  const answer = await page.evaluate(() => window.utt('pageview'));
  assert.equal(answer.ok, false, 'calls answer an error instead of throwing');
  assert.equal(await page.textContent('#page'), 'the page works');
  assert.deepEqual(seen.errors, [], 'nothing thrown into the page');
  assert.ok(violations.some((v) => v.startsWith('script-src')), `the browser reports why: ${violations}`);
  assert.equal((await world.api.click(clickId)).status, 404);
  await context.close();
});

test('SRI: utt.js loads with the hash computed as documented, and is refused with a wrong one', { timeout: 60_000 }, async () => {
  // `openssl dgst -sha384 -binary dist/utt.js | openssl base64 -A`, in node.
  const hash = `sha384-${createHash('sha384').update(readFileSync(join(world.dist, 'utt.js'))).digest('base64')}`;
  const stub = `<script>window.utt=window.utt||function(){(utt.q=utt.q||[]).push(arguments)};utt("init",${demo()});utt("conversion",{orderId:ORDER,amount:"1.00",currency:"EUR"});</script>`;

  // The module's script element records how its loading ended: 'load' once it ran, 'error' when refused.
  const tag = (integrity) =>
    `<script type="module" src="/utt.js" integrity="${integrity}" onload="window.loaded='load'" onerror="window.loaded='error'"></script>`;

  const good = unique('SRI');
  const ok = await open(null, stub.replace('ORDER', JSON.stringify(good)) + tag(hash), '');
  await tagReady(ok.page);
  await delivered(ok.page);
  assert.equal((await storedOrders(world.api, good)).length, 1);
  await ok.context.close();

  const bad = unique('SRIBAD');
  const wrong = `sha384-${Buffer.alloc(48).toString('base64')}`;
  const refused = await open(null, stub.replace('ORDER', JSON.stringify(bad)) + tag(wrong), '');
  // The browser has decided about the module: it ran, or it never will.
  const outcome = await refused.page.waitForFunction(() => window.loaded);
  assert.equal(await outcome.jsonValue(), 'error', 'the browser refused the module');
  assert.equal(await refused.page.evaluate(() => typeof window.utt.state), 'undefined', 'the module never ran');
  assert.deepEqual(await world.api.orders(bad), []);
  await refused.context.close();
});
