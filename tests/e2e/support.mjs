// Shared pieces of the end-to-end tests (`node --test tests/e2e/`): the real collector binary on
// a free port with a fresh database; the demo shop (a snapshot of dist/ plus www/) on a second
// origin, as merchants deploy it, or served by the collector itself for same-origin tests; a
// headless Chromium; and the steps a shopper takes in the demo shop. Tests assert on what the
// collector stored, read back through its own read API. This file holds no tests.

import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { before, after } from 'node:test';
import { launchChromium, cleanChromiumProfiles, serveStatic, ROOT } from '../browser/harness.mjs';

export { ROOT };

/** Where screenshots go; the folder is gitignored. */
export const ARTIFACTS = join(ROOT, 'test-artifacts');

/** Cargo's target folder, honouring `CARGO_TARGET_DIR` as cargo (and the xtask) do. */
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
const COLLECTOR = join(TARGET, 'debug', 'utt-collector');

let built = false;

/**
 * Makes sure the collector binary is current. `cargo build` is a no-op
 * (about a second) when nothing changed, and it keeps the tests from running a stale binary.
 */
export function ensureBuilt() {
  if (built) return;
  const cargo = process.env.CARGO ?? 'cargo';
  const out = spawnSync(cargo, ['build', '--quiet', '-p', 'utt-collector', '--bin', 'utt-collector'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (out.status !== 0) throw new Error(`cargo build -p utt-collector failed (${out.error ?? `exit ${out.status}`})`);
  built = true;
}

/** The files `cargo xtask build` writes to dist/, `snippet.js` last. */
const DIST_FILES = ['utt_bg.wasm', 'utt.js', 'utt_texts.js', 'utt_debug_bg.wasm', 'utt_debug.js', 'utt.d.ts', 'ire.js', 'snippet.js'];

/**
 * Copies the built tag to `into`, so one test file runs against one build even if dist/ is
 * rebuilt meanwhile (the build empties the folder first). Waits up to a minute for a build in
 * progress to finish; fails with the command to run when there is no build at all.
 */
async function snapshotDist(into, build = 'production') {
  const from = join(ROOT, 'dist');
  const complete = () => DIST_FILES.every((f) => existsSync(join(from, f)));
  for (let waited = 0; !complete(); waited += 500) {
    if (waited >= 60_000) throw new Error('dist/ is incomplete: run `cargo xtask build` first');
    await new Promise((ok) => setTimeout(ok, 500));
  }
  mkdirSync(into, { recursive: true });
  for (const f of DIST_FILES) copyFileSync(join(from, f), join(into, f));
  // The debug build at `/utt.js` (its glue loads `utt_debug_bg.wasm` beside it): for the test
  // files whose point is what the tag holds in memory, which only its debug state shows.
  if (build === 'debug') copyFileSync(join(from, 'utt_debug.js'), join(into, 'utt.js'));
  return into;
}

/**
 * Starts the real collector on 127.0.0.1 with port 0 (it prints the address it bound), a
 * database in a fresh temporary folder, and the static folders: a snapshot of dist/, and www/.
 * Its logs are JSON lines (`UTT_LOG_FORMAT=json`, level `UTT_LOG`, `warn` unless set). `stop()`
 * fails the test if the collector died before it, did not exit 0 on SIGTERM within 10 s, or
 * logged an error (or anything that is not a JSON log line, such as a panic's message).
 * @param {{config?: string}} [options] `config`: a TOML configuration (`--config`) instead of
 *   the demo defaults
 * @returns {Promise<{url: string, dist: string, dir: string, stop: () => Promise<void>, logs: () => string}>}
 */
export async function startCollector({ config, build } = {}) {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'utt-e2e-'));
  const dist = await snapshotDist(join(dir, 'dist'), build);
  const args = ['--listen', '127.0.0.1:0', '--db', join(dir, 'utt.db'), '--static', dist, '--static', join(ROOT, 'www')];
  if (config !== undefined) {
    writeFileSync(join(dir, 'utt.toml'), config);
    args.push('--config', join(dir, 'utt.toml'));
  }
  const child = spawn(COLLECTOR, args, {
    cwd: ROOT,
    env: { ...process.env, UTT_LOG: process.env.UTT_LOG ?? 'warn', UTT_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the collector did not start in 15 s:\n${stderr}`)), 15_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      fail(new Error(`the collector exited (${code}) before listening:\n${stderr}`));
    });
  });
  return {
    url,
    dist,
    dir,
    logs: () => stderr,
    async stop() {
      const problems = [];
      if (child.exitCode !== null || child.signalCode !== null) {
        problems.push(`it exited on its own during the tests (${child.exitCode ?? child.signalCode})`);
      } else {
        // SIGTERM: the collector's graceful shutdown flushes what it acknowledged.
        child.kill('SIGTERM');
        // unref: a finished race must not keep the test process alive for the rest of the wait.
        const ended = await Promise.race([exited, new Promise((ok) => setTimeout(ok, 10_000).unref())]);
        if (!ended) {
          child.kill('SIGKILL');
          await exited;
          problems.push('it was still running 10 s after SIGTERM');
        } else if (ended.code !== 0) {
          problems.push(`it exited with ${ended.code ?? ended.signal} after SIGTERM`);
        }
      }
      rmSync(dir, { recursive: true, force: true });
      const errors = stderr.split('\n').filter((line) => {
        if (!line.trim()) return false;
        try {
          return JSON.parse(line).level === 'ERROR';
        } catch {
          return true;
        }
      });
      if (errors.length) problems.push(`it logged ${errors.length} error(s):\n${errors.join('\n')}`);
      if (problems.length) throw new Error(`the collector failed: ${problems.join('; ')}\n--- its log ---\n${stderr}`);
    },
  };
}

/**
 * The demo shop on its own origin, `http://localhost:PORT`, while the collector is on
 * `http://127.0.0.1:PORT`: two sites, as merchants deploy the tag. It serves a copy of www/ with
 * the collector's snapshot of dist/ beside it; in the copy, the pages' `collector:""` (this
 * origin) names the collector instead. `routes` are more handlers (`serveStatic()`'s
 * `'GET /path'` keys).
 * @returns {Promise<{url: string, close: () => Promise<void>}>}
 */
async function startShop(collector, routes = {}) {
  const shop = join(collector.dir, 'shop');
  cpSync(join(ROOT, 'www'), shop, { recursive: true });
  for (const f of DIST_FILES) copyFileSync(join(collector.dist, f), join(shop, f));
  for (const entry of readdirSync(shop, { recursive: true })) {
    if (!entry.endsWith('.html')) continue;
    const page = join(shop, entry);
    writeFileSync(page, readFileSync(page, 'utf8').replaceAll('collector:""', `collector:${JSON.stringify(collector.url)}`));
  }
  const server = await serveStatic({ '/': shop, ...routes });
  return { url: `http://localhost:${server.port}`, close: server.close };
}

/**
 * The browser, the collector and the shop for one test file, started once and stopped in
 * `after()`. By default the shop is on another origin than the collector (`startShop()`);
 * `sameOrigin: true` has the collector serve the shop too, as `cargo xtask demo` does.
 * `config` is the collector's TOML configuration (`startCollector()`); `routes`, handlers the
 * shop's server adds to its files (`startShop()`), so a page can carry any header. A page
 * Playwright answers itself (`route.fulfill`) will not do for that: Chromium counts it in the
 * public address space and refuses its requests to the collector on the loopback address.
 * `chromium: false` starts no browser (`browser` is then null), for tests that drive another engine.
 * `build: 'debug'` serves the debug build (utt_debug.js) as `/utt.js`: the same decisions, and a
 * state that shows the clicks, the queue and the sends (the production tag's is
 * `{ready, queued, held, consent}`).
 * @param {{sameOrigin?: boolean, config?: string, routes?: Record<string, import('node:http').RequestListener>, chromium?: boolean, build?: 'production' | 'debug'}} [options]
 */
export async function startWorld({ sameOrigin = false, config, routes, chromium = true, build = 'production' } = {}) {
  if (sameOrigin && routes) throw new Error('startWorld: routes need the shop on its own server (not sameOrigin)');
  const collector = await startCollector({ config, build });
  const shop = sameOrigin ? null : await startShop(collector, routes);
  const browser = chromium ? await launchChromium() : null;
  return {
    collector,
    browser,
    /** The shop's origin: what tests open. */
    base: shop?.url ?? collector.url,
    /** The collector's origin (the same as `base` in a same-origin world). */
    collectorUrl: collector.url,
    /** The copy of dist/ this world serves. */
    dist: collector.dist,
    api: readApi(collector.url),
    async stop() {
      // The shop and the collector are stopped (and checked) whatever happened to the browser.
      try {
        if (browser) {
          await browser.close().catch(() => {});
          await cleanChromiumProfiles();
        }
      } finally {
        // A server left open would keep the test process alive, so both close in any case.
        try {
          await shop?.close();
        } finally {
          await collector.stop();
        }
      }
    },
  };
}

/**
 * The world (`startWorld(options)`) of the test file that calls this: started in its
 * `before()`, stopped in its `after()`. The object returned is filled in before the first test runs.
 */
export function useWorld(options) {
  const world = {};
  before(async () => {
    Object.assign(world, await startWorld(options));
  });
  after(async () => {
    await world.stop?.();
  });
  return world;
}

/** The collector's read API, as a site owner's report and a partner's debug check use it. */
export function readApi(base) {
  const get = async (path) => {
    const res = await fetch(base + path);
    const body = await res.text();
    return { status: res.status, body: body ? JSON.parse(body) : null };
  };
  return {
    /** Every conversion of the demo site with its attribution under `model`. */
    async conversions(model = 'last_click') {
      const { status, body } = await get(`/v1/conversions?site=demo&model=${model}`);
      if (status !== 200) throw new Error(`GET /v1/conversions answered ${status}: ${JSON.stringify(body)}`);
      return body.conversions;
    },
    /** The stored conversions with this orderId (a correct collector has at most one). */
    async orders(orderId, model) {
      return (await this.conversions(model)).filter((c) => c.orderId === orderId);
    },
    /** What the collector has seen for a click ID: `{status: 404}` when nothing. */
    click: (id) => get(`/v1/clicks/${encodeURIComponent(id)}`),
    async metrics() {
      return (await fetch(`${base}/metrics`)).text();
    },
  };
}

/** Polls `check` until it returns something truthy, or fails with `what` after `timeout` ms. */
export async function eventually(what, check, { timeout = 10_000, interval = 150 } = {}) {
  const until = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    }
    await new Promise((ok) => setTimeout(ok, interval));
  }
}

/** Waits until the collector lists the order, then answers every stored conversion with that orderId. */
export function storedOrders(api, orderId, model) {
  return eventually(`order ${orderId} in the collector`, async () => {
    const list = await api.orders(orderId, model);
    return list.length ? list : null;
  });
}

/** A value unique to this run, so tests sharing a collector never see each other's data. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`.toUpperCase();
}

/**
 * A new visitor: a fresh browser context (its own cookies and storage) and a page that records
 * dialogs, page errors and every batch the tag posts.
 */
export async function visitor(world, options = {}) {
  const context = await world.browser.newContext(options);
  const page = await context.newPage();
  return watch(page, context);
}

/** Adds the recorders of `visitor()` to a page (also for second tabs of the same context). */
export function watch(page, context = page.context()) {
  const seen = { dialogs: [], errors: [], batches: [] };
  page.on('dialog', (d) => {
    seen.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/events') seen.batches.push(r.postData() ?? '');
  });
  return { context, page, seen };
}

/** Waits until the tag on `page` has started. */
export async function tagReady(page) {
  await page.waitForFunction(() => window.utt?.state?.().ready === true, null, { timeout: 15_000 });
}

/** The tag's state on `page` (everything in a `build: 'debug'` world; `{ready, queued, held, consent}` otherwise). */
export function tagState(page) {
  return page.evaluate(() => window.utt.state());
}

/** Waits until the tag has nothing left to send (the collector acknowledged everything). */
export async function delivered(page, timeout = 15_000) {
  await tagReady(page);
  await page.waitForFunction(
    () => {
      const s = window.utt.state();
      return s.ready && s.queued === 0 && !s.held;
    },
    null,
    { timeout }
  );
}

/**
 * Waits until the tag on `page` has decided every call made so far (a `flush` resolves once
 * the calls before it are queued, held or dropped, and the sending step has run) and the
 * collector has answered whatever it sent. Whatever the tag decided, this returns: the positive
 * signal before asserting that something did not happen.
 */
export async function settled(page, timeout = 15_000) {
  await tagReady(page);
  await page.evaluate(() => window.utt('flush'));
  await page.waitForFunction(() => window.utt.state().queued === 0, null, { timeout });
}

/** Clicks the consent banner's Accept button and waits for the tag to take it. */
export async function acceptConsent(page) {
  await page.click('#consent-accept');
  await tagReady(page);
  await page.waitForFunction(() => window.utt.state().consent === 'granted');
}

/** A new visitor (`visitor()`) who lands on `path` of the shop and accepts consent. */
export async function landWithConsent(world, path) {
  const v = await visitor(world);
  await v.page.goto(`${world.base}${path}`);
  await acceptConsent(v.page);
  return v;
}

/** Adds products to the cart from their pages, as a shopper would. */
export async function browseAndAdd(page, base, skus) {
  for (const sku of skus) {
    await page.goto(`${base}/product.html?sku=${sku}`);
    await page.click('#add-to-cart');
    await page.waitForSelector('#added a');
  }
}

/**
 * Goes through checkout (cart → checkout form → thank-you page) and returns the order the
 * shop sent, once the thank-you page has the tag's answer to the conversion call.
 */
export async function checkout(page, base, { email, promo = '' } = {}) {
  // A different shopper each time unless the test says otherwise: one email is one person to
  // the collector, which links every visitor who gives it (that is the cross-device rule).
  email ??= `${unique('shopper').toLowerCase()}@example.com`;
  await page.goto(`${base}/cart.html`);
  await page.click('#to-checkout');
  await page.waitForSelector('#place-order');
  await page.fill('#email', email);
  if (promo) await page.fill('#promo', promo);
  await Promise.all([page.waitForURL(/\/thanks\.html\?order=/), page.click('#place-order')]);
  await page.waitForSelector('#tracking[data-status]');
  return page.evaluate(() => JSON.parse(localStorage.getItem('demo_last_order')));
}

/** The tag's cookies in a context, by name. */
export async function tagCookies(context) {
  return (await context.cookies()).filter((c) => c.name.startsWith('_utt'));
}

/** The tag's localStorage keys on the page's origin. */
export function tagLocalKeys(page) {
  return page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('_utt')));
}

