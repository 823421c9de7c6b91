// End to end, table-driven: the journeys that decide who gets paid when consent, links, reloads,
// other domains and bursts get in the way (issue 11). One row per journey: its steps in real
// Chromium against the real collector, the click IDs the browser must end up storing (the `_utt`
// cookie and localStorage record, read back and decoded) and the collector must list as the
// conversion's touchpoints, and the click it must credit. The loop at the end runs each row as
// its own test and checks those, plus what every journey keeps: no `_uttj` on the wire, no page
// errors, no dialogs.
//
// The shop is on http://localhost:P1, the collector on http://127.0.0.1:P2 and, for the
// cross-domain journey, a checkout site on http://127.0.0.1:P3 (a server of its own: a page
// Playwright answers itself may not reach the loopback collector).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { serveStatic } from '../browser/harness.mjs';
import {
  useWorld, visitor, unique, eventually, tagReady, tagState, delivered, acceptConsent, browseAndAdd, checkout,
  storedOrders, tagCookies, tagLocalKeys, storedRecords, metricValue, decodeRecord,
} from './support.mjs';

const MIN = 60_000;
const DAY = 86_400_000;

/** A click ID the tag must refuse (`<img src=x onerror=alert(1)>`), as it appears in a link. */
const REFUSED = '%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E';
const REFUSED_FORMS = [REFUSED, decodeURIComponent(REFUSED), 'onerror', '%3Cimg', '<img'];

// ---- the cross-domain pages: a shop page on localhost and a checkout site on 127.0.0.1 ----

let checkoutSite = null;

