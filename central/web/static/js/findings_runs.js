// Analytics page: the stored findings runs (weekly on the schedule, or run now), the newest run's findings, and each
// run's self-contained HTML report for download.
import { api, getToken } from './api.js';
import { lang, t } from './i18n.js';
import { clear, el, fmtTime, roleAllows, toast } from './ui.js';

let runs = [];

async function download(id) {
  const res = await fetch(`/api/v1/findings/runs/${id}?format=html&lang=${encodeURIComponent(lang())}`,
    { headers: { Authorization: `Bearer ${getToken()}` }, credentials: 'omit' });
  if (!res.ok) { toast(`${t('common.error')}: HTTP ${res.status}`, 'error'); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = el('a', { href: url, download: `gridwatch-findings-${id}.html` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function show(id) {
  const run = await api(`/api/v1/findings/runs/${id}`);
  const list = clear(document.getElementById('fr-findings'));
  const key = lang() === 'zh-CN' ? 'text_zh' : 'text';
  const items = run.report.findings || [];
  if (!items.length) list.append(el('li', { class: 'muted', text: t('cc.nothing') }));
  items.forEach((f) => list.append(el('li', { dataset: { kind: f.kind } }, [
    el('span', { class: 'kind', text: t(`cc.kind.${f.kind}`) }), f[key]])));
  document.getElementById('fr-meta').textContent = t('fr.meta', {
    id: run.id, since: fmtTime(run.since), until: fmtTime(run.until), cases: run.cases,
    trigger: t(`fr.trigger.${run.trigger}`),
  });
  document.querySelectorAll('#fr-runs li').forEach((li) => li.classList.toggle('current', li.dataset.run === String(id)));
}

async function refresh() {
  const data = await api('/api/v1/findings/runs?limit=12');
  runs = data.items;
  const sch = data.schedule;
  document.getElementById('fr-schedule').textContent = sch.enabled
    ? t('fr.schedule', { weekday: t(`fr.day.${sch.weekday}`), time: sch.time, tz: sch.timezone, days: sch.period_days,
      next: fmtTime(sch.next_run) })
    : t('fr.schedule_off');
  const ol = clear(document.getElementById('fr-runs'));
  document.getElementById('fr-empty').hidden = runs.length > 0;
  runs.forEach((r) => ol.append(el('li', { dataset: { run: r.id } }, [
    el('a', { href: '#', text: `#${r.id} · ${fmtTime(r.started_at)} · ${t(`fr.trigger.${r.trigger}`)} · `
      + t('fr.n_findings', { n: r.finding_count }), on: { click: (ev) => { ev.preventDefault(); show(r.id); } } }),
    ' ',
    el('button', { type: 'button', class: 'btn btn-ghost fr-html', dataset: { run: r.id }, text: t('fr.html'),
      on: { click: () => download(r.id) } }),
  ])));
  if (runs.length) await show(runs[0].id);
}

/** Fill the findings card; `period()` gives the analytics page's current period for "Run now". */
export async function initFindingsRuns(period) {
  const button = document.getElementById('fr-run');
  if (!roleAllows(document.body.dataset.role, 'dispatcher')) button.remove();
  else {
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const p = period();
        const q = new URLSearchParams({ since: p.since.toISOString(), until: p.until.toISOString() });
        const run = await api(`/api/v1/findings/runs?${q}`, { method: 'POST' });
        toast(t('fr.done', { id: run.id, n: run.finding_count }), 'ok');
        await refresh();
      } catch (err) {
        toast(`${t('common.error')}: ${err.message}`, 'error');
      } finally { button.disabled = false; }
    });
  }
  await refresh();
}
