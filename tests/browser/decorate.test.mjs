// The loader's part of the consent passthrough and of `linkDomains`, in headless Chromium against
// a stand-in collector: which links and forms get the journey parameter `_uttj` when they are
// followed (the tag decides; these tests hold the loader to asking at the right moments), and
// that the next page takes the click in with its original time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, launchChromium, serveStatic, acceptingCollector, openPage, stopAll } from './harness.mjs';
import { decodeRecord } from '../e2e/support.mjs';

const SNIPPET = readFileSync(join(ROOT, 'dist', 'snippet.js'), 'utf8').split('\n')[0];
let site, browser, server;
const batches = [];

/** A page of the shop: consent pending, events held; links and forms of every kind. */
function shopPage(name, config) {
  writeFileSync(
    join(site, name),
    `<!doctype html><html><head><title>${name}</title><script>${SNIPPET}
utt('init', ${JSON.stringify(config)});</script></head><body>
<a id="same" href="/next.html?sku=CAP-1#reviews">same site</a>
<a id="nested" href="/next.html"><span id="inner">a link's child</span></a>
<a id="keyboard" href="/next.html?k=1">reached with the keyboard</a>
<a id="other" href="http://localhost:9/elsewhere.html">another site</a>
<a id="checkout" href="http://pay.checkout.test:9/start">the site's checkout domain</a>
<a id="mail" href="mailto:shop@example.com">mail</a>
<form id="get" action="/search.html" method="get"><input name="q" value="trail shoes"><button id="get-go">search</button></form>
<form id="post" action="/buy?step=1" method="post"><button id="post-go">buy</button></form>
<script>
  // The links and forms here only record where they would go.
  window.stay = true;
  document.addEventListener('click', (e) => window.stay && e.target.closest('a') && e.preventDefault());
  document.addEventListener('submit', (e) => {
    const f = e.target;
    window.submitted = { action: f.action, fields: [...new FormData(f).keys()] };
    e.preventDefault();
  });
</script></body></html>`
  );
}

const PENDING = { site: 'demo', consent: 'denied', whileDenied: 'wait', linkDomains: ['checkout.test'] };

before(async () => {
  site = mkdtempSync(join(tmpdir(), 'utt-deco-'));
  // The production build: what the tag holds before consent is read from the journey parameter
  // it puts on links, what it stores from the cookie and localStorage.
  for (const f of ['utt.js', 'utt_bg.wasm', 'utt_texts.js']) copyFileSync(join(ROOT, 'dist', f), join(site, f));
  shopPage('land.html', PENDING);
  shopPage('next.html', PENDING);
  server = await serveStatic({
    '/': site,
    'POST /v1/events': acceptingCollector((batch) => {
      batches.push(batch);
    }),
  });
  browser = await launchChromium();
});

after(() => stopAll({ browser, server, site }));

const land = (path) => openPage(browser, server.url + path, () => window.utt?.state?.().ready);

const href = (p, id) => p.$eval(`#${id}`, (a) => a.getAttribute('href'));
const journey = (url) => new URL(url, 'http://x').searchParams.get('_uttj');

/** The clicks the page's tag carries on its links (`#nested` pressed, its `_uttj` decoded), as `[value, at, path]`. */
async function carried(p) {
  await p.$eval('#nested', (a) => a.setAttribute('href', '/next.html'));
  await p.$eval('#nested', (a) => a.dispatchEvent(new MouseEvent('mousedown', { bubbles: true })));
  const value = journey(await href(p, 'nested'));
  return value ? decodeRecord(value.slice(8)).clicks.map((c) => [c.value, c.at, c.path]) : [];
}

/** The journey record in the `_utt` cookie and in localStorage, decoded (null where there is none). */
function stored(p) {
  return p.evaluate(() => [
    document.cookie.split('; ').find((c) => c.startsWith('_utt='))?.slice(5) ?? null,
    localStorage.getItem('_utt'),
  ]).then((texts) => texts.map(decodeRecord));
}

