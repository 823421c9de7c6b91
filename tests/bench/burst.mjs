// `cargo xtask bench-burst [--runs N]`: a page that calls `utt('event', 'burst', {i})` 1,000
// times in one task, measured in headless Chromium against the real collector on another
// origin (the e2e world of tests/e2e/support.mjs: shop on http://localhost, collector on
// http://127.0.0.1, its debug build). A measurement, not a test: it prints what it saw and fails
// only when it cannot measure.
//
// Per run, in a fresh browser context with consent granted:
// - calls: main-thread time of the 1,000 calls (`performance.now()` around the loop);
// - task: time until the page's next task runs (a MessageChannel message posted after the loop):
//   the loop plus the microtasks the calls queued, where the tag does each call's work, so how
//   long the page could not answer input;
// - durable: time until every promise the calls returned has resolved (each resolves once its
//   event is durably queued);
// - _utt_q: the UTF-8 bytes of the tag's localStorage queue at that moment, and how many events
//   the tag's queue held and how many calls it answered "dropped" (budget used up);
// - stored: time until the collector has stored all of them, or until the tag has nothing left
//   to send (then fewer arrived), at most 60 s. The count is the collector's
//   `utt_events_total{type="event",status="accepted"}` (GET /metrics: custom events stored),
//   polled every 50 ms, so these times are to about 50 ms.

import { parseArgs } from 'node:util';
import { startWorld, landWithConsent, delivered } from '../e2e/support.mjs';

const CALLS = 1000;
const STORE_TIMEOUT_MS = 60_000;
const POLL_MS = 50;

/** The number of runs from `--runs N` (default 3), or exits with the reason. */
function runsWanted() {
  try {
    const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
    const runs = Number(values.runs);
    if (Number.isInteger(runs) && runs >= 1) return runs;
    throw new Error(`--runs must be a whole number of at least 1, not ${JSON.stringify(values.runs)}`);
  } catch (err) {
    console.error(`bench-burst: ${err.message} (usage: cargo xtask bench-burst [--runs N])`);
    process.exit(2);
  }
}
const runs = runsWanted();

/** Custom events the collector has stored so far. */
async function storedCustomEvents(world) {
  const m = /^utt_events_total\{type="event",status="accepted"\} (\d+)$/m.exec(await world.api.metrics());
  return m ? Number(m[1]) : 0;
}

/** Milliseconds since the Unix epoch, to the fraction, in this process and in the page alike. */
const now = () => performance.timeOrigin + performance.now();

async function run(world) {
  const { context, page } = await landWithConsent(world, '/');
  // The landing's page view and the consent are sent and stored first, so the queue starts empty.
  await delivered(page);
  const before = await storedCustomEvents(world);

  const burst = await page.evaluate(async (calls) => {
    const t0 = performance.now();
    const pending = [];
    for (let i = 0; i < calls; i++) pending.push(window.utt('event', 'burst', { i }));
    const t1 = performance.now();
    const nextTask = new Promise((ok) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => ok(performance.now());
      channel.port2.postMessage(0);
    });
    const answers = await Promise.all(pending);
    const t2 = performance.now();
    const t3 = await nextTask;
    const queue = localStorage.getItem('_utt_q') ?? '';
    const state = window.utt.state();
    const statuses = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    return {
      startedAt: performance.timeOrigin + t0,
      callsMs: t1 - t0,
      taskMs: t3 - t0,
      durableMs: t2 - t0,
      queueBytes: new TextEncoder().encode(queue).length,
      queued: state.queue.length,
      dropped: state.dropped ?? 0,
      statuses,
    };
  }, CALLS);

  let arrived = 0;
  let storedAt = null;
  for (const until = burst.startedAt + STORE_TIMEOUT_MS; ; ) {
    const count = (await storedCustomEvents(world)) - before;
    if (count > arrived) [arrived, storedAt] = [count, now()];
    if (arrived >= CALLS) break;
    // Nothing left in the tag's queue: whatever has not arrived never will. The collector counts
    // an event before it answers the batch, so this count is already final.
    const idle = await page.evaluate(() => window.utt.state().queue.length === 0);
    if (idle) {
      arrived = Math.max(arrived, (await storedCustomEvents(world)) - before);
      break;
    }
    if (now() > until) break;
    await new Promise((ok) => setTimeout(ok, POLL_MS));
  }
  await context.close();
  return { ...burst, arrived, storedMs: storedAt === null ? null : storedAt - burst.startedAt };
}

const median = (xs) => {
  const s = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const ms = (x) => (x === null ? '-' : x.toFixed(1));

const world = await startWorld();
try {
  console.log(
    `bench-burst: ${CALLS} × utt('event', 'burst', {i}) in one task; shop ${world.base}, ` +
      `collector ${world.collectorUrl} (debug build); headless Chromium; ${runs} run(s)`
  );
  const columns = ['run', 'calls ms', 'task ms', 'durable ms', '_utt_q bytes', 'queued', 'dropped', 'stored', 'stored after ms'];
  console.log(columns.join('\t'));
  const results = [];
  for (let i = 1; i <= runs; i++) {
    const r = await run(world);
    results.push(r);
    const answers = Object.entries(r.statuses).map(([s, n]) => `${n} ${s}`).join(', ');
    const stored = `${r.arrived}/${CALLS}${r.arrived < CALLS ? ' INCOMPLETE' : ''}`;
    console.log(
      [i, ms(r.callsMs), ms(r.taskMs), ms(r.durableMs), r.queueBytes, r.queued, r.dropped, stored, ms(r.storedMs)].join('\t') +
        `\t(answers: ${answers})`
    );
  }
  const pick = (k) => median(results.map((r) => r[k]));
  console.log(
    ['median', ms(pick('callsMs')), ms(pick('taskMs')), ms(pick('durableMs')), pick('queueBytes'), pick('queued'), pick('dropped'), `${pick('arrived')}/${CALLS}`, ms(pick('storedMs'))].join('\t')
  );
  const short = results.filter((r) => r.arrived < CALLS);
  if (short.length) {
    console.log(
      `note: in ${short.length} of ${runs} run(s) the collector stored fewer than ${CALLS} ` +
        `(stored after ms is then the time of the last arrival, within ${STORE_TIMEOUT_MS / 1000} s)`
    );
  }
} finally {
  await world.stop();
}
