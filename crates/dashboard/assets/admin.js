// The cluster panel, for admins only: GET /ui/api/overview every 5 s, shown as counters, the
// peers table and a chart of pins by status over time.

import { drawChart } from './chart.js';
import { ApiError, request } from './http.js';
import { byId, el, formatBytes, formatCount, formatRate, plural, shortId } from './util.js';

const REFRESH_MS = 5000;
const SERIES = [
  { key: 'queued', label: 'Queued' },
  { key: 'pinning', label: 'Pinning' },
  { key: 'pinned', label: 'Pinned' },
  { key: 'failed', label: 'Failed' },
];

let active = false;
let timer = 0;
let generation = 0;
let resizeTimer = 0;
let drawn = null; // the chart's last arguments, to draw it again at a new width

window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (active && drawn && !byId('overview').hidden) drawChart(byId('chart'), ...drawn);
  }, 150);
});

export function start() {
  active = true;
  byId('admin').hidden = false;
  refresh();
}

export function stop() {
  active = false;
  generation += 1;
  clearTimeout(timer);
  drawn = null;
  byId('admin').hidden = true;
  byId('overview').hidden = true;
  byId('overview-unavailable').hidden = true;
}

async function refresh() {
  if (!active) return;
  generation += 1;
  const mine = generation;
  try {
    const overview = await request('GET', '/ui/api/overview');
    if (mine !== generation) return;
    byId('overview').hidden = false;
    byId('overview-unavailable').hidden = true;
    render(overview ?? {});
  } catch (error) {
    if (mine !== generation) return;
    if (!(error instanceof ApiError && error.status === 0)) {
      // Not served by this daemon (404), or refused: the panel says so instead of going stale.
      byId('overview').hidden = true;
      byId('overview-unavailable').hidden = false;
    }
  } finally {
    if (mine === generation && active) timer = setTimeout(refresh, REFRESH_MS);
  }
}

function render(overview) {
  const peer = overview.peer ?? {};
  byId('admin-peer').textContent = peer.peername ? `this peer: ${peer.peername}` : '';
  const pins = overview.pins ?? {};
  const queue = overview.queue ?? {};
  const transfer = overview.transfer ?? {};
  const stat = (term, value, extra) =>
    el(
      'div',
      { class: 'stat', 'data-testid': `stat-${term.toLowerCase().replace(/\W+/g, '-')}` },
      el('dt', { text: term }),
      el('dd', {}, el('span', { class: 'stat-value', text: value }), extra),
    );
  const workers = el('progress', {
    max: Math.max(1, Number(queue.workers) || 0),
    value: Number(queue.workers_busy) || 0,
    'aria-label': 'Busy workers',
  });
  byId('stats').replaceChildren(
    stat('Pinned', formatCount(pins.pinned ?? 0), el('span', { class: 'stat-note', text: `${formatCount(pins.failed ?? 0)} failed` })),
    stat(
      'Queue',
      formatCount((Number(queue.queued) || 0) + (Number(queue.pinning) || 0)),
      el('span', { class: 'stat-note', text: `${formatCount(queue.queued ?? 0)} queued, ${formatCount(queue.pinning ?? 0)} pinning` }),
    ),
    stat(
      'Workers busy',
      `${formatCount(queue.workers_busy ?? 0)} / ${formatCount(queue.workers ?? 0)}`,
      workers,
    ),
    stat(
      'Transfer',
      `↓ ${formatRate(transfer.received_bytes_per_second ?? 0)}`,
      el('span', { class: 'stat-note', text: `↑ ${formatRate(transfer.sent_bytes_per_second ?? 0)}` }),
    ),
    stat('IPFS peers', formatCount(transfer.connected_peers ?? 0)),
  );

  const history = overview.history ?? {};
  const samples = Array.isArray(history.samples) ? history.samples : [];
  const every = Number(history.interval_seconds) || 0;
  const title = every ? `Pins by status, one sample every ${plural(every, 'second', 'seconds')}` : 'Pins by status';
  drawn = [samples, SERIES, title];
  drawChart(byId('chart'), ...drawn);

  const peers = Array.isArray(overview.peers) ? overview.peers : [];
  byId('peers-body').replaceChildren(...peers.map((p) => peerRow(p, p.id === peer.id)));
}

function peerRow(peer, self) {
  const badges = el('span', { class: 'badges' });
  badges.append(el('span', { class: `badge ${peer.up ? 'badge-pinned' : 'badge-failed'}`, text: peer.up ? 'up' : 'down' }));
  if (peer.leader) badges.append(el('span', { class: 'badge badge-leader', text: 'leader' }));
  if (self) badges.append(el('span', { class: 'badge badge-self', text: 'this peer' }));
  return el(
    'tr',
    { 'data-testid': 'peer-row' },
    el('td', { 'data-label': 'Peer' }, el('span', { class: 'pin-name', text: peer.peername || '(unnamed)' }), ' ', badges),
    el('td', { 'data-label': 'ID' }, el('code', { title: peer.id ?? '', text: shortId(peer.id ?? '', 6) })),
    el('td', { class: 'num', 'data-label': 'Free space', text: formatBytes(peer.freespace) }),
    el('td', { class: 'num', 'data-label': 'Repo size', text: formatBytes(peer.reposize) }),
    el('td', { class: 'num', 'data-label': 'Queue', text: formatCount(peer.pin_queue ?? 0) }),
  );
}
