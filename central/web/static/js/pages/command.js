// Command center: ranked evaluation (person, squad, grid unit, level, category) with CSV / XLSX export, the share
// resolved at each level, and the automatic findings report.
import { ApiError, api, getToken } from '../api.js';
import { lang, t } from '../i18n.js';
import { clear, el, fmtNum, fmtPct, squadLabel, startPage, toast } from '../ui.js';

const DAY = 24 * 3600 * 1000;
const LEVELS = ['cell', 'community', 'street', 'district'];

function period() {
  const sel = document.getElementById('cc-period').value;
  if (sel === 'custom') {
    const s = document.getElementById('cc-since').value;
    const u = document.getElementById('cc-until').value;
    if (s && u) return { since: new Date(`${s}T00:00:00`), until: new Date(new Date(`${u}T00:00:00`).getTime() + DAY) };
  }
  const days = Number(sel === 'custom' ? 30 : sel);
  const until = new Date();
  return { since: new Date(until.getTime() - days * DAY), until };
}

function params(extra = {}) {
  const p = period();
  const out = { since: p.since.toISOString(), until: p.until.toISOString(), ...extra };
  const unit = document.getElementById('cc-unit').value;
  if (unit) out.grid_unit = unit;
  return new URLSearchParams(out).toString();
}

function keyLabel(by, row) {
  if (row.key === null || row.key === undefined || row.key === '') return t('an.unassigned');
  if (by === 'squad') return squadLabel(row.key);
  if (by === 'level') return t(`cc.level.${row.key}`);
  const name = lang() === 'zh-CN' ? (row.name_zh || row.name) : (row.name || row.name_zh);
  return name ? `${name} (${row.key})` : String(row.key);
}

function change(v) {
  if (v === null || v === undefined) return el('span', { class: 'muted', text: '–' });
  const pts = (v * 100).toFixed(1);
  return el('span', { class: v >= 0 ? 'cc-up' : 'cc-down', text: `${v >= 0 ? '+' : ''}${pts}` });
}

async function loadEvaluation() {
  const by = document.getElementById('cc-by').value;
  const box = clear(document.getElementById('cc-eval-table'));
  const data = await api(`/api/v1/evaluation?${params({ by })}`);
  if (!data.rows.length) { box.append(el('p', { class: 'muted', text: t('an.no_data') })); return; }
  const cols = [
    ['cases', (r) => r.cases], ['closed', (r) => r.closed], ['closure_rate', (r) => fmtPct(r.closure_rate)],
    ['on_time_rate', (r) => fmtPct(r.on_time_rate)], ['avg_overtime_multiple', (r) => fmtNum(r.avg_overtime_multiple, 2)],
    ['rework_rate', (r) => fmtPct(r.rework_rate)], ['escalations', (r) => r.escalations],
    ['median_handling_h', (r) => fmtNum(r.median_handling_h, 1)],
  ];
  box.append(el('table', { class: 'table compact', dataset: { by } }, [
    el('thead', {}, [el('tr', {}, [
      el('th', { class: 'rank', text: '#' }), el('th', { text: t(`cc.by.${by}`) }),
      ...cols.map(([k]) => el('th', { text: t(`cc.col.${k}`) })), el('th', { text: t('cc.col.trend') }),
    ])]),
    el('tbody', {}, data.rows.map((r) => el('tr', { dataset: { key: r.key ?? '' } }, [
      el('td', { class: 'rank', text: String(r.rank) }), el('td', { text: keyLabel(by, r) }),
      ...cols.map(([, f]) => el('td', { class: 'num', text: String(f(r) ?? '–') })),
      el('td', { class: 'num' }, [change(r.on_time_rate_change)]),
    ]))),
  ]));
}

async function loadLevels() {
  const box = clear(document.getElementById('cc-levels-table'));
  const data = await api(`/api/v1/kpis/levels?${params({ bucket: 'month' })}`);
  if (!data.rows.length) { box.append(el('p', { class: 'muted', text: t('an.no_data') })); return; }
  box.append(el('table', { class: 'table compact' }, [
    el('thead', {}, [el('tr', {}, [el('th', { text: t('cc.col.period') }), el('th', { text: t('cc.col.closed') }),
      ...LEVELS.map((l) => el('th', { text: t(`cc.level.${l}`) }))])]),
    el('tbody', {}, data.rows.map((r) => el('tr', {}, [
      el('td', { text: r.period }), el('td', { class: 'num', text: String(r.closed) }),
      ...LEVELS.map((l) => el('td', { class: 'num', text: `${fmtPct(r.share[l])} (${r.by_level[l]})` })),
    ]))),
  ]));
}

async function loadFindings() {
  const list = clear(document.getElementById('cc-findings-list'));
  const data = await api(`/api/v1/findings?${params()}`);
  const key = lang() === 'zh-CN' ? 'text_zh' : 'text';
  if (!data.findings.length) list.append(el('li', { class: 'muted', text: t('cc.nothing') }));
  for (const f of data.findings) {
    list.append(el('li', { dataset: { kind: f.kind } }, [el('span', { class: 'kind', text: t(`cc.kind.${f.kind}`) }), f[key]]));
  }
  const tests = Object.values(data.tests).reduce((a, b) => a + b, 0);
  document.getElementById('cc-findings-meta').textContent = t('cc.findings_meta', { cases: data.cases, tests });
}

/** Download an export with the Bearer header (a plain link could not carry it). */
async function download(query, filename) {
  const res = await fetch(query, { headers: { Authorization: `Bearer ${getToken()}` }, credentials: 'omit' });
  if (!res.ok) { toast(`${t('common.error')}: HTTP ${res.status}`, 'error'); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function loadUnits() {
  const sel = document.getElementById('cc-unit');
  const data = await api('/api/v1/grid/units');
  for (const u of data.items.filter((x) => x.level !== 'cell')) {
    const name = lang() === 'zh-CN' ? (u.name_zh || u.name) : u.name;
    sel.append(el('option', { value: u.code, text: `${t(`cc.level.${u.level}`)} · ${name} (${u.code})` }));
  }
}

async function refresh() {
  const jobs = [loadEvaluation(), loadLevels(), loadFindings()];
  for (const r of await Promise.allSettled(jobs)) {
    if (r.status === 'rejected') toast(r.reason instanceof ApiError ? r.reason.message : String(r.reason), 'error');
  }
}

async function main() {
  await startPage();
  await loadUnits().catch(() => {});
  const form = document.getElementById('cc-form');
  form.addEventListener('change', (e) => {
    const custom = document.getElementById('cc-period').value === 'custom';
    form.querySelectorAll('.custom').forEach((n) => { n.hidden = !custom; });
    if (e.target.id !== 'cc-period' || !custom) refresh();
  });
  document.getElementById('cc-by').addEventListener('change', () => loadEvaluation().catch((e) => toast(e.message, 'error')));
  for (const fmt of ['csv', 'xlsx']) {
    document.getElementById(`cc-${fmt}`).addEventListener('click', () => {
      const by = document.getElementById('cc-by').value;
      download(`/api/v1/evaluation?${params({ by, format: fmt })}`, `gridwatch-evaluation-${by}.${fmt}`);
    });
  }
  document.getElementById('cc-report').addEventListener('click', () => {
    download(`/api/v1/findings?${params({ format: 'html', lang: lang() })}`, 'gridwatch-findings.html');
  });
  await refresh();
}

main();
