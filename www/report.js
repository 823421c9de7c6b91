// The merchant's partner report. The numbers are the collector's: `GET /v1/report` (rows by
// partner, totals and the per-day series, summed there with exact decimals), the orders of the
// range from `GET /v1/conversions`, and postback deliveries from `GET /v1/postbacks` (a
// collector without postbacks answers 404: the column shows "—"). This page only lays them out.
// It carries no tracking tag and renders every value as text (h() never parses markup). The
// site and read key stay in this tab's sessionStorage.

import { h, fill } from '/dom.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const STORED = 'utt-report';
const MAX_ORDERS = 10000;
const MAX_POSTBACK_PAGES = 20;
const COLORS = ['#2f6fb0', '#d9822b', '#3c9a5f', '#b0413e', '#7a5bb5', '#1f9aa5', '#b58b1f', '#c2569b'];
const NO_PARTNER_COLOR = '#8a8f98';

/** `UTC` or `UTC+01:00` for an offset in minutes east of UTC. */
function offsetLabel(minutes) {
  if (!minutes) return 'UTC';
  const abs = Math.abs(minutes);
  return `UTC${minutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** A moment as `YYYY-MM-DD HH:MM:SS` in the report's days' offset. */
function timeIn(ms, offset) {
  return `${new Date(ms + offset * 60_000).toISOString().slice(0, 19).replace('T', ' ')} ${offsetLabel(offset)}`;
}

/** The day `ms` falls on at `offset`, `YYYY-MM-DD`. */
const dayOf = (ms, offset) => new Date(ms + offset * 60_000).toISOString().slice(0, 10);

const partnerLabel = (p) => p.partnerName ?? p.partner ?? 'no partner';

// ---------------------------------------------------------------- reading the collector

class Problem extends Error {}

async function getJson(path, key) {
  let res;
  try {
    res = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {}, cache: 'no-store' });
  } catch (err) {
    throw new Problem(`The collector cannot be reached (${err.message ?? err}). Check that it is running and try again.`);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON: explained by the status below.
  }
  return { status: res.status, body };
}

/** A sentence for a refused read. */
function refusal({ status, body }, site, key) {
  const said = body && typeof body.error === 'string' ? body.error : '';
  if (status === 401) return `The read key is ${key ? 'wrong' : 'missing'} for site “${site}”.`;
  if (status === 404 && body?.field === 'site') return `The collector has no site “${site}”.`;
  if (status === 400) return `The collector refused the ${body?.field ?? 'request'}: ${said}.`;
  if (status === 503) return 'The collector is unavailable just now; try again in a moment.';
  return `The collector answered ${status}${said ? `: ${said}` : ''}.`;
}

async function read(site, key, params) {
  const q = new URLSearchParams({ site, ...params });
  const report = await getJson(`/v1/report?${q}`, key);
  if (report.status !== 200) throw new Problem(refusal(report, site, key));
  const r = report.body;
  const since = new URLSearchParams({ site, since: String(r.fromMs), model: params.model, limit: String(MAX_ORDERS) });
  const conv = await getJson(`/v1/conversions?${since}`, key);
  if (conv.status !== 200) throw new Problem(refusal(conv, site, key));
  const all = conv.body.conversions;
  const orders = all.filter((c) => c.at < r.toMs).sort((a, b) => b.at - a.at || (a.orderId < b.orderId ? -1 : 1));
  const truncated = all.length === MAX_ORDERS && all.every((c) => c.at < r.toMs);
  // Postback deliveries, when this collector delivers them (an older one answers 404).
  const pb = await deliveries(site, key, r.fromMs);
  let postbacks = null;
  let postbackNote = '';
  if (pb.refused?.status === 404) {
    // No postbacks on this collector: the column shows "—".
  } else if (pb.refused) {
    postbackNote = `Postback status unavailable: ${refusal(pb.refused, site, key)}`;
  } else {
    const inRange = new Set(orders.map((o) => o.orderId));
    postbacks = pb.list.filter((p) => inRange.has(p.orderId));
    // The partners the site posts back to (a collector that does not say: every partner may be).
    postbacks.partners = pb.partners;
    if (!pb.complete) {
      postbackNote = `Postbacks: only the first ${pb.list.length} deliveries planned since ${timeIn(r.fromMs, r.offsetMinutes)} are counted.`;
    }
  }
  return { report: r, orders, truncated, postbacks, postbackNote };
}

/**
 * The site's postback deliveries planned since `since` (ms): `GET /v1/postbacks`, oldest first,
 * page after page. A delivery is planned once its order has arrived, so those of the range's
 * orders are all planned after the range began; but an order's refund may be posted back months
 * later, after thousands of other deliveries, so one page is not enough. Each next page starts at
 * the last one's planning time (inclusive: deliveries planned in the same millisecond across the
 * boundary are not lost; the repeated ones are dropped by ID). Up to MAX_POSTBACK_PAGES pages.
 */
async function deliveries(site, key, since) {
  const byId = new Map();
  let partners = null;
  let from = since;
  for (let n = 0; n < MAX_POSTBACK_PAGES; n++) {
    const q = new URLSearchParams({ site, since: String(from), limit: String(MAX_ORDERS) });
    const page = await getJson(`/v1/postbacks?${q}`, key);
    if (page.status !== 200) return { refused: page };
    const rows = page.body.postbacks;
    if (Array.isArray(page.body.partners)) partners = page.body.partners;
    for (const p of rows) byId.set(p.id, p);
    if (rows.length < MAX_ORDERS) return { list: [...byId.values()], partners, complete: true };
    const last = rows.at(-1).createdAt;
    // A whole page planned within one millisecond: the API cannot page past it.
    if (last === from) break;
    from = last;
  }
  return { list: [...byId.values()], partners, complete: false };
}

// ---------------------------------------------------------------- rows (the table and the CSV)

const PARTNER_HEAD = ['Partner', 'Partner ID', 'Clicks', 'Conversions', 'Currency', 'Gross', 'Adjustments', 'Net', 'Postbacks'];
const PARTNER_NUM = new Set([2, 3, 5, 6, 7]);

function postbackCell(postbacks, partner, total) {
  if (postbacks === null || (!total && partner === null)) return '—';
  if (!total && postbacks.partners && !postbacks.partners.includes(partner)) return 'no postback';
  const n = { delivered: 0, pending: 0, failed: 0 };
  for (const p of postbacks) if (total || p.partner === partner) n[p.status] = (n[p.status] ?? 0) + 1;
  return `${n.delivered} delivered, ${n.pending} pending, ${n.failed} failed`;
}

/** The by-partner rows: one per partner and currency, then the totals. */
function partnerRows({ report, postbacks }) {
  const rows = [];
  const add = (p, kind) => {
    const total = kind === 'total';
    const money = p.money.length ? p.money : [null];
    money.forEach((m, i) => {
      rows.push({
        kind,
        partner: p.partner,
        cells: [
          total ? 'Total' : partnerLabel(p),
          total ? '' : (p.partner ?? ''),
          i === 0 ? String(p.clicks) : '',
          String(m?.conversions ?? 0),
          m?.currency ?? '',
          m?.gross ?? '',
          m?.adjustments ?? '',
          m?.net ?? '',
          i === 0 ? postbackCell(postbacks, p.partner, total) : '',
        ],
      });
    });
  };
  for (const p of report.partners) add(p, 'partner');
  add(report.totals, 'total');
  return rows;
}

const ORDER_HEAD = ['Order', 'Time', 'Partner', 'Partner ID', 'Credit', 'Promo code', 'Currency', 'Gross', 'Adjustments', 'Net', 'Confirmed', 'Touchpoints'];
const ORDER_NUM = new Set([7, 8, 9]);

function credit(a) {
  if (!a) return 'none';
  if (a.model === 'promo_code') return 'promo code';
  return `${a.model} ${a.network} ${a.clickId}${a.crossDevice ? ' (other device)' : ''}`;
}

function orderRows({ orders, report }) {
  const offset = report.offsetMinutes;
  return orders.map((c) => {
    const a = c.attribution;
    const confirmed = c.confirmed
      ? (c.browserAmount && c.browserAmount !== c.gross ? `yes (browser: ${c.browserAmount})` : 'yes')
      : 'no';
    const touches = c.touchpoints.map((t) =>
      `${partnerLabel(t)}: ${t.network} ${t.clickId} at ${timeIn(t.at, offset)}${t.crossDevice ? ' (other device)' : ''}`);
    return {
      order: c.orderId,
      partner: a?.partner ?? null,
      cells: [
        c.orderId,
        timeIn(c.at, offset),
        a ? partnerLabel(a) : 'no partner',
        a?.partner ?? '',
        credit(a),
        c.promoCode ?? '',
        c.currency ?? '',
        c.gross ?? c.amount ?? '',
        c.adjustmentTotal ?? '',
        c.net ?? '',
        confirmed,
        touches.join('; '),
      ],
    };
  });
}

function table(id, head, numeric, rows, rowProps) {
  return h('table', { id },
    h('thead', {}, h('tr', {}, head.map((t, i) => h('th', { className: numeric.has(i) ? 'num' : '' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', rowProps(r), r.cells.map((c, i) => h('td', { className: numeric.has(i) ? 'num' : '' }, c))))));
}

// ---------------------------------------------------------------- CSV

/**
 * One CSV cell (RFC 4180 quoting). A cell a spreadsheet would run as a formula (starting with
 * = + - @, a tab or a carriage return) gets a leading apostrophe, unless it is a plain number
 * such as a refund's -10.00.
 */
export function csvCell(value) {
  let s = String(value);
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** A CSV file: a byte-order mark (so spreadsheets read UTF-8), CRLF line ends. */
const csv = (head, rows) => `\ufeff${[head, ...rows.map((r) => r.cells)].map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// ---------------------------------------------------------------- the chart (inline SVG)

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const W = 900;
const H = 220;
const M = { left: 96, right: 16, top: 12, bottom: 28 };

function axes(days, top, bottom, format) {
  const g = svg('g', { class: 'axes' });
  const plotW = W - M.left - M.right;
  g.append(svg('line', { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, stroke: '#999' }));
  g.append(svg('text', { x: M.left - 6, y: M.top + 10, 'text-anchor': 'end', 'font-size': 11 }, format(top)));
  g.append(svg('text', { x: M.left - 6, y: H - M.bottom, 'text-anchor': 'end', 'font-size': 11 }, format(bottom)));
  const marks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])];
  for (const i of marks) {
    // The first and last labels end at the plot's edges, so none is cut off.
    const [x, anchor] = i === 0 ? [M.left, 'start'] : i === days.length - 1 ? [W - M.right, 'end'] : [M.left + (i + 0.5) * (plotW / days.length), 'middle'];
    g.append(svg('text', { x, y: H - 8, 'text-anchor': anchor, 'font-size': 11 }, days[i]));
  }
  return g;
}