/** A page with the snippet as a merchant pastes it, configured with `init`. */
function tagPage(title, init, body) {
  const snippet = readFileSync(join(world.dist, 'snippet.js'), 'utf8').split('\n')[0];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>${title}</title>
<script>
${snippet}
utt("init",${JSON.stringify(init)});
</script></head>
<body>${body}</body></html>`;
}

function html(text) {
  return (req, res) => {
    const body = Buffer.from(text());
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(body);
  };
}

/** The configuration of both cross-domain sites: the demo's consent settings, and each other's domain. */
function crossDomain(linkDomains) {
  return { site: 'demo', collector: world.collectorUrl, consent: 'denied', whileDenied: 'wait', linkDomains };
}

// The production build, as merchants ship it. What the tag holds before consent is read where it
// shows: the journey parameter it puts on the site's own links (the record it would store);
// after consent, the record in the cookie and localStorage. Why a value was refused is only in
// the debug build's state: tests/e2e/debug-reasons.test.mjs checks those reasons.
const world = useWorld({
  routes: {
    'GET /xd/shop.html': html(() =>
      tagPage('Shop', crossDomain(['127.0.0.1']), `<h1>Shop</h1>
<p><a id="same-site" href="/xd/shop.html?page=2">Another page of the shop</a></p>
<p><a id="to-checkout" href="${checkoutSite.url}/xd/checkout.html?cart=1">Pay on our checkout domain</a></p>`)
    ),
  },
});

/**
 * The checkout site, started by the first journey that needs it: it serves the world's dist/,
 * and a `before()` of this file is not sure to run after the one `useWorld()` registers.
 */
async function startCheckoutSite() {
  checkoutSite ??= await serveStatic({
    '/': world.dist,
    'GET /xd/checkout.html': html(() => tagPage('Checkout', crossDomain(['localhost']), '<h1>Checkout</h1>')),
  });
  return checkoutSite;
}
after(async () => {
  await checkoutSite?.close();
});

// ---- steps ----

/** What one journey has: its click IDs by name (unique to the run), its visitors, what they sent. */
function journeyContext() {
  const ids = new Map();
  const visitors = [];
  return {
    visitors,
    /** The run's click (or marker) ID for `name`: the same for the same name. */
    id(name) {
      if (!ids.has(name)) ids.set(name, unique(`J${name}`));
      return ids.get(name);
    },
    /** A new browser context, watched (`visitor()`), closed after the journey. */
    async visitor(options) {
      const v = await visitor(world, options);
      visitors.push(v);
      return v;
    },
    /** A new visitor whose clock starts at `t0` (now by default) and moves only when told. */
    async visitorAt(t0 = Date.now()) {
      const v = await this.visitor();
      await v.context.clock.install({ time: t0 });
      return { ...v, t0 };
    },
    /** Every batch body the journey's pages posted. */
    bodies: () => visitors.flatMap((v) => v.seen.batches),
    /** Every event the journey's pages posted. */
    events: () => visitors.flatMap((v) => v.seen.batches.flatMap((b) => JSON.parse(b).events)),
  };
}

/** Follows a link of the page with the mouse (so the loader sees it) and waits for the next page's tag. */
async function follow(page, selector, url) {
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.isNavigationRequest() && r.frame() === page.mainFrame() && url.test(r.url())),
    page.click(selector),
  ]);
  await page.waitForURL(url);
  await tagReady(page);
  // Once read, the journey parameter leaves the address bar (a copied address must not carry it).
  await page.waitForFunction(() => !location.search.includes('_uttj'));
  return new URL(request.url());
}

/** Adds a link to the top of the page's content (where the consent banner never covers it). */
function addLink(page, id, href) {
  return page.evaluate(
    ([id, href]) => document.querySelector('main').prepend(Object.assign(document.createElement('a'), { id, href, textContent: id })),
    [id, href]
  );
}

/** The hrefs of the page's links `ids` just after a mouse button went down on each (the loader decorates then). */
function pressedHrefs(page, ids) {
  return page.evaluate((ids) => {
    return ids.map((id) => {
      const a = document.getElementById(id);
      a.dispatchEvent(new MouseEvent('mousedown', { bubbles: true }));
      return a.href;
    });
  }, ids);
}

/** The journey a `_uttj` value carries (an 8-hex-digit checksum, then the record's text), or null. */
function carriedRecord(value) {
  return value && /^[0-9a-f]{8}1\./.test(value) ? decodeRecord(value.slice(8)) : null;
}

let linkCount = 0;

/**
 * The clicks the tag holds on the page while consent is pending, as the site's own links carry
 * them: a new link pressed with the mouse, its `_uttj` decoded (`[]` when it is not decorated).
 */
async function carriedClicks(page) {
  const id = `held-${++linkCount}`;
  await addLink(page, id, '/guides/');
  const [href] = await pressedHrefs(page, [id]);
  await page.evaluate((id) => document.getElementById(id).remove(), id);
  return carriedRecord(new URL(href).searchParams.get('_uttj'))?.clicks ?? [];
}

/** The clicks the tag holds on the page, as `[value, at, path]`: carried on links before consent, stored after. */
async function heldClicks(page) {
  const { consent } = await tagState(page);
  const clicks = consent === 'granted' ? (await storedRecord(page)).clicks : await carriedClicks(page);
  return clicks.map((c) => [c.value, c.at, c.path]);
}

/** Waits until a batch with a consent denial posted after `before` batches is acknowledged (the tag's queue is empty). */
async function denialDelivered(ctx, page, before) {
  await eventually('the denial delivered', async () =>
    ctx.bodies().slice(before).some((b) => JSON.parse(b).events.some((e) => e.type === 'consent' && e.consent === 'denied')) &&
    (await tagState(page)).queued === 0
  );
}

/** Waits until the page's site has the journey record in both stores, and answers it. */
async function storedRecord(page) {
  const { cookie, local } = await eventually('the record in the cookie and localStorage', async () => {
    const r = await storedRecords(page);
    return r.cookie && r.local && r;
  });
  assert.deepEqual(cookie.clicks, local.clicks, 'the two stores agree');
  return cookie;
}

/** The product page's add-to-cart button, then checkout; answers the order, delivered. */
async function addAndCheckout(page) {
  await page.click('#add-to-cart');
  await page.waitForSelector('#added a');
  const order = await checkout(page, world.base);
  await delivered(page);
  return order;
}

/** Waits until the collector has seen a click. */
function clickSeen(id) {
  return eventually(`the collector's record of ${id}`, async () => {
    const r = await world.api.click(id);
    return r.status === 200 && r.body;
  });
}

/** The `_utt*` files of the collector's database (main, derived, WALs), as bytes. */
function databaseBytes() {
  const dir = world.collector.dir;
  return readdirSync(dir)
    .filter((f) => f.startsWith('utt.db'))
    .map((f) => readFileSync(join(dir, f)));
}

// ---- the journeys ----

/**
 * One row per journey. `steps(ctx)` walks it (asserting what is particular to it) and answers
 * `{page, orderId}`: the page whose site holds the final record, and the order it converted.
 * `clicks`: the click IDs (by name, `ctx.id(name)`) that the record in the cookie and in
 * localStorage must hold, and the conversion's touchpoints list, in order. `credit`: the click
 * credited under `model` (default last click), null for none; or `{model: name}` for several.
 */
