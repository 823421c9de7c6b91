// Helpers for the browser tests (`node --test tests/browser/`): launch the machine's Chromium
// through playwright-core, serve folders over http on 127.0.0.1, and clean up what Chromium
// leaves in the temporary folder. Test files are named `*.test.mjs`; this file holds no tests.

import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The repository root, for paths such as `join(ROOT, 'dist')`. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Debian's Chromium, installed by `cargo xtask setup`; nothing ever downloads a browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Flags that make headless Chromium work here as root, offline and without background traffic. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Content types by extension; wasm must be `application/wasm` for `instantiateStreaming`. */
export const MIME_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.ts': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** The private temporary folder of this test process's browsers, made on the first launch. */
let browserTmp = null;
/** `TMPDIR` as it was before the first launch, restored by the cleanup. */
let outerTmp;

/**
 * Launches headless Chromium from `/usr/bin/chromium` with the flags above. Playwright's profile
 * and Chromium's own temporary folders go to a private folder under `$TMPDIR`, so that
 * `cleanChromiumProfiles()` removes exactly this process's leftovers and never another run's.
 * Close the browser with `await browser.close()`, then call `cleanChromiumProfiles()`.
 * @param {import('playwright-core').LaunchOptions} [options] merged over the defaults (`args` are appended)
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launchChromium(options = {}) {
  if (browserTmp === null) {
    outerTmp = process.env.TMPDIR;
    browserTmp = mkdtempSync(join(tmpdir(), 'utt-browser-'));
    // Playwright makes its profile folder in os.tmpdir(), which reads TMPDIR on every call.
    process.env.TMPDIR = browserTmp;
    process.once('exit', () => cleanupSync());
  }
  const { args = [], env = process.env, ...rest } = options;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    ...rest,
    env: { ...env, TMPDIR: browserTmp },
    args: [...CHROMIUM_ARGS, ...args],
  });
  // Open until its close() has returned: Playwright removes the browser's profile folder itself
  // after the process ends, and removing the whole folder during that failed with ENOTEMPTY.
  launched.add(browser);
  const close = browser.close.bind(browser);
  browser.close = async (...args) => {
    try {
      return await close(...args);
    } finally {
      launched.delete(browser);
    }
  };
  return browser;
}

/** The browsers this process launched and has not closed: their folders are not removed under them. */
const launched = new Set();

/**
 * Serves folders over http on 127.0.0.1 on a free port, with correct content types and no caching.
 * Longest prefix wins: `{ '/': join(ROOT, 'www'), '/dist/': join(ROOT, 'dist') }`. A request for a
 * folder serves its `index.html`. Extra routes take precedence: `{ 'POST /collect': (req, res) => ... }`
 * keys are `METHOD /path` (exact path) and values are Node request handlers.
 * @param {Record<string, string | import('node:http').RequestListener>} routes URL prefix → folder, or `METHOD /path` → handler
 * @param {{tls?: {key: string | Buffer, cert: string | Buffer}}} [options] `tls`: serve https with this key and
 *   certificate (e.g. from `selfSignedCertificate()`) instead of http
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>} `url` has no trailing slash
 */
export async function serveStatic(routes, { tls } = {}) {
  const folders = Object.entries(routes)
    .filter(([, target]) => typeof target === 'string')
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const handlers = new Map(Object.entries(routes).filter(([, target]) => typeof target === 'function'));

  const listener = async (req, res) => {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const handler = handlers.get(`${req.method} ${url.pathname}`);
      if (handler) return await handler(req, res);
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
      const file = await resolveFile(folders, decodeURIComponent(url.pathname));
      if (!file) return send(res, 404, 'not found');
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': MIME_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'no-cache, no-store, must-revalidate',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      send(res, 500, String(err?.stack ?? err));
    }
  };
  const server = tls ? createTlsServer(tls, listener) : createServer(listener);
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const { port } = server.address();
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((ok) => {
        server.closeAllConnections?.();
        server.close(() => ok());
      }),
  };
}

/**
 * A throwaway self-signed certificate for `names` (DNS names), made by the `openssl` command
 * line in a temporary folder: for https test servers, which Chromium accepts when launched
 * with `--ignore-certificate-errors`.
 * @param {string[]} names
 * @returns {{key: Buffer, cert: Buffer}}
 */
export function selfSignedCertificate(names) {
  const dir = mkdtempSync(join(tmpdir(), 'utt-cert-'));
  try {
    const out = spawnSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ],
      { encoding: 'utf8' }
    );
    if (out.status !== 0) throw new Error(`openssl could not make a test certificate (${out.error ?? out.stderr})`);
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Finds the file a path names under the longest matching prefix, refusing to leave its folder. */
async function resolveFile(folders, pathname) {
  for (const [prefix, dir] of folders) {
    if (!pathname.startsWith(prefix)) continue;
    let file = normalize(join(dir, pathname.slice(prefix.length)));
    if (file !== dir && !file.startsWith(dir + sep)) return null;
    const info = await stat(file).catch(() => null);
    if (info?.isDirectory()) {
      file = join(file, 'index.html');
      if (!(await stat(file).catch(() => null))?.isFile()) return null;
    } else if (!info?.isFile()) {
      return null;
    }
    return file;
  }
  return null;
}

function send(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
  res.end(text);
}

/**
 * A stand-in collector's `POST /v1/events` route for `serveStatic`: each batch is parsed and
 * handed to `onBatch`, then every event is answered accepted, unless `onBatch` returns `false`
 * (the request is then left unanswered).
 * @param {(batch: any) => boolean | void} [onBatch]
 * @returns {import('node:http').RequestListener}
 */
export function acceptingCollector(onBatch = () => {}) {
  return (req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const batch = JSON.parse(body);
      if (onBatch(batch) === false) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ results: batch.events.map((e) => ({ id: e.id, status: 'accepted' })) }));
    });
  };
}

/**
 * Opens `url` in a fresh context of `browser` (its own cookies and storage), records the page's
 * uncaught errors, and waits until `ready` (run in the page) answers something truthy.
 * @param {import('playwright-core').Browser} browser
 * @param {string} url
 * @param {() => unknown} ready
 * @returns {Promise<{p: import('playwright-core').Page, context: import('playwright-core').BrowserContext, errors: string[]}>}
 */
export async function openPage(browser, url, ready) {
  const context = await browser.newContext();
  const p = await context.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  await p.goto(url);
  await p.waitForFunction(ready);
  return { p, context, errors };
}

/**
 * What a test file's `after()` does: closes its browser and server, removes its site folder and
 * the browsers' leftovers. Each may be missing (a `before()` that failed half-way).
 */
export async function stopAll({ browser, server, site }) {
  await browser?.close();
  await server?.close();
  if (site) rmSync(site, { recursive: true, force: true });
  await cleanChromiumProfiles();
}

/**
 * Removes the profile and temporary folders of the browsers this process launched.
 * Call it after `browser.close()`, e.g. in an `after()` hook; it also runs when the process exits.
 * @returns {Promise<void>}
 */
export async function cleanChromiumProfiles() {
  // A file with two worlds stops them together: the folder goes with the last browser, never
  // from under one still writing its profile (that failed with ENOTEMPTY).
  if (launched.size === 0) cleanupSync();
}

function cleanupSync() {
  if (browserTmp === null) return;
  // A closed browser's helper processes may still be writing for a moment: retried, not failed.
  rmSync(browserTmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  browserTmp = null;
  if (outerTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = outerTmp;
}