/** Makes sure the artifacts folder exists and returns a path in it. */
export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/**
 * Reads the tag's journey record text (`src/core/record.rs`): `1.` then the record's JSON with
 * `"{}:,` written as `'()!*` and other bytes percent-encoded. Answers the record
 * (`{visitor, session, lastSeen, written, clicks}`), or null for no text or another form.
 */
export function decodeRecord(text) {
  if (typeof text !== 'string' || !text.startsWith('1.')) return null;
  const back = { "'": '"', '(': '{', ')': '}', '!': ':', '*': ',' };
  try {
    return JSON.parse(decodeURIComponent(text.slice(2).replace(/['()!*]/g, (c) => back[c])));
  } catch {
    return null;
  }
}

/** The journey record the browser holds for the page's site: `{cookie, local}`, each decoded or null. */
export async function storedRecords(page) {
  const { cookie, local } = await page.evaluate(() => ({
    cookie: document.cookie.split('; ').find((c) => c.startsWith('_utt='))?.slice('_utt='.length) ?? null,
    local: localStorage.getItem('_utt'),
  }));
  return { cookie: decodeRecord(cookie), local: decodeRecord(local) };
}

/** One series of the collector's Prometheus text, e.g. `utt_events_total{type="event",status="accepted"}` (0 when absent). */
export function metricValue(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