function colorOf(report) {
  const colors = new Map();
  report.partners.forEach((p, i) => colors.set(p.partner, p.partner === null ? NO_PARTNER_COLOR : COLORS[i % COLORS.length]));
  return (id) => colors.get(id) ?? NO_PARTNER_COLOR;
}

/** Conversions per day, a bar per partner stacked in the table's order. */
function conversionChart(report, color) {
  const { days, series } = report;
  const perDay = new Map(days.map((d) => [d, 0]));
  for (const p of series) perDay.set(p.day, perDay.get(p.day) + p.conversions);
  const max = Math.max(1, ...perDay.values());
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const band = plotW / days.length;
  const chart = svg('svg', { id: 'chart-conversions', viewBox: `0 0 ${W} ${H}`, role: 'img', width: '100%' },
    svg('title', {}, 'Conversions per day and partner'), axes(days, max, 0, String));
  const stacked = new Map(days.map((d) => [d, 0]));
  for (const p of series) {
    if (!p.conversions) continue;
    const i = days.indexOf(p.day);
    const below = stacked.get(p.day);
    stacked.set(p.day, below + p.conversions);
    const y = M.top + plotH * (1 - (below + p.conversions) / max);
    chart.append(svg('rect', {
      class: 'bar', x: M.left + i * band + band * 0.15, y, width: band * 0.7, height: plotH * (p.conversions / max),
      fill: color(p.partner), 'data-day': p.day, 'data-partner': p.partner ?? '', 'data-value': p.conversions,
    }, svg('title', {}, `${p.day} · ${partnerLabel(p)}: ${p.conversions} conversion(s)`)));
  }
  return chart;
}

