// Case detail: evidence before/after, facts, audit timeline and the workflow actions this role may take.
import { api, evidenceUrl, stream } from '../api.js';
import { renderGridPath, renderPlan } from '../case_command.js';
import { t, tOr } from '../i18n.js';
import {
  actionLabel, cameraLabel, categoryLabel, clear, configuredSquads, departmentLabel, el, fmtNum, fmtRelative, fmtTime,
  setLive,
  squadLabel, startPage, stateLabel, toast, zoneLabel,
} from '../ui.js';

const caseId = Number(document.body.dataset.caseId);
let categories = [];
let current = null;
let pending = null; // the action whose form is open

// Which inputs each action shows; `required` fields must be filled before submitting.
const ACTION_FIELDS = {
  dispatch: { squad: true, assignee: false, note: false },
  reassign: { squad: true, assignee: false, note: false },
  feedback: { note: true, photo: false },
  verify_fail: { note: true },
  reject: { note: true },
  mark_duplicate: { note: false },
  suspend: { note: true },
};
const PRIMARY = new Set(['file', 'dispatch', 'start', 'feedback', 'submit_verification', 'verify_pass']);
const DANGER = new Set(['reject', 'verify_fail', 'mark_duplicate', 'suspend']);

async function image(frame, sha, alt) {
  clear(frame);
  if (!sha) { frame.append(el('span', { class: 'muted', text: t('case.no_image') })); return; }
  const url = await evidenceUrl(sha);
  if (url) frame.append(el('img', { src: url, alt }));
  else frame.append(el('span', { class: 'muted', text: t('case.image_missing') }));
}

function fact(dl, key, value) {
  if (value === null || value === undefined || value === '') return;
  dl.append(el('dt', { text: t(key) }), el('dd', { text: String(value) }));
}

function renderFacts(c) {
  const dl = clear(document.getElementById('case-facts'));
  fact(dl, 'col.case', c.public_id);
  fact(dl, 'col.category', categoryLabel(c.category, categories));
  fact(dl, 'case.camera', c.camera_id ? cameraLabel(c.camera_id, c.camera_name) : null);
  fact(dl, 'case.zone', zoneLabel(c.camera_id, c.zone));
  fact(dl, 'col.where', c.address);
  fact(dl, 'filter.grid_cell', c.grid_cell);
  fact(dl, 'case.department', c.department ? departmentLabel(c.department) : null);
  fact(dl, 'case.squad', c.squad ? squadLabel(c.squad) : null);
  fact(dl, 'case.assignee', c.assignee);
  fact(dl, 'col.reported', fmtTime(c.reported_at));
  fact(dl, 'case.due', c.due_at ? fmtTime(c.due_at) : null);
  fact(dl, 'case.rework', c.rework_count);
  fact(dl, 'case.recurrence', c.recurrence_count || null);
  fact(dl, 'case.description', c.description || c.title);
  const crowd = c.crowd;
  if (crowd) {
    const interval = crowd.count_low !== undefined ? ` (${crowd.count_low}–${crowd.count_high})` : '';
    fact(dl, 'case.crowd', `${crowd.count}${interval} · ${tOr(`level.${crowd.level}`, crowd.level || '–')}`
      + (crowd.count_method ? ` · ${crowd.count_method}` : ''));
    if (crowd.density !== undefined) {
      const cell = crowd.peak_cell;
      const where = cell && Array.isArray(cell.center_m) ? ` (${fmtNum(cell.center_m[0], 1)}, ${fmtNum(cell.center_m[1], 1)} m)` : '';
      fact(dl, 'case.density', `${fmtNum(crowd.density, 3)} /m²`
        + (crowd.peak_density !== undefined ? ` · ${t('cams.peak')} ${fmtNum(crowd.peak_density, 3)} /m²${where}` : ''));
    }
    const f = crowd.forecast;
    if (f) {
      fact(dl, 'cams.forecast', `${fmtNum(f.predicted_density, 3)} /m² · ${Math.round((f.horizon_s || 0) / 6) / 10} min · `
        + `${tOr(`level.${f.predicted_level}`, f.predicted_level || '–')}${f.early_warning ? ` · ${t('cams.early_warning')}` : ''}`);
    }
  }
}

