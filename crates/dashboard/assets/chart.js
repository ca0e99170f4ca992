// A small line chart drawn as inline SVG (no chart library): one polyline per series over time,
// a y axis with round ticks, the first and last times below, and a legend.

import { el, formatClock, svg } from './util.js';

const HEIGHT = 220;
const PAD = { top: 12, right: 16, bottom: 28, left: 48 };

/**
 * Draws `samples` (objects with a `time` and one number per series key) into `figure`, which
 * must be visible (its width is measured).
 * `series` is a list of { key, label }; each line has the class `series-<key>`.
 */
export function drawChart(figure, samples, series, title) {
  const points = samples.filter((s) => s && !Number.isNaN(new Date(s.time).getTime()));
  if (points.length === 0) {
    figure.replaceChildren(el('p', { class: 'empty', text: 'No samples yet.' }));
    return;
  }
  // Drawn at the figure's own width in pixels, so text stays the same size on a phone or a wide screen.
  const WIDTH = Math.max(280, Math.round(figure.clientWidth) || 640);
  const top = niceCeiling(Math.max(1, ...points.flatMap((p) => series.map((s) => Number(p[s.key]) || 0))));
  // Whole steps: 5 → 0..5 by 1, 20 → by 5, 50 → by 10, 200 → by 50.
  const ticks = top <= 5 ? top : String(top)[0] === '2' ? 4 : 5;
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (points.length === 1 ? plotW / 2 : (i * plotW) / (points.length - 1));
  const y = (v) => PAD.top + plotH - (Math.max(0, Number(v) || 0) / top) * plotH;

  const latest = points[points.length - 1];
  const summary = series.map((s) => `${s.label} ${Number(latest[s.key]) || 0}`).join(', ');
  const chart = svg('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': `${title}. Latest: ${summary}.`,
    class: 'chart-svg',
  });
  chart.append(svg('title', { text: `${title}. Latest: ${summary}.` }));

  for (let t = 0; t <= ticks; t += 1) {
    const value = (top * t) / ticks;
    const ty = y(value);
    chart.append(
      svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: ty, y2: ty, class: t === 0 ? 'axis' : 'grid' }),
      svg('text', { x: PAD.left - 8, y: ty + 4, class: 'tick tick-y', text: formatTick(value) }),
    );
  }
  const first = formatClock(points[0].time);
  const last = formatClock(latest.time);
  chart.append(svg('text', { x: PAD.left, y: HEIGHT - 8, class: 'tick tick-start', text: first }));
  if (points.length > 1) chart.append(svg('text', { x: WIDTH - PAD.right, y: HEIGHT - 8, class: 'tick tick-end', text: last }));

  for (const s of series) {
    const coords = points.map((p, i) => `${x(i).toFixed(1)},${y(p[s.key]).toFixed(1)}`);
    if (points.length === 1) {
      chart.append(svg('circle', { cx: x(0), cy: y(latest[s.key]), r: 3, class: `dot series-${s.key}` }));
    } else {
      chart.append(svg('polyline', { points: coords.join(' '), class: `line series-${s.key}` }));
    }
  }

  const legend = el(
    'ul',
    { class: 'legend' },
    ...series.map((s) =>
      el('li', {}, el('span', { class: `swatch series-${s.key}` }), `${s.label} ${Number(latest[s.key]) || 0}`),
    ),
  );
  figure.replaceChildren(chart, legend);
}

/** The smallest 1, 2 or 5 × 10ⁿ at or above `value`, so ticks are round numbers. */
function niceCeiling(value) {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

function formatTick(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(1)}`;
}
