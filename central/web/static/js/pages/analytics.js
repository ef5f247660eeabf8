// Analytics: KPI cards for a period, per squad / grid cell / category tables, zone × hour heat map, trend chart,
// parking supply and demand per community and hour of day.
import { api } from '../api.js';
import { initFindingsRuns } from '../findings_runs.js';
import { t } from '../i18n.js';
import {
  cameraLabel, categoryLabel, clear, el, fmtNum, fmtPct, squadLabel, startPage, toast, zoneLabel,
} from '../ui.js';
import { heatMap, lineChart } from '../svg.js';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
let categories = [];

function period() {
  const sel = document.getElementById('period').value;
  if (sel === 'custom') {
    const s = document.getElementById('since').value;
    const u = document.getElementById('until').value;
    if (s && u) return { since: new Date(`${s}T00:00:00`), until: new Date(new Date(`${u}T00:00:00`).getTime() + DAY) };
  }
  const days = Number(sel === 'custom' ? 7 : sel);
  const until = new Date();
  return { since: new Date(until.getTime() - days * DAY), until };
}

function q(p, extra = {}) {
  return new URLSearchParams({ since: p.since.toISOString(), until: p.until.toISOString(), ...extra }).toString();
}

function overall(rows) {
  return rows.find((r) => r.group === 'all') || rows[0] || {};
}

function renderKpis(row) {
  const fmt = {
    closure_rate: fmtPct, on_time_rate: fmtPct, rework_rate: fmtPct,
    avg_overtime_multiple: (v) => (v === null || v === undefined ? '–' : `×${fmtNum(v, 2)}`),
  };
  document.querySelectorAll('.kpi').forEach((card) => {
    const key = card.dataset.kpi;
    card.querySelector('.kpi-value').textContent = fmt[key](row[key]);
    // Every rate shows its numerator and denominator, so "100%" never hides "1 of 1 due (5 filed)".
    const due = row.due ?? 0;
    const sub = {
      closure_rate: t('kpi.closed_of', { closed: row.closed ?? 0, due, filed: row.cases_filed ?? 0 }),
      on_time_rate: t('kpi.on_time_of', { on_time: row.on_time ?? 0, due }),
      rework_rate: t('kpi.rework_of', { n: row.failed_verifications ?? 0, due }),
      avg_overtime_multiple: t('kpi.avg_handling', { h: fmtNum(row.avg_handling_h, 1), due }),
    };
    card.querySelector('.kpi-sub').textContent = sub[key] || '';
    const bad = key === 'closure_rate' || key === 'on_time_rate' ? (row[key] ?? 1) < 0.8 : (row[key] ?? 0) > (key === 'rework_rate' ? 0.1 : 1);
    card.classList.toggle('kpi-bad', Boolean(bad) && row[key] !== null && row[key] !== undefined);
  });
}

function groupLabel(groupBy, row) {
  const v = row[groupBy] ?? row.key ?? row.group ?? row[`${groupBy}_id`];
  if (groupBy === 'category') return categoryLabel(v, categories);
  if (groupBy === 'squad' && v) return squadLabel(v);
  return v === null || v === undefined || v === '' ? t('an.unassigned') : String(v);
}

function renderTable(groupBy, rows) {
  const box = clear(document.getElementById(`tbl-${groupBy}`));
  const cols = [
    ['incidents', (r) => r.incidents ?? '–'], ['cases_filed', (r) => r.cases_filed ?? '–'], ['closed', (r) => r.closed ?? '–'],
    ['closure_rate', (r) => fmtPct(r.closure_rate)], ['on_time_rate', (r) => fmtPct(r.on_time_rate)],
    ['rework_rate', (r) => fmtPct(r.rework_rate)], ['avg_overtime_multiple', (r) => fmtNum(r.avg_overtime_multiple, 2)],
  ];
  if (!rows.length) { box.append(el('p', { class: 'muted', text: t('an.no_data') })); return; }
  const table = el('table', { class: 'table compact', dataset: { groupBy } }, [
    el('thead', {}, [el('tr', {}, [el('th', { text: t(`an.col.${groupBy}`) }), ...cols.map(([k]) => el('th', { text: t(`kpi.${k}`) }))])]),
    el('tbody', {}, rows.map((r) => el('tr', {}, [el('td', { text: groupLabel(groupBy, r) }), ...cols.map(([, f]) => el('td', { class: 'num', text: String(f(r)) }))]))),
  ]);
  box.append(table);
}

/** by_zone_hour may be [{zone, hour, count}] or {zone: [24 counts]}; normalise to rows × 24. */
function zoneHourMatrix(data) {
  const byZone = new Map();
  if (Array.isArray(data)) {
    data.forEach((d) => {
      const key = d.camera_id && d.zone ? `${cameraLabel(d.camera_id)} / ${zoneLabel(d.camera_id, d.zone)}` : (d.zone ?? d.key ?? '?');
      if (!byZone.has(key)) byZone.set(key, new Array(24).fill(0));
      byZone.get(key)[Number(d.hour)] += Number(d.count ?? d.n ?? 0);
    });
  } else if (data && typeof data === 'object') {
    Object.entries(data).forEach(([zone, hours]) => {
      const row = new Array(24).fill(0);
      if (Array.isArray(hours)) hours.forEach((v, i) => { row[i] = Number(v) || 0; });
      else Object.entries(hours || {}).forEach(([h, v]) => { row[Number(h)] = Number(v) || 0; });
      byZone.set(zone, row);
    });
  }
  const rows = [...byZone.entries()].sort((a, b) => b[1].reduce((x, y) => x + y, 0) - a[1].reduce((x, y) => x + y, 0)).slice(0, 20);
  return { labels: rows.map(([k]) => k), matrix: rows.map(([, v]) => v) };
}

