// The small WebDriver client of the cross-engine tests (`tests/engines/*.test.mjs`): Firefox ESR
// through its built-in Marionette protocol, and WebKitGTK's MiniBrowser through WebKitWebDriver
// (a W3C WebDriver server) under Xvfb. Both are Debian packages that `cargo xtask setup`
// installs; nothing here downloads anything. Both engines get the same handful of classic
// WebDriver commands (Marionette's are the same commands under `WebDriver:` names), so the
// tests are written once. This file holds no tests.
//
// Why not WebDriver BiDi or an npm client: Debian has no geckodriver, Firefox's BiDi needs a
// WebSocket client (Node 20 has none built in), and the npm WebDriver clients bring dozens of
// packages and driver downloaders for the six commands used here. Marionette is a length-prefixed
// JSON exchange over one TCP socket, and WebKitWebDriver answers plain HTTP.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's Firefox ESR (package `firefox-esr`). */
export const FIREFOX = '/usr/bin/firefox-esr';
/** WebKitGTK's WebDriver server (package `webkit2gtk-driver`), which starts MiniBrowser. */
export const WEBKIT_DRIVER = '/usr/bin/WebKitWebDriver';
/** The browser WebKitWebDriver drives (package `libwebkit2gtk-4.1-0`, a dependency of the
 * driver), in the folder of the machine's architecture (`/usr/lib/x86_64-linux-gnu/…`). */
export const MINIBROWSER =
  readdirSync('/usr/lib')
    .map((arch) => `/usr/lib/${arch}/webkit2gtk-4.1/MiniBrowser`)
    .find((path) => existsSync(path)) ?? '/usr/lib/<arch>/webkit2gtk-4.1/MiniBrowser';
/** MiniBrowser has no headless mode: it runs on a virtual X server (package `xvfb`). */
export const XVFB_RUN = '/usr/bin/xvfb-run';

/** The engines, by the name tests print. */
export const ENGINES = {
  firefox: { name: 'Firefox ESR', launch: launchFirefox, needs: [FIREFOX] },
  webkit: { name: 'WebKitGTK', launch: launchWebKit, needs: [WEBKIT_DRIVER, MINIBROWSER, XVFB_RUN] },
};

/** What is missing for an engine, as a sentence, or null when everything is there. */
export function missing(engine) {
  const absent = ENGINES[engine].needs.filter((p) => !existsSync(p));
  return absent.length ? `${absent.join(', ')} missing: run \`cargo xtask setup\` (as root) first` : null;
}

