// Building DOM nodes without ever parsing data as HTML. Every page of the demo renders through
// `h()`, which turns strings into text nodes, so a hostile click ID, product name or collector
// answer is shown as text and can never become markup or script.

/**
 * Makes an element. `props` sets properties (`className`, `href`, `type`, ...) and `on*`
 * listeners; `children` are nodes, strings (always text), numbers, or arrays of those. `null`,
 * `undefined` and `false` children are skipped, so conditions can be written inline.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null) continue;
    // The one door through which data could become markup stays shut.
    if (key === 'innerHTML' || key === 'outerHTML') throw new Error(`h(): ${key} is not allowed`);
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el) {
      el[key] = value;
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `el` with `children` (same rules as `h`). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A date and time in the visitor's locale, or a dash for a missing value. */
export function when(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "in 29 days", "3 minutes ago": how far `ms` is from now, for expiries and ages. */
export function relative(ms, now = Date.now()) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '';
  const diff = ms - now;
  const abs = Math.abs(diff);
  const units = [
    ['day', 86_400_000],
    ['hour', 3_600_000],
    ['minute', 60_000],
    ['second', 1000],
  ];
  const [unit, size] = units.find(([, size]) => abs >= size) ?? units[units.length - 1];
  const n = Math.round(abs / size);
  const text = `${n} ${unit}${n === 1 ? '' : 's'}`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/** A yes/no badge, so presence in a store is readable at a glance. */
export function yesNo(value, yes = 'yes', no = 'no') {
  return h('span', { className: value ? 'badge ok' : 'badge no' }, value ? yes : no);
}
