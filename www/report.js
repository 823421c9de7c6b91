// The site-owner report: conversions from the collector's read API with their partner credit,
// touchpoints and promo codes. The report page carries no tracking tag (it is an admin page)
// and renders every value as text.

import { h, fill, when } from '/dom.js';

const $ = (id) => document.getElementById(id);

/** Parses a decimal amount string into integer hundredths, so totals are exact. */
function cents(amount) {
  const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(String(amount ?? '').trim());
  if (!m) return null;
  const n = Number(m[2]) * 100 + Number((m[3] ?? '').padEnd(2, '0'));
  return m[1] ? -n : n;
}

function money(hundredths, currency) {
  const abs = Math.abs(hundredths);
  return `${hundredths < 0 ? '-' : ''}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')} ${currency}`;
}

/** Who a conversion credits, as one readable label. */
function partnerOf(c) {
  const a = c.attribution;
  if (!a) return 'no partner';
  if (a.model === 'promo_code') return `promo code partner ${a.partner}`;
  return `${a.network} click ${a.clickId}`;
}

function credit(c) {
  const a = c.attribution;
  if (!a) return h('span', { className: 'muted' }, 'no partner (direct)');
  if (a.model === 'promo_code') {
    return h('div', {}, h('strong', {}, a.partner), h('div', { className: 'muted' }, `via promo code ${c.promo?.code ?? c.promoCode ?? ''}`));
  }
  return h('div', {},
    h('strong', {}, a.network), ' ', h('code', {}, a.clickId),
    h('div', { className: 'muted' }, `${a.param}, clicked ${when(a.clickAt)}`),
    a.crossDevice ? h('span', { className: 'badge warn' }, 'cross-device') : null);
}

async function load() {
  const model = $('model').value;
  fill($('loaded'), 'loading…');
  let body;
  try {
    const res = await fetch(`/v1/conversions?site=demo&model=${encodeURIComponent(model)}`);
    body = await res.json();
    if (!res.ok) throw new Error(body?.error ?? `HTTP ${res.status}`);
  } catch (err) {
    fill($('loaded'), `Could not read the collector: ${err.message ?? err}`);
    return;
  }
  const list = [...body.conversions].sort((a, b) => b.at - a.at);
  fill($('loaded'), `${list.length} conversion(s), model ${body.model}, read ${when(Date.now())}`);

  const byPartner = new Map();
  for (const c of list) {
    const key = c.attribution ? (c.attribution.model === 'promo_code' ? c.attribution.partner : `${c.attribution.network}: ${c.attribution.clickId}`) : 'no partner';
    const row = byPartner.get(key) ?? { orders: 0, totals: new Map() };
    row.orders += 1;
    const n = cents(c.amount);
    if (n !== null) row.totals.set(c.currency ?? '?', (row.totals.get(c.currency ?? '?') ?? 0) + n);
    byPartner.set(key, row);
  }
  fill($('partners'), byPartner.size
    ? h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Partner (credited click or promo code)'), h('th', { className: 'num' }, 'Orders'), h('th', { className: 'num' }, 'Revenue'))),
        h('tbody', {}, [...byPartner].map(([k, r]) =>
          h('tr', {}, h('td', {}, k), h('td', { className: 'num' }, String(r.orders)),
            h('td', { className: 'num' }, [...r.totals].map(([cur, n]) => money(n, cur)).join(', '))))))
    : h('p', { className: 'muted' }, 'No conversions yet.'));

  fill($('orders'), list.length
    ? h('table', { id: 'orders-table' },
        h('thead', {}, h('tr', {}, ['Order', 'When', 'Amount', 'Promo code', 'Credit', 'Model', 'Touchpoints'].map((t) => h('th', {}, t)))),
        h('tbody', {}, list.map((c) =>
          h('tr', { className: 'order', dataset: { order: c.orderId, partner: partnerOf(c) } },
            h('td', {}, h('code', {}, c.orderId), c.customerStatus ? h('div', { className: 'muted' }, c.customerStatus) : null),
            h('td', {}, when(c.at)),
            h('td', { className: 'num' }, c.amount !== null && c.amount !== undefined ? `${c.amount} ${c.currency ?? ''}` : '—',
              c.discount ? h('div', { className: 'muted' }, `discount ${c.discount}`) : null),
            h('td', {}, c.promoCode ?? '—', c.promo ? h('div', { className: 'muted' }, `owned by ${c.promo.partner}`) : null),
            h('td', {}, credit(c)),
            h('td', {}, c.attribution?.model ?? '—'),
            h('td', {}, c.touchpoints.length
              ? h('ol', {}, c.touchpoints.map((t) => h('li', {}, `${t.network} `, h('code', {}, t.clickId), ` · ${when(t.at)} · ${t.path}`, t.crossDevice ? ' · other device' : '')))
              : h('span', { className: 'muted' }, 'none'))))))
    : h('p', { className: 'muted' }, 'No conversions yet. Buy something in the shop.'));
  document.body.dataset.loaded = String(list.length);
}

$('model').addEventListener('change', load);
$('reload').addEventListener('click', load);
load();
