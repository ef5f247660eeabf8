// Live case queue: the list from /api/v1/cases, kept current by the event stream (no reload).
import { api, evidenceUrl, stream } from '../api.js';
import { gridPicker } from '../grid_picker.js';
import { t } from '../i18n.js';
import {
  cameraLabel, categoryLabel, clear, el, fmtRelative, fmtTime, setLive, squadLabel, startPage, stateLabel, toast, zoneLabel,
} from '../ui.js';

const CLOSED_STATES = ['closed', 'archived', 'rejected', 'duplicate'];
const OPEN_STATES = ['reported', 'filed', 'dispatched', 'in_progress', 'handled', 'verifying', 'suspended'];
let categories = [];
let refreshTimer = null;
let total = 0;
let picker = null; // the grid-unit picker (grid_picker.js)

function showCount() { document.getElementById('queue-count').textContent = t('queue.count', { n: total }); }

function filters() {
  const f = {
    state: document.getElementById('f-state').value,
    category: document.getElementById('f-category').value,
    grid_cell: document.getElementById('f-grid').value.trim(),
    camera_id: document.getElementById('f-camera').value.trim(),
    overdue: document.getElementById('f-overdue').checked,
    grid_unit: picker ? picker.value() : '',
  };
  return f;
}

function queryString(f) {
  const q = new URLSearchParams({ limit: '200' });
  if (f.state === 'open') q.set('state', OPEN_STATES.join(','));
  else if (f.state) q.set('state', f.state);
  for (const k of ['category', 'grid_cell', 'grid_unit', 'camera_id']) if (f[k]) q.set(k, f[k]);
  if (f.overdue) q.set('overdue', 'true');
  return q.toString();
}

function matches(item, f) {
  if (f.state === 'open' && CLOSED_STATES.includes(item.state)) return false;
  if (f.state && f.state !== 'open' && item.state !== f.state) return false;
  if (f.category && item.category !== f.category) return false;
  if (f.grid_cell && !(item.grid_cell || '').startsWith(f.grid_cell)) return false;
  if (f.camera_id && item.camera_id !== f.camera_id) return false;
  const inUnit = f.grid_unit && picker ? picker.cells() : null;
  if (inUnit && !inUnit.has(item.grid_cell)) return false;
  if (f.overdue && !(item.sla && item.sla.overdue)) return false;
  return true;
}

function deadlineCell(item) {
  const sla = item.sla || {};
  const colour = sla.colour || 'none';
  const deadline = sla.deadline || item.stage_deadline_at || item.due_at;
  const label = sla.overdue ? t('sla.overdue') : (deadline ? fmtRelative(deadline) : '–');
  const td = el('td', { class: 'deadline-cell' }, [
    el('span', { class: `sla sla-${colour}`, title: deadline ? fmtTime(deadline) : '', text: label }),
  ]);
  td.dataset.colour = colour;
  return td;
}

function row(item) {
  const thumb = el('div', { class: 'thumb' });
  if (item.snapshot_sha256) {
    evidenceUrl(item.snapshot_sha256).then((url) => {
      if (url) thumb.append(el('img', { src: url, alt: t('col.snapshot'), loading: 'lazy' }));
    });
  }
  const where = [item.address, zoneLabel(item.camera_id, item.zone), item.grid_cell].filter(Boolean).join(' · ');
  const tr = el('tr', { dataset: { caseId: item.id, state: item.state }, class: 'case-row' }, [
    el('td', {}, [thumb]),
    el('td', {}, [el('a', { href: `/cases/${item.id}`, class: 'case-link', text: item.public_id || `#${item.id}` })]),
    el('td', { text: categoryLabel(item.category, categories) }),
    el('td', {}, [el('span', { class: `badge state-${item.state}`, text: stateLabel(item.state) })]),
    el('td', { class: 'where', text: where || cameraLabel(item.camera_id, item.camera_name), title: cameraLabel(item.camera_id, item.camera_name) }),
    el('td', { text: fmtRelative(item.reported_at), title: fmtTime(item.reported_at) }),
    deadlineCell(item),
    el('td', { text: item.squad ? squadLabel(item.squad) : '–', dataset: { squad: item.squad || '' } }),
  ]);
  tr.addEventListener('click', (ev) => { if (ev.target.tagName !== 'A') window.location.assign(`/cases/${item.id}`); });
  return tr;
}

async function load() {
  const body = document.getElementById('queue-body');
  try {
    const data = await api(`/api/v1/cases?${queryString(filters())}`);
    clear(body);
    data.items.forEach((item) => body.append(row(item)));
    document.getElementById('queue-empty').hidden = data.items.length > 0;
    total = data.total;
    showCount();
  } catch (err) {
    toast(`${t('common.error')}: ${err.message}`, 'error');
  }
}

function upsert(summary) {
  if (!summary || summary.id === undefined) return;
  const body = document.getElementById('queue-body');
  const existing = body.querySelector(`tr[data-case-id="${CSS.escape(String(summary.id))}"]`);
  // The event carries a summary; fetch the full row (with SLA) so colours and thumbnails are right.
  api(`/api/v1/cases/${summary.id}`).then((item) => {
    const fresh = { ...summary, ...item };
    const keep = matches(fresh, filters());
    const current = body.querySelector(`tr[data-case-id="${CSS.escape(String(summary.id))}"]`) || existing;
    if (!keep) {
      if (current) { current.remove(); total -= 1; showCount(); }
      return;
    }
    const tr = row(fresh);
    tr.classList.add('flash');
    if (current) current.replaceWith(tr); else { body.prepend(tr); total += 1; showCount(); }
    document.getElementById('queue-empty').hidden = true;
  }).catch(() => {});
}

async function main() {
  await startPage();
  try {
    categories = await api('/api/v1/categories');
    if (!Array.isArray(categories)) categories = categories.items || [];
  } catch { categories = []; }
  const catSelect = document.getElementById('f-category');
  categories.forEach((c) => catSelect.append(el('option', { value: c.code, text: categoryLabel(c.code, categories) })));
  const stateSelect = document.getElementById('f-state');
  [...OPEN_STATES, ...CLOSED_STATES].forEach((s) => stateSelect.append(el('option', { value: s, text: stateLabel(s) })));
  const params = new URLSearchParams(window.location.search);
  for (const [k, id] of [['state', 'f-state'], ['category', 'f-category'], ['grid_cell', 'f-grid'], ['camera_id', 'f-camera']]) {
    if (params.has(k)) document.getElementById(id).value = params.get(k);
  }
  document.getElementById('f-overdue').checked = params.get('overdue') === 'true';
  try {
    picker = await gridPicker(document.getElementById('f-unit'), () => load());
    picker.set(params.get('grid_unit') || '');
  } catch (err) { toast(`${t('common.error')}: ${err.message}`, 'error'); }
  document.getElementById('filters').addEventListener('input', () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, 250);
  });
  document.getElementById('filters').addEventListener('submit', (ev) => ev.preventDefault());
  await load();
  stream((kind, data) => {
    if (kind === 'case.created' || kind === 'case.updated') upsert(data);
    else if (kind === 'stream.resync') load(); // away too long for a replay: fetch the list again
  }, setLive);
  // Deadlines move with time even without events: re-render relative times and colours every minute.
  setInterval(load, 60000);
}

main();
