// Small DOM helpers shared by the page modules, and the per-page start-up (sign-in check, nav, role gating).
import { api, me, signOut } from './api.js';
import { initI18n, lang, t, tOr } from './i18n.js';

/** Create an element: el('td', {class: 'x', text: 'y', dataset: {id: 1}, on: {click: fn}}, [children]). */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, v);
  }
  for (const c of [].concat(children)) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function clear(node) { while (node.firstChild) node.firstChild.remove(); return node; }

export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(lang(), { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** "3 min ago" / "in 2 h" in the current language. */
export function fmtRelative(iso) {
  if (!iso) return '–';
  const diff = (new Date(iso).getTime() - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(lang(), { numeric: 'auto' });
  const abs = Math.abs(diff);
  if (abs < 60) return rtf.format(Math.round(diff), 'second');
  if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
  return rtf.format(Math.round(diff / 86400), 'day');
}

export function fmtPct(x) { return x === null || x === undefined || Number.isNaN(x) ? '–' : `${(x * 100).toFixed(1)}%`; }
export function fmtNum(x, digits = 1) { return x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(digits); }

export function stateLabel(state) { return tOr(`state.${state}`, state || '–'); }
export function actionLabel(action) { return tOr(`action.${action}`, action); }
export function categoryLabel(code, categories = []) {
  const c = categories.find((x) => x.code === code);
  if (c) return lang() === 'zh-CN' && c.name_zh ? c.name_zh : c.name;
  return tOr(`cat.${code}`, code || '–');
}

// Display names from central.yaml (GET /api/v1/labels), loaded once per page by startPage().
let labels = { departments: [], squads: [], cameras: {}, zones: {} };

function pick(entry) { return lang() === 'zh-CN' && entry.name_zh ? entry.name_zh : entry.name; }

export async function loadLabels() {
  try {
    labels = { ...labels, ...(await api('/api/v1/labels')) };
  } catch { /* labels are a convenience: codes are shown without them */ }
  return labels;
}
export function configuredSquads() { return labels.squads || []; }
export function departmentLabel(code) {
  const d = (labels.departments || []).find((x) => x.code === code);
  return d ? pick(d) : (code || '–');
}
export function squadLabel(code) {
  const q = (labels.squads || []).find((x) => x.code === code);
  return q ? pick(q) : (code || '–');
}
/** A camera's display name: central.yaml's, else the name the edge sent, else its id. */
export function cameraLabel(cameraId, edgeName = null) {
  const c = (labels.cameras || {})[cameraId];
  return c ? pick(c) : (edgeName || cameraId || '–');
}
/** A zone's display name: central.yaml's for "camera/zone", then for "zone", else the zone name itself. */
export function zoneLabel(cameraId, zone) {
  if (!zone) return '';
  const z = (labels.zones || {})[`${cameraId}/${zone}`] || (labels.zones || {})[zone];
  return z ? pick(z) : zone;
}

let toastTimer = null;
export function toast(message, kind = 'info') {
  const box = document.getElementById('toast');
  if (!box) return;
  box.textContent = message;
  box.className = `toast toast-${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

export function setLive(connected) {
  const dot = document.getElementById('live-dot');
  if (!dot) return;
  dot.hidden = false;
  dot.classList.toggle('off', !connected);
  dot.title = connected ? t('stream.live') : t('stream.offline');
}

const ROLE_RANK = { viewer: 0, handler: 1, dispatcher: 1, admin: 2 };

/** Does `role` satisfy `required` (viewer < handler|dispatcher < admin; admin satisfies all)? */
export function roleAllows(role, required) {
  if (role === 'admin' || required === 'viewer') return true;
  if (required === 'admin') return false;
  return role === required || (ROLE_RANK[role] ?? -1) > (ROLE_RANK[required] ?? 9);
}

/** Every page: translate, require a token, show who is signed in, hide what the role cannot do. */
export async function startPage() {
  await initI18n();
  document.querySelectorAll('[data-nav]').forEach((a) => {
    if (a.dataset.nav === document.body.dataset.page) a.setAttribute('aria-current', 'page');
  });
  const out = document.getElementById('sign-out');
  if (out) out.addEventListener('click', signOut);
  const who = await me();
  const whoami = document.getElementById('whoami');
  if (whoami) {
    whoami.textContent = `${who.name || ''} · ${tOr(`role.${who.role}`, who.role)}`;
    whoami.dataset.role = who.role;
  }
  document.body.dataset.role = who.role;
  await loadLabels();
  document.querySelectorAll('[data-requires]').forEach((node) => {
    if (!roleAllows(who.role, node.dataset.requires)) node.remove();
  });
  return who;
}
