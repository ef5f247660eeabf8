// Grid-unit picker: one select per level (district → street → community → cell), each narrowed by the one above;
// the value is the deepest unit chosen (any level). Built from GET /api/v1/grid.
import { api } from './api.js';
import { lang, t } from './i18n.js';
import { clear, el } from './ui.js';

const LEVELS = ['district', 'street', 'community', 'cell'];

function label(u) { return `${(lang() === 'zh-CN' && u.name_zh) || u.name} (${u.code})`; }

/** Fill `box` with the picker; `onChange(code)` is called when the choice changes. */
export async function gridPicker(box, onChange = () => {}) {
  const tree = await api('/api/v1/grid');
  const byCode = new Map();
  const walk = (units, parent) => units.forEach((u) => { byCode.set(u.code, { ...u, parent }); walk(u.units || [], u.code); });
  walk(tree.districts || [], null);
  const selects = LEVELS.map((level) => el('select', {
    id: `f-unit-${level}`, 'aria-label': t(`level.unit.${level}`), dataset: { level },
  }));
  clear(box).append(...selects);

  function children(parent, level) {
    return [...byCode.values()].filter((u) => u.level === level && (parent === null || u.parent === parent));
  }
  function fill(i, parent) {
    const s = selects[i];
    clear(s).append(el('option', { value: '', text: `${t(`level.unit.${LEVELS[i]}`)}: ${t('filter.any')}` }));
    const units = i === 0 || parent ? children(i === 0 ? null : parent, LEVELS[i]) : [];
    units.forEach((u) => s.append(el('option', { value: u.code, text: label(u) })));
    s.disabled = units.length === 0;
    s.hidden = i > 0 && !parent;
  }
  function value() {
    for (let i = LEVELS.length - 1; i >= 0; i -= 1) if (selects[i].value) return selects[i].value;
    return '';
  }
  /** Select `code` and its ancestors (unknown codes clear the picker). */
  function set(code) {
    const chain = [];
    for (let u = byCode.get(code); u; u = byCode.get(u.parent)) chain.unshift(u.code);
    fill(0, null);
    selects.forEach((s, i) => {
      if (i) fill(i, chain[i - 1] || '');
      s.value = chain[i] || '';
    });
  }
  /** Every cell in the chosen unit (null: no unit chosen). */
  function cells() {
    const code = value();
    if (!code) return null;
    const out = new Set();
    const stack = [code];
    while (stack.length) {
      const c = stack.pop();
      const u = byCode.get(c);
      if (!u) continue;
      if (u.level === 'cell') out.add(c); else (u.units || []).forEach((k) => stack.push(k.code));
    }
    return out;
  }
  selects.forEach((s, i) => s.addEventListener('change', (ev) => {
    ev.stopPropagation(); // the form's own input handler must not run before the picker has settled
    for (let j = i + 1; j < selects.length; j += 1) fill(j, j === i + 1 ? s.value : '');
    onChange(value());
  }));
  set('');
  return { value, set, cells, units: byCode.size };
}