function renderTimeline(audit) {
  const ol = clear(document.getElementById('timeline'));
  [...(audit || [])].reverse().forEach((a) => {
    const head = el('div', { class: 'tl-head' }, [
      el('strong', { text: actionLabel(a.action) }),
      a.to_state && a.from_state && a.from_state !== a.to_state ? el('span', { class: 'muted', text: ` ${stateLabel(a.from_state)} → ${stateLabel(a.to_state)}` }) : null,
    ]);
    const meta = el('div', { class: 'tl-meta muted', text: `${fmtTime(a.at)} · ${a.actor || ''}` });
    const li = el('li', { dataset: { action: a.action } }, [head, meta]);
    if (a.note) li.append(el('p', { class: 'tl-note', text: a.note }));
    const files = a.attachments || a.attachments_json || [];
    if (files.length) {
      const box = el('div', { class: 'thumbs' });
      files.forEach((sha) => {
        const frame = el('div', { class: 'thumb' });
        box.append(frame);
        evidenceUrl(typeof sha === 'string' ? sha : sha.sha256).then((url) => url && frame.append(el('img', { src: url, alt: '' })));
      });
      li.append(box);
    }
    ol.append(li);
  });
}

function renderHeader(c) {
  document.getElementById('case-title').textContent = `${c.public_id || `#${c.id}`} · ${categoryLabel(c.category, categories)}`;
  const badge = document.getElementById('case-state');
  badge.textContent = stateLabel(c.state);
  badge.className = `badge state-${c.state}`;
  const dl = document.getElementById('case-deadline');
  const sla = c.sla || {};
  const deadline = sla.deadline || c.stage_deadline_at;
  dl.className = `deadline sla sla-${sla.colour || 'none'}`;
  dl.textContent = sla.overdue ? t('sla.overdue') : (deadline ? `${t('col.deadline')}: ${fmtRelative(deadline)}` : '');
}

function renderActions(c) {
  const box = clear(document.getElementById('action-buttons'));
  const actions = c.allowed_actions || [];
  document.getElementById('no-actions').hidden = actions.length > 0;
  actions.forEach((action) => {
    const cls = DANGER.has(action) ? 'btn btn-danger' : PRIMARY.has(action) ? 'btn btn-primary' : 'btn';
    box.append(el('button', { type: 'button', class: cls, dataset: { action }, text: actionLabel(action), on: { click: () => openAction(action) } }));
  });
  document.getElementById('action-fields').hidden = true;
  pending = null;
  // Notes need a write role; the API decides, the UI only offers it to roles that have any action or are staff.
  const role = document.body.dataset.role;
  document.getElementById('note-form').hidden = role === 'viewer';
  document.getElementById('actions-card').hidden = role === 'viewer';
}

/** The squad picker: the squads configured in central.yaml (the case's own squad first if it is not one of them). */
function fillSquads(selected) {
  const select = clear(document.getElementById('in-squad'));
  const squads = configuredSquads();
  select.append(el('option', { value: '', text: t('case.pick_squad') }));
  if (selected && !squads.some((q) => q.code === selected)) select.append(el('option', { value: selected, text: selected }));
  squads.forEach((q) => select.append(el('option', { value: q.code, text: squadLabel(q.code) })));
  select.value = selected || '';
}

function openAction(action) {
  pending = action;
  const spec = ACTION_FIELDS[action] || { note: false };
  document.getElementById('fld-squad').hidden = !('squad' in spec);
  document.getElementById('fld-assignee').hidden = !('assignee' in spec);
  document.getElementById('fld-photo').hidden = !('photo' in spec);
  document.getElementById('in-squad').required = Boolean(spec.squad);
  document.getElementById('in-note').required = Boolean(spec.note);
  document.getElementById('in-photo').required = Boolean(spec.photo);
  if (spec.squad) fillSquads(current && current.squad);
  const submit = document.getElementById('action-submit');
  submit.textContent = t('case.confirm', { action: actionLabel(action) });
  submit.dataset.action = action;
  document.getElementById('action-fields').hidden = false;
  document.getElementById('action-error').hidden = true;
  document.getElementById(spec.squad ? 'in-squad' : 'in-note').focus();
}

