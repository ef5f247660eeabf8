// Zone editor: draw and edit polygons over a camera's latest clean live frame (else its newest case snapshot), set
// type/classes/dwell/schedule, validate with the edge's own schema (POST /api/v1/zones/validate), export YAML, save
// (admin, managed file).
import { api, evidenceUrl } from '../api.js';
import { liveFrame } from '../frames.js';
import { t } from '../i18n.js';
import { cameraLabel, clear, el, fmtRelative, roleAllows, startPage, toast } from '../ui.js';
import { svgEl } from '../svg.js';

const state = {
  cameras: [], // [{id, name, zones, snapshot}]
  cameraId: null,
  zones: [], // zone dicts as in cameras.yaml (keys the editor does not know are kept)
  selected: -1, // zone index
  vertex: -1, // vertex index within the selected zone
  drawing: null, // points of a polygon being drawn
  size: { w: 640, h: 480 },
  managed: false,
  canSave: false,
};
let svg = null;
let validateTimer = null;
let lastYaml = '';

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;

function toNorm(ev) {
  const pt = svg.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  return [round(p.x / state.size.w), round(p.y / state.size.h)];
}

const px = ([x, y]) => [x * state.size.w, y * state.size.h];
const handleR = () => Math.max(4, state.size.w / 110);

function uniqueName(base) {
  const names = new Set(state.zones.map((z) => z.name));
  let i = 1;
  while (names.has(`${base}-${i}`)) i += 1;
  return `${base}-${i}`;
}

// ----------------------------------------------------------------------------- drawing

function render() {
  if (!svg) return;
  svg.querySelectorAll('.zone, .handle, .mid, .drawing').forEach((n) => n.remove());
  state.zones.forEach((z, zi) => {
    if (!Array.isArray(z.points)) return;
    const poly = svgEl('polygon', {
      points: z.points.map((p) => px(p).join(',')).join(' '),
      class: `zone zone-${z.type || 'none'}${zi === state.selected ? ' selected' : ''}`,
      'data-zone': zi,
    });
    poly.addEventListener('pointerdown', (ev) => { if (!state.drawing) { ev.stopPropagation(); select(zi); } });
    svg.append(poly);
    (Array.isArray(z.bays) ? z.bays : []).forEach((bay) => {  // legal bays: drawn, edited in cameras.yaml
      if (!Array.isArray(bay) || bay.length < 3) return;
      svg.append(svgEl('polygon', { points: bay.map((p) => px(p).join(',')).join(' '), class: 'zone zone-bay' }));
    });
    const [lx, ly] = px(z.points[0]);
    const label = svgEl('text', { x: lx + 6, y: ly + 18, class: 'zone zone-label' });
    label.textContent = z.name || '';
    svg.append(label);
  });
  const z = state.zones[state.selected];
  if (z && Array.isArray(z.points) && !state.drawing) {
    z.points.forEach((p, i) => {
      const q = z.points[(i + 1) % z.points.length];
      const [mx, my] = px([(p[0] + q[0]) / 2, (p[1] + q[1]) / 2]);
      const mid = svgEl('circle', { cx: mx, cy: my, r: handleR() * 0.7, class: 'mid', 'data-after': i });
      mid.addEventListener('pointerdown', (ev) => { ev.stopPropagation(); insertPoint(i, [round((p[0] + q[0]) / 2), round((p[1] + q[1]) / 2)], ev); });
      svg.append(mid);
    });
    z.points.forEach((p, i) => {
      const [cx, cy] = px(p);
      const h = svgEl('circle', { cx, cy, r: handleR(), class: `handle${i === state.vertex ? ' active' : ''}`, 'data-vertex': i });
      h.addEventListener('pointerdown', (ev) => startDrag(ev, i));
      svg.append(h);
    });
  }
  if (state.drawing) {
    const pts = state.drawing.map((p) => px(p).join(',')).join(' ');
    svg.append(svgEl('polyline', { points: pts, class: 'drawing', fill: 'none' }));
    state.drawing.forEach((p) => { const [cx, cy] = px(p); svg.append(svgEl('circle', { cx, cy, r: handleR(), class: 'drawing handle' })); });
  }
  document.getElementById('ze-remove-point').disabled = !(z && state.vertex >= 0 && z.points.length > 3);
  document.getElementById('ze-delete').disabled = !z;
}

