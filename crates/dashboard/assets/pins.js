// The pins panel: the signed-in user's pins from the Pinning Service API (filters, pages, a live
// refresh every 2 s that updates rows in place so focus and typing survive), the pin form, and
// each row's details, replace and remove dialogs.

import { ApiError, request } from './http.js';
import { byId, el, formatBytes, formatTime, plural, shortId } from './util.js';

const STATUSES = ['queued', 'pinning', 'pinned', 'failed'];
const REFRESH_MS = 2000;
const TYPING_MS = 300;

let notify = () => {};
let active = false;
let timer = 0;
let typingTimer = 0;
let generation = 0;
let lostConnection = false;

// Paging: the `before` of the page shown (null: the newest), the pages behind it, its first index.
let before = null;
let behind = [];
let offset = 0;

const rows = new Map(); // requestid → <tr>, kept across refreshes
const shown = new Map(); // requestid → its latest pin status
let target = null; // the requestid an open dialog acts on

/** Wires the panel's controls once; `options.notify(text, kind)` reports to the page. */
export function init(options) {
  notify = options.notify;
  byId('pin-form').addEventListener('submit', submitPin);
  byId('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    restart();
  });
  byId('filter-status').addEventListener('change', restart);
  byId('page-size').addEventListener('change', restart);
  byId('filter-name').addEventListener('input', () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(restart, TYPING_MS);
  });
  byId('page-prev').addEventListener('click', previousPage);
  byId('page-next').addEventListener('click', nextPage);
  byId('pins-body').addEventListener('click', rowAction);
  byId('replace-form').addEventListener('submit', submitReplace);
  byId('remove-confirm').addEventListener('click', confirmRemove);
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('click', (event) => {
      if (event.target instanceof Element && event.target.closest('[data-close]')) dialog.close();
    });
    dialog.addEventListener('close', () => {
      target = null;
    });
  }
}

export function start() {
  active = true;
  lostConnection = false;
  restart();
}

export function stop() {
  active = false;
  generation += 1;
  clearTimeout(timer);
  clearTimeout(typingTimer);
  for (const dialog of document.querySelectorAll('dialog')) dialog.close();
  rows.clear();
  shown.clear();
  byId('pins-body').replaceChildren();
  byId('pins-count').textContent = '';
  byId('page-info').textContent = '';
  byId('pin-form').reset();
  byId('filters').reset();
}

/** Back to the newest page, e.g. after a filter changed. */
function restart() {
  before = null;
  behind = [];
  offset = 0;
  refresh();
}

function query() {
  const params = new URLSearchParams();
  params.set('limit', byId('page-size').value);
  params.set('status', byId('filter-status').value || STATUSES.join(','));
  const name = byId('filter-name').value.trim();
  if (name !== '') {
    params.set('name', name);
    params.set('match', 'ipartial');
  }
  if (before !== null) params.set('before', before);
  return params.toString();
}

/** Fetches the page shown now; an answer to an older request (filters changed since) is dropped. */
async function refresh() {
  if (!active) return;
  clearTimeout(timer);
  generation += 1;
  const mine = generation;
  try {
    const page = await request('GET', `/pins?${query()}`);
    if (mine !== generation) return;
    if (lostConnection) {
      lostConnection = false;
      notify('Connected again.', 'info');
    }
    render(page ?? {});
  } catch (error) {
    if (mine !== generation || !active) return;
    if (error instanceof ApiError && error.status === 0) {
      if (!lostConnection) notify('Cannot reach the server; retrying.', 'error');
      lostConnection = true;
    } else if (!(error instanceof ApiError && error.status === 401)) {
      notify(`Could not list pins: ${error.message}`, 'error');
    }
  } finally {
    if (mine === generation && active) timer = setTimeout(refresh, REFRESH_MS);
  }
}