const JOURNEYS = [
  {
    name: '1. consent accepted on page 2: the click passes through the link and is stored with its landing time and path',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { context, page, t0 } = await ctx.visitorAt();
      await page.goto(`${world.base}/?irclickid=${X}&utm_source=partner&utm_campaign=spring`, {
        referer: 'http://partner.example/review?id=1',
      });
      await tagReady(page);
      const landed = await heldClicks(page);
      assert.deepEqual(landed.map(([value, , path]) => [value, path]), [[X, '/']]);
      assert.deepEqual(await tagCookies(context), [], 'held in memory: nothing stored before consent');
      assert.deepEqual(await tagLocalKeys(page), []);
      const at = landed[0][1];
      assert.ok(at >= t0 && at < t0 + MIN, `captured at landing: ${at - t0} ms after t0`);

      // A link to another site is never decorated; the site's own links are.
      await addLink(page, 'elsewhere', 'http://partner.example/other-shop?x=1');
      await addLink(page, 'own', '/guides/');
      const [elsewhere, own] = await pressedHrefs(page, ['elsewhere', 'own']);
      assert.equal(elsewhere, 'http://partner.example/other-shop?x=1', 'a link to another site went undecorated');
      assert.ok(new URL(own).searchParams.get('_uttj'), `the site's own link is decorated: ${own}`);

      // Two minutes of reading, then a product link: consent is still pending.
      await page.clock.setSystemTime(t0 + 2 * MIN);
      const next = await follow(page, 'a[href*="product.html"]', /\/product\.html\?/);
      assert.ok(next.searchParams.get('_uttj'), `the link carried the journey: ${next}`);
      assert.deepEqual(await heldClicks(page), [[X, at, '/']], 'adopted in memory with its landing time and path');
      assert.deepEqual(await tagCookies(context), [], 'nothing stored before consent');
      assert.deepEqual(await tagLocalKeys(page), []);

      await acceptConsent(page);
      const [stored] = (await storedRecord(page)).clicks;
      assert.equal(stored.at, at, 'stored with the landing time, not the time of consent');
      assert.equal(stored.path, '/', 'and the landing path');
      assert.equal(stored.ref, 'partner.example', "and the landing's referrer host");
      assert.deepEqual(stored.utm, { source: 'partner', campaign: 'spring' });

      const order = await addAndCheckout(page);
      const [c] = await storedOrders(world.api, order.orderId);
      assert.equal(c.attribution?.clickAt, at, 'the collector has the landing time too');
      assert.equal(c.touchpoints[0]?.path, '/');
      const seen = await clickSeen(X);
      assert.deepEqual(seen.landings.map((l) => [l.path, l.at]), [['/', at]], 'one landing: the original');
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '2. consent accepted on page 3: the click passes through two links',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { context, page, t0 } = await ctx.visitorAt();
      await page.goto(`${world.base}/?irclickid=${X}`);
      await tagReady(page);
      const [[, at]] = await heldClicks(page);

      // A link of the shop that keeps the partner's parameter: the journey it carries and the
      // click ID in it are the same touchpoint, at the landing time.
      await addLink(page, 'same-click', `/product.html?sku=CAP-1&irclickid=${X}`);
      await page.clock.setSystemTime(t0 + MIN);
      let next = await follow(page, '#same-click', /\/product\.html\?/);
      assert.ok(next.searchParams.get('_uttj'), `page 2 carried the journey: ${next}`);
      assert.equal(next.searchParams.get('irclickid'), X);
      assert.deepEqual(await heldClicks(page), [[X, at, '/']], 'one click, at the landing time');
      await page.click('#add-to-cart');
      await page.waitForSelector('#added a');
      await page.clock.setSystemTime(t0 + 2 * MIN);
      next = await follow(page, '#added a', /\/cart\.html/);
      assert.ok(next.searchParams.get('_uttj'), `page 3 carried the journey: ${next}`);
      assert.deepEqual(await heldClicks(page), [[X, at, '/']]);
      assert.deepEqual(await tagCookies(context), []);

      await acceptConsent(page);
      const [stored] = (await storedRecord(page)).clicks;
      assert.deepEqual([stored.value, stored.at, stored.path], [X, at, '/'], 'the landing, two pages back');

      const order = await checkout(page, world.base);
      await delivered(page);
      const [c] = await storedOrders(world.api, order.orderId);
      assert.equal(c.attribution?.clickAt, at);
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '3. consent declined on the first visit, accepted on a later one: only the later click exists anywhere',
    clicks: ['Y'],
    credit: 'Y',
    async steps(ctx) {
      const [X, Y] = [ctx.id('X'), ctx.id('Y')];
      const { context, page } = await ctx.visitor();
      await page.goto(`${world.base}/?irclickid=${X}`);
      await tagReady(page);
      let sent = ctx.bodies().length;
      await page.click('#consent-decline');
      // The anonymous denial has reached the collector: the decision is made.
      await denialDelivered(ctx, page, sent);
      const next = await follow(page, 'a[href*="product.html"]', /\/product\.html\?/);
      assert.equal(next.searchParams.get('_uttj'), null, `no journey on links after a decline: ${next}`);
      assert.deepEqual(await carriedClicks(page), [], 'the click did not survive the decline');
      assert.deepEqual(await tagCookies(context), []);
      assert.deepEqual(await tagLocalKeys(page), []);

      // A later visit through another partner's link; the shop remembers the decline and passes
      // it on again (the tag cannot store a no), so the click is not carried in links ...
      sent = ctx.bodies().length;
      await page.goto(`${world.base}/?irclickid=${Y}`);
      await tagReady(page);
      assert.equal(await page.locator('#consent-banner').count(), 0, 'the shop remembered the decline');
      // Its anonymous denial on this page has been delivered: the tag has heard the no.
      await denialDelivered(ctx, page, sent);
      await addLink(page, 'own-after-no', '/guides/');
      const [own] = await pressedHrefs(page, ['own-after-no']);
      assert.equal(new URL(own).searchParams.get('_uttj'), null, `no journey on links while the no stands: ${own}`);
      // ... until the visitor reopens the banner from the footer and accepts.
      await page.click('#cookie-settings');
      await acceptConsent(page);
      await browseAndAdd(page, world.base, ['CAP-1']);
      const order = await checkout(page, world.base);
      await delivered(page);

      // The collector has processed the later visit (its click and its order) ...
      await storedOrders(world.api, order.orderId);
      assert.ok((await clickSeen(Y)).pageViews >= 1);
      // ... and never saw the declined one, in any form.
      assert.equal((await world.api.click(X)).status, 404, `${X} reached the collector`);
      for (const body of ctx.bodies()) assert.ok(!body.includes(X), `a batch carried ${X}: ${body}`);
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '4. the landing page reloaded, then an internal link with the same click ID: one touchpoint, first seen',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { context, page, t0 } = await ctx.visitorAt();
      await page.goto(`${world.base}/?irclickid=${X}`);
      await acceptConsent(page);
      await delivered(page);
      const [[, at]] = await heldClicks(page);

      await page.clock.setSystemTime(t0 + 10 * MIN);
      await page.reload();
      await tagReady(page);
      assert.deepEqual(await heldClicks(page), [[X, at, '/']], 'the reload is the same touchpoint');
      await page.clock.setSystemTime(t0 + 12 * MIN);
      await addLink(page, 'same-click', `/product.html?sku=CAP-1&irclickid=${X}`);
      const next = await follow(page, '#same-click', /\/product\.html\?/);
      assert.equal(next.searchParams.get('_uttj'), null, 'with consent, storage carries the journey');
      assert.deepEqual(await heldClicks(page), [[X, at, '/']], 'so is an internal link carrying it');

      const order = await addAndCheckout(page);
      const [c] = await storedOrders(world.api, order.orderId);
      assert.deepEqual(c.touchpoints.map((t) => [t.clickId, t.at, t.path]), [[X, at, '/']]);
      assert.equal(c.attribution?.clickAt, at);
      const seen = await clickSeen(X);
      assert.deepEqual(seen.landings.map((l) => [l.path, l.at]), [['/', at]], 'one landing, however often it was seen');
      return { page, orderId: order.orderId };
    },
  },

  {
    name: "5. two partners' clicks on two days: last click credits the second, first click the first",
    clicks: ['A', 'B'],
    credit: { last_click: 'B', first_click: 'A' },
    async steps(ctx) {
      const [A, B] = [ctx.id('A'), ctx.id('B')];
      // Ten days ago, so every time the tag sends is in the past.
      const { context, page, t0 } = await ctx.visitorAt(Date.now() - 10 * DAY);
      await page.goto(`${world.base}/?irclickid=${A}&utm_source=partner-a`);
      await acceptConsent(page);
      await delivered(page);

      await page.clock.setSystemTime(t0 + 3 * DAY);
      await page.goto(`${world.base}/?awc=${B}&utm_source=partner-b`);
      await tagReady(page);
      const next = await follow(page, 'a[href*="product.html"]', /\/product\.html\?/);
      assert.equal(next.searchParams.get('_uttj'), null, `with consent, storage carries the journey: ${next}`);
      // The first and the last click of the journey, in that order.
      const clicks = (await storedRecord(page)).clicks;
      assert.deepEqual(clicks.map((c) => [c.value, c.network]), [[A, 'impact'], [B, 'awin']]);

      await page.clock.setSystemTime(t0 + 4 * DAY);
      const order = await addAndCheckout(page);
      const [c] = await storedOrders(world.api, order.orderId);
      const gap = c.touchpoints[1].at - c.touchpoints[0].at;
      assert.ok(Math.abs(gap - 3 * DAY) < MIN, `the clicks are three days apart: ${gap} ms`);
      assert.equal(c.attribution?.network, 'awin');
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '6. an internal ?ref=footer link after a partner click: the partner keeps the credit',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { page } = await ctx.visitor();
      await page.goto(`${world.base}/?irclickid=${X}`);
      await tagReady(page);
      // The shop's own tracking parameters, on a link of its own (ref, and the other generic names).
      await page.evaluate(() => {
        const a = Object.assign(document.createElement('a'), {
          id: 'footer-ref',
          href: '/product.html?sku=CAP-1&ref=footer&via=nav&clickid=INTERNAL-1&click_id=INTERNAL-2',
          textContent: 'Running caps (from the footer)',
        });
        document.querySelector('main').prepend(a);
      });
      const next = await follow(page, '#footer-ref', /\/product\.html\?.*ref=footer/);
      assert.ok(next.searchParams.get('_uttj'), `the partner's click passed through: ${next}`);
      assert.deepEqual((await carriedClicks(page)).map((c) => [c.param, c.value]), [['irclickid', X]], 'ref, via, clickid, click_id are not clicks');
      // Nor refused clicks (a refused value leaves the address bar): just not clicks.
      const here = new URL(page.url()).searchParams;
      assert.deepEqual(['ref', 'via', 'clickid', 'click_id'].map((k) => here.get(k)), ['footer', 'nav', 'INTERNAL-1', 'INTERNAL-2']);
      await acceptConsent(page);

      const order = await addAndCheckout(page);
      for (const e of ctx.events()) {
        assert.deepEqual(e.clicks.map((c) => c.value), [X], `an event carried another click: ${JSON.stringify(e.clicks)}`);
      }
      for (const id of ['footer', 'nav', 'INTERNAL-1', 'INTERNAL-2']) {
        assert.equal((await world.api.click(id)).status, 404, `the collector has a click ${id}`);
      }
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '7. a refused click ID in the landing URL: cut from every URL and referrer sent, stored nowhere',
    clicks: [],
    credit: null,
    async steps(ctx) {
      const marker = ctx.id('M');
      const { page } = await ctx.visitor();
      const clean = `${world.base}/?utm_source=${marker}`;
      await page.goto(`${world.base}/?irclickid=${REFUSED}&utm_source=${marker}`);
      await tagReady(page);
      // Refused: not held (debug-reasons.test.mjs checks the reason the debug build gives).
      assert.deepEqual(await carriedClicks(page), []);
      const rejectedBefore = metricValue(await world.api.metrics(), 'utt_events_total{type="pageview",status="rejected"}');
      await acceptConsent(page);
      // The tag took the refused value out of the address bar, so a link followed now leaves no
      // trace of it; a visitor quicker than the tag would still carry it in the referrer, so the
      // next page is opened with the raw landing URL as its referrer: the tag must cut it.
      assert.ok(!page.url().includes('irclickid'), `the address bar was cleaned: ${page.url()}`);
      await page.goto(`${world.base}/product.html?sku=CAP-1`, {
        referer: `${world.base}/?irclickid=${REFUSED}&utm_source=${marker}`,
      });
      await tagReady(page);
      assert.ok((await page.evaluate(() => document.referrer)).includes(REFUSED), 'the next page has the raw referrer');
      const order = await addAndCheckout(page);

      const events = ctx.events();
      for (const e of events) {
        for (const [field, text] of [['url', e.url], ['referrer', e.referrer ?? '']]) {
          for (const form of [...REFUSED_FORMS, 'irclickid']) {
            assert.ok(!text.includes(form), `a ${e.type} event's ${field} carries ${form}: ${text}`);
          }
        }
      }
      for (const body of ctx.bodies()) {
        for (const form of REFUSED_FORMS) assert.ok(!body.includes(form), `a batch carries ${form}`);
      }
      const views = events.filter((e) => e.type === 'pageview');
      assert.equal(views[0].url, clean, 'the landing URL, without the refused parameter');
      assert.equal(views[1].referrer, clean, "and the next page's referrer the same");
      assert.equal(
        metricValue(await world.api.metrics(), 'utt_events_total{type="pageview",status="rejected"}'),
        rejectedBefore,
        'the collector had nothing to refuse'
      );

      // The collector's own guard: an event that still carries the value, in its URL or in its
      // referrer, is refused, and the answer does not echo it.
      const answer = await page.evaluate(
        async ({ collector, template, dirty }) => {
          // New event IDs of the same (time-ordered) form: the template's with new random bits.
          const id = () => template.id.slice(0, -8) + crypto.randomUUID().slice(-8);
          const events = [
            { ...template, id: id(), url: dirty },
            { ...template, id: id(), referrer: dirty },
          ];
          const res = await fetch(`${collector}/v1/events`, {
            method: 'POST',
            body: JSON.stringify({ v: 1, site: 'demo', sentAt: Date.now(), events }),
          });
          return { status: res.status, text: await res.text() };
        },
        { collector: world.collectorUrl, template: views[1], dirty: `${world.base}/?irclickid=${REFUSED}&utm_source=${marker}` }
      );
      assert.equal(answer.status, 200, answer.text);
      const results = JSON.parse(answer.text).results;
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected'], answer.text);
      assert.ok(results.every((r) => r.reason.includes('carries a refused click ID in irclickid')), answer.text);
      for (const form of REFUSED_FORMS) assert.ok(!answer.text.includes(form), `the answer echoes ${form}`);

      // Its files: the journey's URLs are there (the scan sees stored text), the value is not.
      await eventually('the landing URL in the database files', () => databaseBytes().some((b) => b.includes(marker)));
      for (const b of databaseBytes()) {
        for (const form of REFUSED_FORMS) assert.ok(!b.includes(form), `the database holds ${form}`);
      }
      return { page, orderId: order.orderId };
    },
  },

  {
    name: "8. cross-domain checkout: the shop's click and visitor travel to the checkout domain, which converts",
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const checkoutSite = await startCheckoutSite();
      const { context, page } = await ctx.visitor();
      await page.goto(`${world.base}/xd/shop.html?irclickid=${X}`);
      await tagReady(page);
      await page.evaluate(() => window.utt('consent', 'granted'));
      const shop = await storedRecord(page);
      assert.deepEqual(shop.clicks.map((c) => c.value), [X]);

      // With consent, the same site's links go undecorated and the checkout domain's carry the journey.
      const hrefs = await pressedHrefs(page, ['same-site', 'to-checkout']);
      assert.ok(!hrefs[0].includes('_uttj'), `a same-site link was decorated: ${hrefs[0]}`);
      assert.ok(hrefs[1].includes('_uttj='), `the checkout link was not decorated: ${hrefs[1]}`);

      const next = await follow(page, '#to-checkout', new RegExp(`^${checkoutSite.url}/xd/checkout\\.html\\?`));
      const carried = carriedRecord(next.searchParams.get('_uttj'));
      assert.ok(carried, `the checkout URL carries the journey: ${next}`);
      assert.equal(carried.visitor, shop.visitor, 'the same visitor for the checkout domain');
      assert.equal(carried.session, shop.session, 'and the same session');
      assert.deepEqual(carried.clicks.map((c) => [c.value, c.at, c.path]), shop.clicks.map((c) => [c.value, c.at, c.path]));
      assert.deepEqual((await tagCookies(context)).filter((c) => c.domain === '127.0.0.1'), [], 'nothing stored there before its own consent');

      // The checkout domain asks for consent too; then the purchase.
      await page.evaluate(() => window.utt('consent', 'granted'));
      // Adopted there: the record the checkout domain stores is the shop's journey.
      const stored = await storedRecord(page);
      assert.equal(stored.visitor, shop.visitor);
      assert.equal(stored.session, shop.session);
      assert.deepEqual(stored.clicks.map((c) => [c.value, c.at, c.path]), shop.clicks.map((c) => [c.value, c.at, c.path]));
      const orderId = ctx.id('ORDER');
      const answer = await page.evaluate(
        (orderId) =>
          window.utt('conversion', {
            orderId,
            amount: '19.95',
            currency: 'EUR',
            items: [{ sku: 'CAP-1', name: 'Running cap', price: '19.95', quantity: 1 }],
          }),
        orderId
      );
      assert.equal(answer.status, 'queued', JSON.stringify(answer));
      // Delivered: the collector accepts the checkout origin (the row's checks find the order).
      await delivered(page);
      assert.equal((await storedRecord(page)).visitor, shop.visitor);
      return { page, orderId };
    },
  },

  {
    name: '8b. cross-domain while consent is pending on the shop: the click travels, the visitor does not',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const checkoutSite = await startCheckoutSite();
      const { context, page } = await ctx.visitor();
      await page.goto(`${world.base}/xd/shop.html?irclickid=${X}`);
      await tagReady(page);
      assert.equal((await tagState(page)).consent, 'denied');
      const next = await follow(page, '#to-checkout', new RegExp(`^${checkoutSite.url}/xd/checkout\\.html\\?`));
      const carried = carriedRecord(next.searchParams.get('_uttj'));
      assert.ok(carried, `the checkout URL carries the clicks: ${next}`);
      const NIL = '00000000-0000-0000-0000-000000000000';
      assert.deepEqual([carried.visitor, carried.session], [NIL, NIL], 'but no visitor or session without consent');
      assert.deepEqual(carried.clicks.map((c) => [c.value, c.path]), [[X, '/xd/shop.html']]);
      assert.deepEqual(await tagCookies(context), []);

      await page.evaluate(() => window.utt('consent', 'granted'));
      // Adopted with its landing time and path, under a visitor of the checkout domain's own.
      const stored = await storedRecord(page);
      assert.notEqual(stored.visitor, NIL);
      assert.deepEqual(stored.clicks.map((c) => [c.value, c.at, c.path]), carried.clicks.map((c) => [c.value, c.at, c.path]));
      const orderId = ctx.id('ORDER');
      const answer = await page.evaluate(
        (orderId) => window.utt('conversion', { orderId, amount: '24.00', currency: 'EUR', items: [{ sku: 'SOCK-3P', price: '24.00', quantity: 1 }] }),
        orderId
      );
      assert.equal(answer.status, 'queued', JSON.stringify(answer));
      await delivered(page);
      return { page, orderId };
    },
  },

  {
    name: '9. a burst of 1,000 events in one task: every one queued, delivered and stored',
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { page } = await ctx.visitor();
      await page.goto(`${world.base}/product.html?sku=CAP-1&irclickid=${X}`);
      await acceptConsent(page);
      await delivered(page);
      const series = 'utt_events_total{type="event",status="accepted"}';
      const before = metricValue(await world.api.metrics(), series);
      const answers = await page.evaluate(async () => {
        const calls = [];
        for (let i = 0; i < 1000; i++) calls.push(window.utt('event', 'burst', { i }));
        const all = await Promise.all(calls);
        return all.reduce((n, a) => ((n[a.status] = (n[a.status] ?? 0) + 1), n), {});
      });
      assert.deepEqual(answers, { queued: 1000 });
      await delivered(page, 60_000);
      const sent = ctx.events().filter((e) => e.type === 'event' && e.name === 'burst');
      assert.equal(new Set(sent.map((e) => e.props.i)).size, 1000, 'all 1,000 on the wire');
      const stored = await eventually('1,000 more events stored', async () => {
        const n = metricValue(await world.api.metrics(), series) - before;
        return n >= 1000 && n;
      });
      assert.equal(stored, 1000, 'exactly 1,000 events accepted');

      const order = await addAndCheckout(page);
      return { page, orderId: order.orderId };
    },
  },

  {
    name: '10. an edited, foreign or stale _uttj is not adopted',
    clicks: [],
    credit: null,
    async steps(ctx) {
      const Z = ctx.id('Z');
      const { context, page, t0 } = await ctx.visitorAt();
      await page.goto(`${world.base}/?irclickid=${Z}`);
      await tagReady(page);
      // The link as the tag decorates it when the visitor presses the mouse on it.
      await addLink(page, 'product', '/product.html?sku=CAP-1');
      const [href] = await pressedHrefs(page, ['product']);
      const value = new URL(href).searchParams.get('_uttj');
      assert.ok(value?.includes(Z), `a decorated link: ${href}`);
      // What the next page holds: the clicks it carries on on its own links (the reasons for a
      // refusal are the debug build's: debug-reasons.test.mjs).
      const land = async (p, url) => {
        await p.goto(url);
        await tagReady(p);
        return (await carriedClicks(p)).map((c) => c.value);
      };

      // Untouched, in this browser, now: adopted (the control).
      assert.deepEqual(await land(page, href), [Z]);
      // Edited: another click ID of the same length.
      const edited = href.replace(Z, Z.slice(0, -1) + (Z.endsWith('A') ? 'B' : 'A'));
      assert.notEqual(edited, href);
      assert.deepEqual(await land(page, edited), []);
      // Opened in another browser.
      const other = await ctx.visitor({ userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AnotherBrowser/1.0' });
      assert.deepEqual(await land(other.page, href), []);
      // Six minutes later.
      await page.clock.setSystemTime(t0 + 6 * MIN);
      assert.deepEqual(await land(page, href), []);

      await acceptConsent(page);
      await browseAndAdd(page, world.base, ['CAP-1']);
      const order = await checkout(page, world.base);
      await delivered(page);
      for (const body of ctx.bodies()) assert.ok(!body.includes(Z), `a batch carried ${Z}`);
      return { page, orderId: order.orderId };
    },
  },

  {
    name: "11. a GET form of the site submitted while consent is pending carries the click in a field",
    clicks: ['X'],
    credit: 'X',
    async steps(ctx) {
      const X = ctx.id('X');
      const { page } = await ctx.visitor();
      await page.goto(`${world.base}/?irclickid=${X}&utm_source=partner`);
      await tagReady(page);
      const [[, at]] = await heldClicks(page);
      await page.evaluate(() => {
        const form = Object.assign(document.createElement('form'), { id: 'find', method: 'get', action: '/product.html' });
        form.append(
          Object.assign(document.createElement('input'), { name: 'sku', value: 'CAP-1' }),
          Object.assign(document.createElement('button'), { id: 'find-go', type: 'submit', textContent: 'Find' })
        );
        document.querySelector('main').prepend(form);
      });
      const next = await follow(page, '#find-go', /\/product\.html\?/);
      assert.equal(next.searchParams.get('sku'), 'CAP-1');
      assert.ok(next.searchParams.get('_uttj'), `the form's query carried the journey: ${next}`);
      assert.deepEqual(await heldClicks(page), [[X, at, '/']]);
      await acceptConsent(page);
      const [stored] = (await storedRecord(page)).clicks;
      assert.deepEqual([stored.value, stored.at, stored.path, stored.utm], [X, at, '/', { source: 'partner' }]);
      const order = await addAndCheckout(page);
      return { page, orderId: order.orderId };
    },
  },
];

for (const row of JOURNEYS) {
  test(row.name, { timeout: 90_000 }, async () => {
    const ctx = journeyContext();
    try {
      const { page, orderId } = await row.steps(ctx);
      const clicks = row.clicks.map((name) => ctx.id(name));

      // The browser: the record in the cookie and in localStorage.
      const { cookie, local } = await storedRecords(page);
      assert.deepEqual(cookie?.clicks.map((c) => c.value), clicks, `the _utt cookie: ${JSON.stringify(cookie)}`);
      assert.deepEqual(local?.clicks.map((c) => c.value), clicks, `localStorage _utt: ${JSON.stringify(local)}`);

      // The collector: one conversion, these touchpoints, this credit.
      const credits = row.credit !== null && typeof row.credit === 'object' ? row.credit : { [row.model ?? 'last_click']: row.credit };
      for (const [model, name] of Object.entries(credits)) {
        const stored = await storedOrders(world.api, orderId, model);
        assert.equal(stored.length, 1, `one conversion for ${orderId}`);
        const [c] = stored;
        assert.deepEqual(c.touchpoints.map((t) => t.clickId), clicks, `${model} touchpoints`);
        assert.equal(c.attribution?.model ?? null, name === null ? null : model);
        assert.equal(c.attribution?.clickId ?? null, name === null ? null : ctx.id(name), `${model} credit: ${JSON.stringify(c.attribution)}`);
      }

      // What every journey keeps.
      for (const body of ctx.bodies()) assert.ok(!body.includes('_uttj'), `a batch carries _uttj: ${body.slice(0, 500)}`);
      for (const v of ctx.visitors) {
        assert.deepEqual(v.seen.errors, []);
        assert.deepEqual(v.seen.dialogs, []);
      }
    } finally {
      for (const v of ctx.visitors) await v.context.close().catch(() => {});
    }
  });
}