function startDrag(ev, i) {
  ev.stopPropagation();
  ev.preventDefault();
  state.vertex = i;
  render(); // replaces the handle nodes, so the drag listens on the svg (with pointer capture)
  svg.setPointerCapture(ev.pointerId);
  const onMove = (e) => {
    state.zones[state.selected].points[i] = toNorm(e);
    render();
  };
  const onUp = () => {
    svg.removeEventListener('pointermove', onMove);
    svg.removeEventListener('pointerup', onUp);
    changed();
  };
  svg.addEventListener('pointermove', onMove);
  svg.addEventListener('pointerup', onUp);
}

function insertPoint(afterIndex, point, ev) {
  const z = state.zones[state.selected];
  z.points.splice(afterIndex + 1, 0, point);
  startDrag(ev, afterIndex + 1);
}

function removePoint() {
  const z = state.zones[state.selected];
  if (!z || state.vertex < 0 || z.points.length <= 3) return;
  z.points.splice(state.vertex, 1);
  state.vertex = -1;
  changed();
}

function onStagePointer(ev) {
  if (!state.drawing) { select(-1); return; }
  state.drawing.push(toNorm(ev));
  render();
  document.getElementById('ze-finish').disabled = state.drawing.length < 3;
}

function startDrawing() {
  state.drawing = [];
  state.selected = -1;
  state.vertex = -1;
  document.getElementById('ze-finish').hidden = false;
  document.getElementById('ze-finish').disabled = true;
  document.getElementById('ze-stage').classList.add('drawing-mode');
  document.getElementById('ze-hint').textContent = t('ze.hint_draw');
  render();
}

function finishDrawing() {
  if (!state.drawing || state.drawing.length < 3) return;
  const zone = { name: uniqueName('zone'), type: 'no_parking', points: state.drawing, dwell_s: 120 };
  state.zones.push(zone);
  state.drawing = null;
  document.getElementById('ze-finish').hidden = true;
  document.getElementById('ze-stage').classList.remove('drawing-mode');
  document.getElementById('ze-hint').textContent = t('ze.hint');
  select(state.zones.length - 1);
  changed();
}

// ----------------------------------------------------------------------------- form

function select(i) {
  state.selected = i;
  state.vertex = -1;
  fillForm();
  renderList();
  render();
}

function fillForm() {
  const z = state.zones[state.selected];
  const form = document.getElementById('ze-form');
  form.querySelectorAll('input, select, button').forEach((n) => { n.disabled = !z; });
  if (!z) { form.reset(); clear(document.getElementById('ze-schedule')); return; }
  document.getElementById('ze-name').value = z.name || '';
  document.getElementById('ze-type').value = z.type || 'no_parking';
  document.getElementById('ze-classes').value = (z.classes || []).join(', ');
  document.getElementById('ze-dwell').value = z.dwell_s ?? '';
  document.getElementById('ze-area').value = z.area_m2 ?? '';
  document.getElementById('ze-capacity').value = z.capacity ?? '';
  document.getElementById('ze-grid').value = z.grid_cell || '';
  document.getElementById('ze-location').value = z.location || '';
  showTypeFields(z.type);
  renderSchedule(z);
}

function showTypeFields(type) {
  document.getElementById('ze-dwell-row').hidden = type === 'crowd' || type === 'parking';
  document.getElementById('ze-area-row').hidden = type !== 'crowd';
  document.getElementById('ze-capacity-row').hidden = type !== 'parking';
}