function render(page) {
  const results = Array.isArray(page.results) ? page.results.filter((p) => p && typeof p.requestid === 'string') : [];
  const count = Number(page.count) || 0;
  if (results.length === 0 && behind.length > 0) {
    // This page emptied (its pins were removed): show the one before it.
    ({ before, offset } = behind.pop());
    refresh();
    return;
  }
  shown.clear();
  for (const pin of results) shown.set(pin.requestid, pin);
  const body = byId('pins-body');
  for (const [id, row] of rows) {
    if (!shown.has(id)) {
      row.remove();
      rows.delete(id);
    }
  }
  results.forEach((pin, i) => {
    let row = rows.get(pin.requestid);
    if (!row) {
      row = newRow(pin.requestid);
      rows.set(pin.requestid, row);
    }
    updateRow(row, pin);
    // Move only rows out of place: moving a row would blur a focused button in it.
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] ?? null);
  });

  const limit = Number(byId('page-size').value);
  const filtered = byId('filter-status').value !== '' || byId('filter-name').value.trim() !== '';
  byId('pins-empty').textContent = filtered ? 'No pins match these filters.' : 'No pins yet: pin a CID above.';
  byId('pins-empty').hidden = results.length > 0;
  byId('pins-count').textContent = plural(count, 'pin', 'pins');
  byId('page-info').textContent = results.length
    ? `${offset + 1}–${offset + results.length} of ${count.toLocaleString()}`
    : '';
  byId('page-prev').disabled = behind.length === 0;
  byId('page-next').disabled = results.length < limit || offset + results.length >= count;
  byId('page-next').dataset.before = results.length ? results[results.length - 1].created : '';

  const details = byId('details-dialog');
  if (details.open && target !== null && shown.has(target)) renderDetails(shown.get(target));
}

function nextPage() {
  const next = byId('page-next').dataset.before;
  if (!next) return;
  behind.push({ before, offset });
  offset += rows.size;
  before = next;
  refresh();
}

function previousPage() {
  if (behind.length === 0) return;
  ({ before, offset } = behind.pop());
  refresh();
}

function label(pin) {
  return pin?.pin?.name || shortId(pin?.requestid ?? '');
}

function newRow(requestid) {
  const button = (action, text, testid) =>
    el('button', { type: 'button', class: 'small secondary', 'data-action': action, 'data-testid': testid, text });
  return el(
    'tr',
    { 'data-testid': 'pin-row', 'data-requestid': requestid },
    el('td', { class: 'cell-name', 'data-label': 'Name' }),
    el('td', { class: 'cell-cid', 'data-label': 'CID' }),
    el('td', { class: 'cell-status', 'data-label': 'Status' }),
    el('td', { class: 'cell-created', 'data-label': 'Created' }),
    el(
      'td',
      { class: 'cell-actions' },
      el(
        'div',
        { class: 'row-actions' },
        button('details', 'Details', 'row-details'),
        button('replace', 'Replace', 'row-replace'),
        button('remove', 'Remove', 'row-remove'),
      ),
    ),
  );
}

function updateRow(row, pin) {
  const signature = JSON.stringify(pin);
  if (row.dataset.signature === signature) return;
  row.dataset.signature = signature;
  const status = STATUSES.includes(pin.status) ? pin.status : 'unknown';
  row.dataset.status = status;
  const [name, cid, state, created, actions] = row.cells;

  const text = pin.pin?.name;
  name.replaceChildren(text ? el('span', { class: 'pin-name', text }) : el('span', { class: 'muted', text: 'no name' }));
  const full = pin.pin?.cid ?? pin.requestid;
  cid.replaceChildren(el('code', { title: full, text: shortId(full) }));
  state.replaceChildren(statusView(pin, status));
  created.replaceChildren(el('time', { datetime: pin.created, title: pin.created, text: formatTime(pin.created) }));
  for (const button of actions.querySelectorAll('button')) {
    button.setAttribute('aria-label', `${button.textContent} ${label(pin)}`);
  }
}

/** The badge, and what is known of progress, size or failure. */
function statusView(pin, status) {
  const info = pin.info ?? {};
  const view = el('div', { class: 'status' }, el('span', { class: `badge badge-${status}`, text: status }));
  if (status === 'queued' || status === 'pinning') {
    const total = Number(info.dag_size);
    const bytes = Number(info.fetched_bytes);
    const bar = el('progress', { 'aria-label': `Fetching ${label(pin)}` });
    if (total > 0 && Number.isFinite(bytes)) {
      bar.max = total;
      bar.value = Math.min(bytes, total);
    }
    view.append(bar);
    if (info.fetched_blocks !== undefined) {
      view.append(el('span', { class: 'detail', text: `${plural(info.fetched_blocks, 'block', 'blocks')}, ${formatBytes(bytes)} fetched` }));
    } else if (status === 'queued') {
      view.append(el('span', { class: 'detail', text: 'waiting for a worker' }));
    }
  } else if (status === 'pinned' && info.dag_size !== undefined) {
    view.append(el('span', { class: 'detail', text: formatBytes(info.dag_size) }));
  } else if (status === 'failed') {
    view.append(el('span', { class: 'detail error-text', text: info.status_details || 'failed' }));
  }
  return view;
}