test('while consent is pending, followed links and forms of the site carry the click, others never', async () => {
  const { p, context, errors } = await land('/land.html?irclickid=AFF-1');
  // Nothing is decorated before it is followed.
  assert.equal(await href(p, 'same'), '/next.html?sku=CAP-1#reviews');

  await p.click('#same');
  const same = await href(p, 'same');
  assert.match(same, /^http:\/\/127\.0\.0\.1:\d+\/next\.html\?sku=CAP-1&_uttj=[0-9a-f]{8}1\.[^#&]+#reviews$/, same);
  // A click on a link's child decorates the link; a middle click (mousedown alone) too.
  await p.click('#inner');
  assert.ok(journey(await href(p, 'nested')), 'the link around the clicked element');
  // Enter on a focused link fires click without mousedown.
  await p.focus('#keyboard');
  await p.keyboard.press('Enter');
  assert.ok(journey(await href(p, 'keyboard')), 'a link followed from the keyboard');
  await p.click('#checkout', { button: 'middle' });
  assert.ok(journey(await href(p, 'checkout')), "the site's linkDomains get it too");
  // Another site, and what is not http(s), never.
  await p.click('#other');
  await p.click('#mail');
  assert.equal(await href(p, 'other'), 'http://localhost:9/elsewhere.html');
  assert.equal(await href(p, 'mail'), 'mailto:shop@example.com');

  // A GET form's query is made of its fields: the journey goes in a hidden one. A POST form's
  // action gets it.
  await p.click('#get-go');
  let sent = await p.evaluate(() => window.submitted);
  assert.deepEqual(sent.fields, ['q', '_uttj']);
  const field = await p.$eval('#get input[name=_uttj]', (i) => i.value);
  assert.match(field, /^[0-9a-f]{8}1\.\(/, 'the decoded value: the browser encodes it when it sends the form');
  await p.click('#post-go');
  sent = await p.evaluate(() => window.submitted);
  assert.match(sent.action, /\/buy\?step=1&_uttj=/);
  assert.deepEqual(sent.fields, []);

  // The visitor says no: nothing more is decorated.
  await p.evaluate(() => window.utt('consent', 'denied'));
  await p.$eval('#same', (a) => a.setAttribute('href', '/next.html?again=1'));
  await p.click('#same');
  assert.equal(await href(p, 'same'), '/next.html?again=1');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the page a decorated link leads to has the click at its landing time, and sends it only after consent', async () => {
  batches.length = 0;
  const { p, context, errors } = await land('/land.html?irclickid=AFF-2');
  const [landed] = await carried(p);
  assert.deepEqual([landed[0], landed[2]], ['AFF-2', '/land.html']);
  await p.evaluate(() => (window.stay = false));
  await Promise.all([p.waitForURL(/\/next\.html\?sku=CAP-1&_uttj=/), p.click('#same')]);
  await p.waitForFunction(() => window.utt?.state?.().ready);
  // The tag takes the journey parameter out of the address bar once it has read it.
  await p.waitForFunction(() => !location.search.includes('_uttj'));
  assert.match(p.url(), /\/next\.html\?sku=CAP-1#reviews$/);
  assert.deepEqual(await carried(p), [landed], 'carried on with its landing time and path');
  assert.deepEqual(await stored(p), [null, null], 'and stored nowhere yet');
  assert.equal(await p.evaluate(() => document.cookie), '');

  // Accepted on this page: stored, and sent with the page view that waited, whose URL and
  // referrer carry no journey parameter.
  await p.evaluate(() => window.utt('consent', 'granted'));
  await p.waitForFunction(() => window.utt.state().queued === 0 && window.utt.state().held === 0);
  const [cookie, local] = await stored(p);
  for (const r of [cookie, local]) assert.deepEqual(r?.clicks.map((c) => [c.value, c.at, c.path]), [landed]);
  const views = batches.flatMap((b) => b.events).filter((e) => e.type === 'pageview');
  assert.equal(views.length, 1, 'the held page view of this page (the landing page\'s was never sent)');
  assert.match(views[0].url, /\/next\.html\?sku=CAP-1#reviews$/);
  assert.match(views[0].referrer, /\/land\.html\?irclickid=AFF-2$/);
  assert.deepEqual(views[0].clicks.map((c) => [c.value, c.at]), [['AFF-2', landed[1]]]);
  for (const b of batches) assert.ok(!JSON.stringify(b).includes('_uttj'), 'never sent');
  // With consent, the site's own links are left alone: storage carries the journey now.
  await p.evaluate(() => (window.stay = true));
  await p.$eval('#same', (a) => a.setAttribute('href', '/next.html?later=1'));
  await p.click('#same');
  assert.equal(await href(p, 'same'), '/next.html?later=1');
  assert.deepEqual(errors, []);
  await context.close();
});
