// Case page, command-center parts: the grid path (district → street → community → cell) as a breadcrumb, and a
// crowd case's response plan for its current level beside the count and the forecast.
import { lang, t, tOr } from './i18n.js';
import { clear, el, fmtNum, squadLabel } from './ui.js';

function unitName(u) { return (lang() === 'zh-CN' && u.name_zh) || u.name; }

/** The breadcrumb: each level links to the queue filtered by that unit. */
export function renderGridPath(c) {
  const nav = clear(document.getElementById('case-grid-path'));
  const path = c.grid_path || [];
  nav.hidden = path.length === 0;
  path.forEach((u, i) => {
    if (i) nav.append(el('span', { class: 'sep', 'aria-hidden': 'true', text: '›' }));
    nav.append(el('a', {
      href: `/queue?grid_unit=${encodeURIComponent(u.code)}`, dataset: { level: u.level, code: u.code },
      title: `${tOr(`level.unit.${u.level}`, u.level)} ${u.code}${u.team ? ` · ${squadLabel(u.team)}` : ''}`,
      text: unitName(u),
    }));
  });
}

/** The response plan card (hidden for cases without a crowd figure). */
export function renderPlan(c) {
  const card = document.getElementById('plan-card');
  const crowd = c.crowd;
  card.hidden = !crowd;
  if (!crowd) return;
  const plan = c.crowd_plan;
  const level = crowd.level || '–';
  const head = clear(document.getElementById('plan-level'));
  head.append(el('span', { class: `badge level-${level}`, text: tOr(`level.${level}`, level) }));
  const f = crowd.forecast;
  if (f) {
    head.append(el('span', {
      class: 'muted', id: 'plan-forecast',
      text: ` ${t('plan.forecast', { level: tOr(`level.${f.predicted_level}`, f.predicted_level || '–'),
        min: Math.round((f.horizon_s || 0) / 6) / 10, density: fmtNum(f.predicted_density, 3) })}`
        + (f.early_warning ? ` · ${t('cams.early_warning')}` : ''),
    }));
  }
  const body = clear(document.getElementById('plan-body'));
  if (!plan) { body.append(el('p', { class: 'muted', text: t('plan.none') })); return; }
  const text = (lang() === 'zh-CN' && plan.plan_zh) || plan.plan;
  body.append(el('p', { id: 'plan-text', class: 'plan-text', text }));
  if (plan.plan_level !== plan.level) {
    body.append(el('p', { class: 'muted', text: t('plan.lower', { level: tOr(`level.${plan.plan_level}`, plan.plan_level) }) }));
  }
  const dl = el('dl', { class: 'facts' });
  if (plan.notify.length) dl.append(el('dt', { text: t('plan.notify') }), el('dd', { id: 'plan-notify', text: plan.notify.map(squadLabel).join(', ') }));
  if (plan.dispatch.length) dl.append(el('dt', { text: t('plan.dispatch') }), el('dd', { id: 'plan-dispatch', text: plan.dispatch.map(squadLabel).join(', ') }));
  body.append(dl);
}
