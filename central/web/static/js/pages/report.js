// Field report from a phone: catalogue category, photo, position (browser geolocation) or grid cell, note.
// The report becomes a case (POST /api/v1/reports) and follows the same loop as a camera case.
import { ApiError, api } from '../api.js';
import { lang, t } from '../i18n.js';
import { clear, el, startPage, toast } from '../ui.js';

let position = null;
let options = [];

function label(o) {
  const name = lang() === 'zh-CN' ? (o.name_zh || o.name) : o.name;
  return o.class ? `${o.class} · ${name} (${o.code})` : name;
}

function showStandard() {
  const o = options.find((x) => x.code === document.getElementById('rep-category').value);
  document.getElementById('rep-standard').textContent = o?.standard || '';
}

async function locate() {
  const where = document.getElementById('rep-where');
  if (!navigator.geolocation) { where.textContent = t('rep.no_geolocation'); return; }
  where.textContent = t('rep.locating');
  navigator.geolocation.getCurrentPosition(async (p) => {
    position = { lat: p.coords.latitude, lon: p.coords.longitude };
    let cell = null;
    try {
      cell = (await api(`/api/v1/grid/locate?lat=${position.lat}&lon=${position.lon}`)).cell;
    } catch { /* the position is still sent */ }
    where.textContent = t('rep.position', { lat: position.lat.toFixed(5), lon: position.lon.toFixed(5), cell: cell || t('rep.no_cell') });
  }, (err) => { where.textContent = t('rep.geo_failed', { reason: err.message || String(err.code) }); },
  { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
}

async function submit(e) {
  e.preventDefault();
  const form = new FormData();
  form.set('category', document.getElementById('rep-category').value);
  const cell = document.getElementById('rep-cell').value;
  if (cell) form.set('grid_cell', cell);
  if (position) { form.set('lat', String(position.lat)); form.set('lon', String(position.lon)); }
  for (const id of ['address', 'note']) {
    const v = document.getElementById(`rep-${id}`).value.trim();
    if (v) form.set(id, v);
  }
  const photo = document.getElementById('rep-photo').files[0];
  if (photo) form.set('photo', photo);
  const btn = document.getElementById('rep-submit');
  btn.disabled = true;
  const out = clear(document.getElementById('rep-result'));
  try {
    const c = await api('/api/v1/reports', { method: 'POST', form });
    out.append(t('rep.done'), ' ', el('a', { href: `/cases/${c.id}`, id: 'rep-case-link', text: c.public_id }));
    toast(t('rep.done'));
    document.getElementById('rep-note').value = '';
    document.getElementById('rep-photo').value = '';
  } catch (err) {
    out.textContent = err instanceof ApiError ? err.message : String(err);
    toast(out.textContent, 'error');
  } finally {
    btn.disabled = false;
  }
}

async function main() {
  await startPage();
  const form = document.getElementById('report-form');
  if (!form) return; // a viewer's role cannot report
  options = (await api('/api/v1/reports/categories')).items;
  const sel = document.getElementById('rep-category');
  for (const o of options) sel.append(el('option', { value: o.code, text: label(o) }));
  sel.addEventListener('change', showStandard);
  showStandard();
  const cells = await api('/api/v1/grid/units?level=cell').catch(() => ({ items: [] }));
  const cellSel = document.getElementById('rep-cell');
  for (const u of cells.items) {
    cellSel.append(el('option', { value: u.code, text: `${lang() === 'zh-CN' ? (u.name_zh || u.name) : u.name} (${u.code})` }));
  }
  document.getElementById('rep-locate').addEventListener('click', locate);
  form.addEventListener('submit', submit);
}

main().catch((e) => toast(e.message, 'error'));