function rowAction(event) {
  const button = event.target instanceof Element ? event.target.closest('button[data-action]') : null;
  const row = button?.closest('tr');
  const pin = row ? shown.get(row.dataset.requestid) : undefined;
  if (!pin) return;
  target = pin.requestid;
  if (button.dataset.action === 'details') {
    renderDetails(pin);
    byId('details-dialog').showModal();
  } else if (button.dataset.action === 'replace') {
    byId('replace-what').textContent = `${label(pin)} (${pin.requestid})`;
    byId('replace-cid').value = pin.pin?.cid ?? pin.requestid;
    byId('replace-name').value = pin.pin?.name ?? '';
    byId('replace-origins').value = (pin.pin?.origins ?? []).join('\n');
    byId('replace-error').textContent = '';
    byId('replace-dialog').showModal();
    target = pin.requestid;
  } else if (button.dataset.action === 'remove') {
    byId('remove-what').textContent = `${label(pin)} (${pin.requestid}) will no longer be pinned for you.`;
    byId('remove-error').textContent = '';
    byId('remove-dialog').showModal();
    target = pin.requestid;
  }
}

function renderDetails(pin) {
  const info = pin.info ?? {};
  const list = (items) =>
    items && items.length ? el('ul', { class: 'plain' }, ...items.map((item) => el('li', { text: item }))) : 'none';
  const entries = [
    ['Request ID', el('code', { text: pin.requestid })],
    ['CID', el('code', { text: pin.pin?.cid ?? '' })],
    ['Name', pin.pin?.name || 'none'],
    ['Status', pin.status],
    ['Created', `${formatTime(pin.created)} (${pin.created})`],
    ['DAG size', info.dag_size !== undefined ? `${formatBytes(info.dag_size)} (${info.dag_size} bytes)` : 'not known yet'],
  ];
  if (info.fetched_blocks !== undefined) {
    entries.push(['Fetched', `${plural(info.fetched_blocks, 'block', 'blocks')}, ${formatBytes(info.fetched_bytes)}`]);
  }
  if (info.attempts !== undefined) entries.push(['Attempts', info.attempts]);
  if (info.pinned_until !== undefined) entries.push(['Pinned until', formatTime(info.pinned_until)]);
  if (info.status_details) entries.push(['Error', el('span', { class: 'error-text', text: info.status_details })]);
  entries.push(['Origins', list(pin.pin?.origins)], ['Delegates', list(pin.delegates)]);
  const meta = Object.entries(pin.pin?.meta ?? {}).map(([k, v]) => `${k} = ${v}`);
  if (meta.length) entries.push(['Meta', list(meta)]);
  byId('details-list').replaceChildren(
    ...entries.flatMap(([term, value]) => [el('dt', { text: term }), el('dd', {}, value)]),
  );
}

/** The PSA's Pin object from form fields; empty optional fields are left out. */
function pinBody(cid, name, origins, meta) {
  const body = { cid: cid.trim() };
  if (name.trim() !== '') body.name = name.trim();
  const addrs = origins
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (addrs.length) body.origins = addrs;
  if (meta && Object.keys(meta).length) body.meta = meta;
  return body;
}

async function submitPin(event) {
  event.preventDefault();
  const form = byId('pin-form');
  const submit = byId('pin-submit');
  const body = pinBody(byId('pin-cid').value, byId('pin-name').value, byId('pin-origins').value);
  submit.disabled = true;
  try {
    const created = await request('POST', '/pins', body);
    notify(`Pin requested: ${label(created)}.`, 'success');
    form.reset();
    refresh();
  } catch (error) {
    if (error.status !== 401) notify(`Could not pin: ${error.message}`, 'error');
  } finally {
    submit.disabled = false;
    byId('pin-cid').focus();
  }
}

async function submitReplace(event) {
  event.preventDefault();
  const old = target;
  const pin = shown.get(old);
  if (old === null) return;
  const body = pinBody(
    byId('replace-cid').value,
    byId('replace-name').value,
    byId('replace-origins').value,
    pin?.pin?.meta,
  );
  try {
    const created = await request('POST', `/pins/${encodeURIComponent(old)}`, body);
    byId('replace-dialog').close();
    notify(`Replaced with ${label(created)}.`, 'success');
    refresh();
  } catch (error) {
    byId('replace-error').textContent = error.message;
  }
}

async function confirmRemove() {
  const id = target;
  if (id === null) return;
  const what = label(shown.get(id) ?? { requestid: id });
  const button = byId('remove-confirm');
  button.disabled = true;
  try {
    await request('DELETE', `/pins/${encodeURIComponent(id)}`);
    byId('remove-dialog').close();
    notify(`Removed ${what}.`, 'success');
    byId('pins-title').focus();
    refresh();
  } catch (error) {
    byId('remove-error').textContent = error.message;
  } finally {
    button.disabled = false;
  }
}