function setOrDelete(z, key, value) {
  if (value === '' || value === null || value === undefined || (Array.isArray(value) && !value.length) || Number.isNaN(value)) delete z[key];
  else z[key] = value;
}

function readForm() {
  const z = state.zones[state.selected];
  if (!z) return;
  z.name = document.getElementById('ze-name').value.trim();
  z.type = document.getElementById('ze-type').value;
  setOrDelete(z, 'classes', document.getElementById('ze-classes').value.split(',').map((s) => s.trim()).filter(Boolean));
  const dwell = document.getElementById('ze-dwell').value;
  setOrDelete(z, 'dwell_s', z.type === 'crowd' || z.type === 'parking' || dwell === '' ? '' : Number(dwell));
  const capacity = document.getElementById('ze-capacity').value;
  setOrDelete(z, 'capacity', z.type !== 'parking' || capacity === '' ? '' : Number(capacity));
  const area = document.getElementById('ze-area').value;
  setOrDelete(z, 'area_m2', z.type !== 'crowd' || area === '' ? '' : Number(area));
  setOrDelete(z, 'grid_cell', document.getElementById('ze-grid').value.trim());
  setOrDelete(z, 'location', document.getElementById('ze-location').value.trim());
  const windows = [...document.querySelectorAll('#ze-schedule .window')].map((row) => ({
    days: row.querySelector('.w-days').value.trim() || 'mon-sun',
    start: row.querySelector('.w-start').value.trim() || '00:00',
    end: row.querySelector('.w-end').value.trim() || '24:00',
  }));
  setOrDelete(z, 'schedule', windows);
  showTypeFields(z.type);
  changed();
}

function renderSchedule(z) {
  const box = clear(document.getElementById('ze-schedule'));
  (z.schedule || []).forEach((w) => box.append(windowRow(w)));
}

function windowRow(w = { days: 'mon-fri', start: '07:00', end: '19:00' }) {
  return el('div', { class: 'window row' }, [
    el('input', { class: 'w-days', value: w.days || 'mon-sun', 'aria-label': t('ze.days'), title: t('ze.days'), size: 9 }),
    el('input', { class: 'w-start', value: w.start || '00:00', 'aria-label': t('ze.start'), size: 5 }),
    el('span', { text: '–' }),
    el('input', { class: 'w-end', value: w.end || '24:00', 'aria-label': t('ze.end'), size: 5 }),
    el('button', { type: 'button', class: 'btn btn-ghost', text: '×', title: t('ze.remove_window'), on: { click: (ev) => { ev.target.closest('.window').remove(); readForm(); } } }),
  ]);
}

function renderList(errorsByZone = new Map()) {
  const ul = clear(document.getElementById('ze-zone-list'));
  state.zones.forEach((z, i) => {
    const errs = errorsByZone.get(i);
    ul.append(el('li', { class: `${i === state.selected ? 'selected' : ''}${errs ? ' has-error' : ''}`, dataset: { zone: i } }, [
      el('button', { type: 'button', class: 'linkish', text: `${z.name || '?'} · ${t(`zone.${z.type}`)}`, on: { click: () => select(i) } }),
      errs ? el('span', { class: 'error small', text: ` ${errs}` }) : null,
    ]));
  });
}

// ----------------------------------------------------------------------------- validate / export / save

function changed() {
  render();
  renderList();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 400);
}

function showResult(res) {
  const status = document.getElementById('ze-status');
  const list = clear(document.getElementById('ze-errors'));
  const perZone = new Map();
  (res.errors || []).forEach((e) => {
    list.append(el('li', {}, [el('code', { text: e.path || '<root>' }), el('span', { text: ` ${e.message}` })]));
    const m = /zones\[(\d+)\]/.exec(e.path || '');
    if (m) perZone.set(Number(m[1]), (perZone.get(Number(m[1])) || 0) + 1);
  });
  renderList(new Map([...perZone].map(([k, n]) => [k, t('ze.n_errors', { n })])));
  status.textContent = res.ok ? t('ze.valid') : t('ze.invalid', { n: (res.errors || []).length });
  status.className = `status ${res.ok ? 'ok' : 'bad'}`;
  document.body.dataset.zonesValid = res.ok ? 'true' : 'false';
  lastYaml = res.yaml || '';
  document.getElementById('ze-yaml').textContent = lastYaml;
  const save = document.getElementById('ze-save');
  if (save) save.disabled = !res.ok;
}