/**
 * Net revenue per day in one currency, a line per partner with a point on every day. The
 * amounts are the collector's exact text (in data-value and the tooltips); Number() only places
 * them on the screen.
 */
function revenueChart(report, color, currency) {
  const { days, series } = report;
  const lines = report.partners
    .filter((p) => p.money.some((m) => m.currency === currency))
    .map((p) => {
      const net = new Map(days.map((d) => [d, '0']));
      for (const s of series) {
        const m = s.partner === p.partner && s.money.find((x) => x.currency === currency);
        if (m) net.set(s.day, m.net);
      }
      return { p, net };
    });
  const values = lines.flatMap((l) => [...l.net.values()].map(Number));
  const top = Math.max(0, ...values);
  const bottom = Math.min(0, ...values);
  const span = top - bottom || 1;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const band = plotW / days.length;
  const yOf = (v) => M.top + plotH * (1 - (Number(v) - bottom) / span);
  const chart = svg('svg', { id: 'chart-revenue', viewBox: `0 0 ${W} ${H}`, role: 'img', width: '100%', 'data-currency': currency },
    svg('title', {}, `Net revenue per day and partner (${currency})`),
    axes(days, top, bottom, (v) => `${v} ${currency}`));
  for (const { p, net } of lines) {
    const pts = days.map((d, i) => [M.left + (i + 0.5) * band, yOf(net.get(d))]);
    chart.append(svg('polyline', { points: pts.map((xy) => xy.join(',')).join(' '), fill: 'none', stroke: color(p.partner), 'stroke-width': 2 }));
    days.forEach((d, i) => chart.append(svg('circle', {
      class: 'point', cx: pts[i][0], cy: pts[i][1], r: 3.5, fill: color(p.partner),
      'data-day': d, 'data-partner': p.partner ?? '', 'data-value': net.get(d),
    }, svg('title', {}, `${d} · ${partnerLabel(p)}: ${net.get(d)} ${currency} net`))));
  }
  return chart;
}