function renderHeat(hot) {
  const box = clear(document.getElementById('heatmap'));
  const { labels, matrix } = zoneHourMatrix(hot.by_zone_hour);
  if (!labels.length) { box.append(el('p', { class: 'muted', text: t('an.no_data') })); return; }
  const hours = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'));
  box.append(heatMap(labels, hours, matrix, { title: (r, c, v) => t('an.heat_tip', { zone: r, hour: c, n: v }) }));
}

/** Parking supply and demand (GET /api/v1/parking/supply): one row per area and hour that has supply or demand. */
function renderParking(data) {
  const box = clear(document.getElementById('tbl-parking'));
  if (data.error) { box.append(el('p', { class: 'muted', text: `${t('common.error')}: ${data.error}` })); return; }
  const rows = (data.rows || []).filter((r) => r.supply > 0 || r.demand > 0);
  if (!rows.length) { box.append(el('p', { class: 'muted', text: t('an.parking_none') })); return; }
  const cols = [
    ['supply', (r) => fmtNum(r.supply, 1)], ['occupied', (r) => fmtNum(r.occupied, 1)],
    ['occupancy_rate', (r) => fmtPct(r.occupancy_rate)], ['illegal_parking', (r) => fmtNum(r.illegal_parking, 2)],
    ['demand', (r) => fmtNum(r.demand, 1)], ['shortfall', (r) => fmtNum(r.shortfall, 2)],
  ];
  const hour = (h) => `${String(h).padStart(2, '0')}:00`;
  box.append(el('table', { class: 'table compact', dataset: { table: 'parking' } }, [
    el('thead', {}, [el('tr', {}, [el('th', { text: t('an.col.area') }), el('th', { text: t('an.col.hour') }),
      ...cols.map(([k]) => el('th', { text: t(`an.pk.${k}`) }))])]),
    el('tbody', {}, rows.map((r) => el('tr', { class: r.shortfall > 0 ? 'kpi-bad' : '', dataset: { area: r.area, hour: r.hour } }, [
      el('td', { text: r.area_name ? `${r.area_name} (${r.area})` : r.area }), el('td', { text: hour(r.hour) }),
      ...cols.map(([, f]) => el('td', { class: 'num', text: String(f(r)) }))]))),
  ]));
}

/** Split the period into at most ~31 buckets (hours for a day, days for a month) and ask the KPIs for each. */
async function renderTrend(p) {
  const box = document.getElementById('trend');
  const span = p.until - p.since;
  const step = span <= 2 * DAY ? 4 * HOUR : Math.max(DAY, Math.ceil(span / (31 * DAY)) * DAY);
  // Buckets end at `until` and start on local midnights (days) or whole hours, so labels name real days.
  const first = new Date(p.since);
  if (step >= DAY) { first.setHours(0, 0, 0, 0); first.setDate(first.getDate() + 1); } else first.setMinutes(0, 0, 0);
  const buckets = [];
  for (let s = first.getTime(); s < p.until.getTime(); s += step) buckets.push([new Date(s), new Date(Math.min(s + step, p.until.getTime()))]);
  const rows = await Promise.all(buckets.map(([since, until]) => api(`/api/v1/kpis?${q({ since, until })}`).then((d) => overall(d.rows || []))));
  const labels = buckets.map(([s]) => (step < DAY
    ? s.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : s.toLocaleDateString([], { month: '2-digit', day: '2-digit' })));
  clear(box).append(lineChart(labels, [
    { name: t('an.series.incidents'), values: rows.map((r) => r.incidents ?? 0), className: 'series-0' },
    { name: t('an.series.filed'), values: rows.map((r) => r.cases_filed ?? 0), className: 'series-1' },
    { name: t('an.series.closed'), values: rows.map((r) => r.closed ?? 0), className: 'series-2' },
  ], { width: Math.max(480, box.clientWidth || 720), height: 260, yFormat: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) }));
}

async function load() {
  const p = period();
  try {
    const [all, squad, grid, cat, hot, parking] = await Promise.all([
      api(`/api/v1/kpis?${q(p)}`),
      api(`/api/v1/kpis?${q(p, { group_by: 'squad' })}`),
      api(`/api/v1/kpis?${q(p, { group_by: 'grid_cell' })}`),
      api(`/api/v1/kpis?${q(p, { group_by: 'category' })}`),
      api(`/api/v1/hotspots?${q(p)}`),
      // a failure here shows in the parking card only: the rest of the page stands on its own
      api(`/api/v1/parking/supply?${q(p)}`).catch((err) => ({ error: err.message })),
    ]);
    renderKpis(overall(all.rows || []));
    renderTable('squad', squad.rows || []);
    renderTable('grid_cell', grid.rows || []);
    renderTable('category', cat.rows || []);
    renderHeat(hot);
    renderParking(parking);
    await renderTrend(p);
    document.body.dataset.loaded = 'true';
  } catch (err) { toast(`${t('common.error')}: ${err.message}`, 'error'); }
}

async function main() {
  await startPage();
  try {
    const cats = await api('/api/v1/categories');
    categories = Array.isArray(cats) ? cats : cats.items || [];
  } catch { categories = []; }
  const sel = document.getElementById('period');
  sel.addEventListener('change', () => {
    document.querySelectorAll('.custom').forEach((n) => { n.hidden = sel.value !== 'custom'; });
    if (sel.value !== 'custom') load();
  });
  ['since', 'until'].forEach((id) => document.getElementById(id).addEventListener('change', load));
  await load();
  await initFindingsRuns(period).catch((err) => toast(`${t('common.error')}: ${err.message}`, 'error'));
}

main();