/** Polls `check` until it answers something truthy; fails with `what` after `timeout` ms. */
async function until(what, check, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await check().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/** A child process whose output is kept (for error messages) and which is killed with its group. */
function start(cmd, args, env) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let log = '';
  // UTT_BROWSER_LOG=1 shows the browsers' own output as the tests run (for looking into one).
  const keep = (d) => {
    log = (log + d).slice(-20_000);
    if (process.env.UTT_BROWSER_LOG) process.stderr.write(d);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((ok) => child.once('exit', ok));
  return {
    child,
    log: () => log,
    alive: () => child.exitCode === null && child.signalCode === null,
    /** Ends the process group the child leads (the browser's helpers, Xvfb), and waits for the child. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const signal = (s) => {
        try {
          process.kill(-child.pid, s);
        } catch {}
      };
      signal('SIGTERM');
      const gone = await Promise.race([exited.then(() => true), new Promise((ok) => setTimeout(ok, 5_000, false).unref())]);
      if (!gone) {
        signal('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * Classic WebDriver commands over a transport `send(command, params)` that answers the command's
 * `value`; `command` is the Marionette name (`WebDriver:Navigate`), which the HTTP transport maps
 * to its endpoint.
 */
function session(send, close) {
  return {
    /** Loads `url` and waits for its load event. */
    navigate: (url) => send('WebDriver:Navigate', { url }),
    /** Runs `script` (a function body) in the page; a returned promise is awaited. */
    execute: (script, ...args) => send('WebDriver:ExecuteScript', { script, args }),
    /** Every cookie the page's document can see, as WebDriver describes them. */
    cookies: () => send('WebDriver:GetCookies', {}),
    /** The handle of the current window (tab). */
    handle: () => send('WebDriver:GetWindowHandle', {}),
    /** Opens a new tab and answers its handle (the current tab stays current). */
    newTab: async () => (await send('WebDriver:NewWindow', { type: 'tab' })).handle,
    /** Makes the tab `handle` current. */
    switchTo: (handle) => send('WebDriver:SwitchToWindow', { handle }),
    /** Closes the current tab, as a visitor does. */
    closeTab: () => send('WebDriver:CloseWindow', {}),
    /** Waits until `script` answers something truthy in the page, and answers it. */
    waitFor(what, script, { timeout = 15_000 } = {}) {
      return until(what, () => this.execute(script), timeout);
    },
    close,
  };
}

/** The HTTP endpoints of the commands above, for a W3C WebDriver server. */
const HTTP = {
  'WebDriver:Navigate': ['POST', 'url'],
  'WebDriver:ExecuteScript': ['POST', 'execute/sync'],
  'WebDriver:GetCookies': ['GET', 'cookie'],
  'WebDriver:GetWindowHandle': ['GET', 'window'],
  'WebDriver:NewWindow': ['POST', 'window/new'],
  'WebDriver:SwitchToWindow': ['POST', 'window'],
  'WebDriver:CloseWindow': ['DELETE', 'window'],
};

/** A free TCP port on 127.0.0.1 (for servers that must be told theirs). */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** WebKitGTK's MiniBrowser through WebKitWebDriver, on a virtual X server. */
async function launchWebKit() {
  const port = await freePort();
  const driver = start(XVFB_RUN, ['-a', WEBKIT_DRIVER, '--host=127.0.0.1', `--port=${port}`], {});
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, path, body) => {
    const res = await fetch(base + path, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`WebKitWebDriver ${method} ${path}: ${json.value?.error}: ${json.value?.message}`);
    return json.value;
  };
  try {
    await until('WebKitWebDriver to listen', () => fetch(`${base}/status`).then((r) => r.ok), 20_000);
    const { sessionId } = await call('POST', '/session', {
      capabilities: {
        alwaysMatch: { 'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] } },
      },
    });
    const send = (command, params) => {
      const [method, path] = HTTP[command];
      return call(method, `/session/${sessionId}/${path}`, method === 'GET' ? undefined : params);
    };
    return session(send, async () => {
      await call('DELETE', `/session/${sessionId}`).catch(() => {});
      await driver.kill();
    });
  } catch (err) {
    await driver.kill();
    throw new Error(`${err.message}\n--- WebKitWebDriver's output ---\n${driver.log()}`);
  }
}

/**
 * Preferences for a test profile: Marionette on a port it picks (written to the profile's
 * `MarionetteActivePort`), and none of the browser's own traffic (updates, telemetry, remote
 * settings) on this offline machine. Marionette adds its recommended automation preferences.
 */
const FIREFOX_PREFS = {
  'marionette.port': 0,
  'app.update.disabledForTesting': true,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.reportingpolicy.firstRun': false,
  'services.settings.server': 'data:,',
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.safebrowsing.update.enabled': false,
  'extensions.update.enabled': false,
};

/** Firefox ESR, headless, in a fresh profile, through Marionette. */
async function launchFirefox() {
  const profile = mkdtempSync(join(tmpdir(), 'utt-firefox-'));
  writeFileSync(
    join(profile, 'user.js'),
    Object.entries(FIREFOX_PREFS).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join('')
  );
  const browser = start(FIREFOX, ['--marionette', '--headless', '--no-remote', '--profile', profile, 'about:blank'], {
    MOZ_CRASHREPORTER_DISABLE: '1',
  });
  const stop = async () => {
    await browser.kill();
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const portFile = join(profile, 'MarionetteActivePort');
    const port = await until(
      'Firefox to start Marionette',
      async () => {
        if (!browser.alive()) throw new Error('Firefox exited');
        return existsSync(portFile) && Number(readFileSync(portFile, 'utf8').trim());
      },
      30_000
    );
    const m = await marionette(port);
    await m.send('WebDriver:NewSession', { capabilities: { alwaysMatch: { acceptInsecureCerts: false } } });
    return session(
      (command, params) => m.send(command, params).then((r) => (r && 'value' in r ? r.value : r)),
      async () => {
        await m.send('Marionette:Quit', { flags: ['eForceQuit'] }).catch(() => {});
        m.end();
        await stop();
      }
    );
  } catch (err) {
    const log = browser.log();
    await stop();
    throw new Error(`${err.message}\n--- Firefox's output ---\n${log}`);
  }
}

/**
 * A Marionette connection: messages are `length:json`; commands `[0, id, name, params]`,
 * answers `[1, id, error, result]`. The server speaks first (its protocol level).
 */
function marionette(port) {
  return new Promise((ok, fail) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let buffer = Buffer.alloc(0);
    let greeted = false;
    let next = 1;
    const waiting = new Map();
    socket.once('error', fail);
    socket.on('close', () => {
      for (const { reject } of waiting.values()) reject(new Error('Marionette closed the connection'));
      waiting.clear();
    });
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const colon = buffer.indexOf(':');
        if (colon < 0) return;
        const length = Number(buffer.subarray(0, colon).toString());
        if (buffer.length < colon + 1 + length) return;
        const message = JSON.parse(buffer.subarray(colon + 1, colon + 1 + length).toString());
        buffer = buffer.subarray(colon + 1 + length);
        if (!greeted) {
          greeted = true;
          if (message.marionetteProtocol !== 3) fail(new Error(`Marionette protocol ${message.marionetteProtocol}, expected 3`));
          else ok({ send, end: () => socket.end() });
          continue;
        }
        const [, id, error, result] = message;
        const w = waiting.get(id);
        waiting.delete(id);
        if (!w) continue;
        if (error) w.reject(new Error(`Marionette ${w.name}: ${error.error}: ${error.message}`));
        else w.resolve(result);
      }
    });
    function send(name, params) {
      const id = next++;
      const text = JSON.stringify([0, id, name, params]);
      return new Promise((resolve, reject) => {
        waiting.set(id, { name, resolve, reject });
        socket.write(`${Buffer.byteLength(text)}:${text}`);
      });
    }
  });
}

/** Launches `engine` (a key of ENGINES); close it with `await browser.close()`. */
export function launch(engine) {
  return ENGINES[engine].launch();
}