function drawChart(data, currency) {
  const { report } = data;
  const color = colorOf(report);
  fill($('legend'), report.partners.map((p) =>
    h('span', { className: 'legend-item' }, h('span', { className: 'swatch', style: `background:${color(p.partner)}` }), partnerLabel(p))));
  const currencies = report.totals.money.map((m) => m.currency).filter((c) => c !== null);
  const chosen = currencies.includes(currency) ? currency : currencies[0];
  const picker = currencies.length > 1
    ? h('label', {}, 'Revenue in ', h('select', { id: 'chart-currency', onchange: (e) => drawChart(data, e.target.value) },
      currencies.map((c) => h('option', { value: c, selected: c === chosen }, c))))
    : null;
  fill($('chart'),
    h('h3', {}, 'Conversions'), conversionChart(report, color),
    h('h3', {}, chosen ? `Net revenue (${chosen})` : 'Net revenue'), picker,
    chosen ? revenueChart(report, color, chosen) : h('p', { className: 'muted' }, 'No revenue in this range.'));
}

// ---------------------------------------------------------------- the page

let current = null;

function say(text, kind = '') {
  fill($('status'), text ? h('p', { className: `notice ${kind}` }, text) : null);
}

function render(data) {
  const { report } = data;
  const prows = partnerRows(data);
  const orows = orderRows(data);
  fill($('partners'),
    table('partners-table', PARTNER_HEAD, PARTNER_NUM, prows, (r) => ({
      className: r.kind, dataset: { partner: r.partner ?? '' },
    })),
    data.postbackNote ? h('p', { className: 'muted' }, data.postbackNote) : null);
  drawChart(data);
  fill($('orders'), orows.length
    ? table('orders-table', ORDER_HEAD, ORDER_NUM, orows, (r) => ({ className: 'order', dataset: { order: r.order, partner: r.partner ?? '' } }))
    : h('p', { className: 'muted' }, 'No orders in this range.'),
  data.truncated ? h('p', { className: 'muted' }, `Only the first ${MAX_ORDERS} orders of the range are listed; the rows above count them all, but their postbacks only those of the listed orders.`) : null);
  const name = (what) => `${what}-${data.site.replace(/[^A-Za-z0-9_-]/g, '_')}-${report.from}-to-${report.to}.csv`;
  $('csv-partners').onclick = () => download(name('partners'), csv(PARTNER_HEAD, prows));
  $('csv-orders').onclick = () => download(name('orders'), csv(ORDER_HEAD, orows));
  $('report').hidden = false;
  say(`${data.site}: ${report.from} to ${report.to} (${offsetLabel(report.offsetMinutes)} days), model ${$('model').selectedOptions[0].textContent.toLowerCase()}: ` +
    `${report.totals.clicks} click(s), ${report.totals.conversions} conversion(s).`, 'ok');
}

