// Small helpers the dashboard's modules share: building DOM nodes without innerHTML (so data is
// always text, never markup) and human-readable sizes, rates, times and identifiers.

const SVG_NS = 'http://www.w3.org/2000/svg';
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** An HTML element: `attrs` keys are attributes, except `class` and `text`; children are nodes or strings. */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.setAttribute('class', value);
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/** 1536 → "1.5 KiB"; anything not a number → "–". */
export function formatBytes(value) {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) return '–';
  let unit = 0;
  let v = n;
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(v)} B`;
  return `${v < 100 ? v.toFixed(1) : Math.round(v)} ${UNITS[unit]}`;
}

export function formatRate(value) {
  return `${formatBytes(value)}/s`;
}

export function formatCount(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString() : '–';
}

/** An RFC 3339 time in the reader's locale; unparsable text is shown as it came. */
export function formatTime(text) {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return String(text ?? '');
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

export function formatClock(text) {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** "bafybeigdyrzt…fjuhtq": long identifiers shortened for tables (the full one goes in a title). */
export function shortId(text, keep = 8) {
  const s = String(text ?? '');
  return s.length <= keep * 2 + 1 ? s : `${s.slice(0, keep)}…${s.slice(-keep)}`;
}

export function plural(n, one, many) {
  return `${formatCount(n)} ${Number(n) === 1 ? one : many}`;
}