async function validate() {
  if (!state.cameraId) return null;
  clearTimeout(validateTimer);
  try {
    const res = await api('/api/v1/zones/validate', { method: 'POST', body: { camera_id: state.cameraId, zones: state.zones } });
    showResult(res);
    return res;
  } catch (err) {
    document.getElementById('ze-status').textContent = `${t('common.error')}: ${err.message}`;
    document.getElementById('ze-status').className = 'status bad';
    return null;
  }
}

async function download() {
  const res = await validate();
  if (!res) return;
  const blob = new Blob([res.yaml], { type: 'application/yaml' });
  const a = el('a', { href: URL.createObjectURL(blob), download: `zones-${state.cameraId}.yaml` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function save() {
  try {
    const res = await api('/api/v1/zones/save', { method: 'POST', body: { camera_id: state.cameraId, zones: state.zones } });
    showResult(res);
    toast(t('ze.saved'), 'ok');
  } catch (err) {
    if (err.body && err.body.errors) showResult(err.body);
    toast(`${t('common.error')}: ${err.message}`, 'error');
  }
}

// ----------------------------------------------------------------------------- camera / stage

/** The background: the edge's latest clean live frame, else the newest case snapshot (zones burnt in), else none. */
async function background(cam) {
  const live = cam.live ? await liveFrame(cam.id) : null; // only when /api/v1/cameras lists one: no 404 to log
  if (live) return { url: live.url, kind: 'live', at: live.at };
  const url = cam.snapshot ? await evidenceUrl(cam.snapshot) : null;
  return url ? { url, kind: 'snapshot' } : { url: null, kind: 'none' };
}

function showSource(bg) {
  const box = document.getElementById('ze-source');
  if (!box) return;
  box.dataset.source = bg.kind;
  box.textContent = bg.kind === 'live' ? t('ze.source_live', { when: fmtRelative(bg.at) })
    : (bg.kind === 'snapshot' ? t('ze.source_snapshot') : t('ze.no_picture'));
}

async function buildStage(cam) {
  const stage = clear(document.getElementById('ze-stage'));
  const bg = await background(cam);
  const { url } = bg;
  showSource(bg);
  if (url) {
    const img = new Image();
    img.src = url;
    try { await img.decode(); state.size = { w: img.naturalWidth, h: img.naturalHeight }; } catch { state.size = { w: 640, h: 480 }; }
  } else state.size = { w: 640, h: 480 };
  svg = svgEl('svg', { viewBox: `0 0 ${state.size.w} ${state.size.h}`, class: 'ze-svg', id: 'ze-svg' });
  if (url) svg.append(svgEl('image', { href: url, x: 0, y: 0, width: state.size.w, height: state.size.h, class: `ze-bg ze-bg-${bg.kind}` }));
  else {
    svg.append(svgEl('rect', { x: 0, y: 0, width: state.size.w, height: state.size.h, class: 'ze-blank' }));
    const note = svgEl('text', { x: state.size.w / 2, y: state.size.h / 2, 'text-anchor': 'middle', class: 'ze-blank-text' });
    note.textContent = t('ze.no_picture');
    svg.append(note);
  }
  svg.addEventListener('pointerdown', onStagePointer);
  stage.append(svg);
}

async function chooseCamera(id) {
  state.cameraId = id;
  const cam = state.cameras.find((c) => c.id === id);
  state.zones = JSON.parse(JSON.stringify(cam.zones || []));
  state.drawing = null;
  await buildStage(cam);
  select(state.zones.length ? 0 : -1);
  const url = new URL(window.location.href);
  url.searchParams.set('camera', id);
  window.history.replaceState(null, '', url);
  validate();
}

async function main() {
  const who = await startPage();
  const [cfg, cams] = await Promise.all([
    api('/api/v1/zones/config').catch((err) => { toast(`${t('common.error')}: ${err.message}`, 'error'); return { managed: false, cameras: [] }; }),
    api('/api/v1/cameras').catch(() => ({ items: [] })),
  ]);
  state.managed = cfg.managed;
  state.canSave = Boolean(cfg.can_save) && roleAllows(who.role, 'admin');
  const byId = new Map();
  (cfg.cameras || []).forEach((c) => byId.set(c.id, { id: c.id, name: c.name, zones: c.zones || [], snapshot: null }));
  (cams.items || []).forEach((c) => {
    const cur = byId.get(c.camera_id) || { id: c.camera_id, name: c.name, zones: [] };
    cur.snapshot = c.latest_snapshot_sha256;
    cur.live = Boolean(c.live_frame);
    cur.name = cur.name || c.name;
    byId.set(c.camera_id, cur);
  });
  state.cameras = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  const select_ = document.getElementById('ze-camera');
  state.cameras.forEach((c) => {
    const label = cameraLabel(c.id, c.name);
    select_.append(el('option', { value: c.id, text: label !== c.id ? `${label} (${c.id})` : c.id }));
  });
  if (!state.cameras.length) {
    // No camera known yet: let the operator type an id and start from a blank canvas.
    const id = window.prompt(t('ze.camera_id_prompt'), 'cam-1');
    if (!id) return;
    state.cameras.push({ id, name: null, zones: [], snapshot: null });
    select_.append(el('option', { value: id, text: id }));
  }
  document.getElementById('ze-managed').textContent = cfg.managed ? t('ze.managed', { file: cfg.file }) : t('ze.unmanaged');
  const saveBtn = document.getElementById('ze-save');
  if (saveBtn) { saveBtn.hidden = !state.canSave; saveBtn.addEventListener('click', save); }
  select_.addEventListener('change', () => chooseCamera(select_.value));
  document.getElementById('ze-new').addEventListener('click', startDrawing);
  document.getElementById('ze-finish').addEventListener('click', finishDrawing);
  document.getElementById('ze-remove-point').addEventListener('click', removePoint);
  document.getElementById('ze-delete').addEventListener('click', () => {
    if (state.selected < 0) return;
    state.zones.splice(state.selected, 1);
    select(-1);
    changed();
  });
  document.getElementById('ze-form').addEventListener('input', readForm);
  document.getElementById('ze-form').addEventListener('submit', (ev) => ev.preventDefault());
  document.getElementById('ze-add-window').addEventListener('click', () => { document.getElementById('ze-schedule').append(windowRow()); readForm(); });
  document.getElementById('ze-validate').addEventListener('click', validate);
  document.getElementById('ze-download').addEventListener('click', download);
  document.addEventListener('keydown', (ev) => {
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement?.tagName);
    if (typing) return;
    if ((ev.key === 'Delete' || ev.key === 'Backspace') && state.vertex >= 0) { ev.preventDefault(); removePoint(); }
    if (ev.key === 'Enter' && state.drawing) finishDrawing();
    if (ev.key === 'Escape' && state.drawing) { state.drawing = null; document.getElementById('ze-finish').hidden = true; render(); }
  });
  const wanted = new URLSearchParams(window.location.search).get('camera');
  const pictured = (c) => c.live || c.snapshot;
  const first = state.cameras.find((c) => c.id === wanted) || state.cameras.find((c) => pictured(c) && c.zones.length)
    || state.cameras.find(pictured) || state.cameras[0];
  select_.value = first.id;
  await chooseCamera(first.id);
  document.body.dataset.ready = 'true';
}

main();