async function show() {
  const site = $('site').value.trim();
  const key = $('key').value;
  if (!site) {
    say('Give the site ID (the id of its [[sites]] entry in utt.toml).', 'bad');
    return;
  }
  if (!/^[\x21-\x7e]*$/.test(key)) {
    say('A read key is made of visible ASCII characters, without spaces.', 'bad');
    return;
  }
  document.body.dataset.state = 'loading';
  say('Loading…');
  const params = { from: $('from').value, to: $('to').value, offset: $('tz').value, model: $('model').value };
  try {
    current = { site, ...(await read(site, key, params)) };
  } catch (err) {
    current = null;
    $('report').hidden = true;
    say(err instanceof Problem ? err.message : `Something went wrong: ${err.message ?? err}`, 'bad');
    document.body.dataset.state = 'error';
    return;
  }
  sessionStorage.setItem(STORED, JSON.stringify({ site, key }));
  render(current);
  document.body.dataset.state = 'ok';
  document.body.dataset.loaded = String(current.orders.length);
}

/** The last 30 days up to today, in the chosen offset. */
function defaultDates() {
  const offset = Number($('tz').value);
  const today = Date.now();
  $('to').value = dayOf(today, offset);
  $('from').value = dayOf(today - 29 * 86_400_000, offset);
}

function init() {
  const local = -new Date().getTimezoneOffset();
  const zones = [[0, 'UTC']];
  if (local !== 0) zones.push([local, `${offsetLabel(local)} (this browser now)`]);
  fill($('tz'), zones.map(([v, t]) => h('option', { value: String(v) }, t)));
  defaultDates();
  let stored = {};
  try {
    stored = JSON.parse(sessionStorage.getItem(STORED) ?? '{}') ?? {};
  } catch {
    // A damaged entry: start empty.
  }
  const fromUrl = new URLSearchParams(location.search).get('site');
  $('site').value = fromUrl ?? stored.site ?? '';
  $('key').value = stored.key ?? '';
  $('access').addEventListener('submit', (e) => {
    e.preventDefault();
    show();
  });
  for (const id of ['model', 'tz']) $(id).addEventListener('change', () => current && show());
  document.body.dataset.ready = '';
  if ($('site').value) show();
}

init();