async function submitAction(ev) {
  ev.preventDefault();
  if (!pending) return;
  const error = document.getElementById('action-error');
  error.hidden = true;
  const submit = document.getElementById('action-submit');
  submit.disabled = true;
  try {
    const body = { action: pending };
    const note = document.getElementById('in-note').value.trim();
    if (note) body.note = note;
    const spec = ACTION_FIELDS[pending] || {};
    if ('squad' in spec) body.squad = document.getElementById('in-squad').value || null;
    if ('assignee' in spec) body.assignee = document.getElementById('in-assignee').value.trim() || null;
    const file = document.getElementById('in-photo').files[0];
    if ('photo' in spec && file) {
      const form = new FormData();
      form.append('file', file);
      form.append('kind', pending === 'feedback' ? 'after' : 'attachment');
      const up = await api(`/api/v1/cases/${caseId}/attachments`, { method: 'POST', form });
      body.attachments = [up.sha256];
    }
    await api(`/api/v1/cases/${caseId}/transitions`, { method: 'POST', body });
    document.getElementById('action-form').reset();
    toast(t('case.done', { action: actionLabel(pending) }), 'ok');
    await load();
  } catch (err) {
    error.textContent = err.status === 409 ? t('case.conflict') : `${t('common.error')}: ${err.message}`;
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
}

async function load() {
  const c = await api(`/api/v1/cases/${caseId}`);
  current = c;
  renderHeader(c);
  renderFacts(c);
  const ev = c.evidence || [];
  const before = c.snapshot_sha256 || ev.find((e) => e.kind === 'before')?.sha256;
  const after = c.after_photo_sha256 || [...ev].reverse().find((e) => e.kind === 'after')?.sha256;
  image(document.getElementById('ev-before'), before, t('case.before'));
  image(document.getElementById('ev-after'), after, t('case.after'));
  // parking: the vehicle when it was first seen staying, beside the moment the dwell was exceeded
  const arrival = ev.find((e) => e.kind === 'arrival');
  const beforeEv = ev.find((e) => e.sha256 === before);
  document.getElementById('ev-dwell').hidden = !arrival;
  if (arrival) {
    image(document.getElementById('ev-arrival'), arrival.sha256, t('case.arrival'));
    image(document.getElementById('ev-exceeded'), before, t('case.exceeded'));
    document.getElementById('ev-arrival-cap').textContent = `${t('case.arrival')} · ${fmtTime(arrival.at)}`;
    document.getElementById('ev-exceeded-cap').textContent =
      `${t('case.exceeded')} · ${fmtTime(beforeEv ? beforeEv.at : c.reported_at)}`;
  }
  const more = clear(document.getElementById('ev-more'));
  ev.filter((e) => e.sha256 !== before && e.sha256 !== after && e !== arrival).forEach((e) => {
    const frame = el('div', { class: 'thumb', title: `${e.kind} · ${fmtTime(e.at)}` });
    more.append(frame);
    evidenceUrl(e.sha256).then((url) => url && frame.append(el('img', { src: url, alt: e.kind })));
  });
  renderTimeline(c.audit);
  renderActions(c);
  renderGridPath(c);
  renderPlan(c);
}

async function main() {
  await startPage();
  try {
    const cats = await api('/api/v1/categories');
    categories = Array.isArray(cats) ? cats : cats.items || [];
  } catch { categories = []; }
  document.getElementById('action-form').addEventListener('submit', submitAction);
  document.getElementById('action-cancel').addEventListener('click', () => {
    document.getElementById('action-fields').hidden = true;
    pending = null;
  });
  document.getElementById('note-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = document.getElementById('note-text');
    try {
      await api(`/api/v1/cases/${caseId}/notes`, { method: 'POST', body: { note: text.value.trim() } });
      text.value = '';
      await load();
    } catch (err) { toast(`${t('common.error')}: ${err.message}`, 'error'); }
  });
  try { await load(); } catch (err) {
    document.getElementById('case-title').textContent = err.status === 404 ? t('case.not_found') : `${t('common.error')}: ${err.message}`;
    return;
  }
  stream((kind, data) => {
    if (kind === 'case.updated' && data && Number(data.id) === caseId && !pending) load().catch(() => {});
  }, setLive);
}

main();
