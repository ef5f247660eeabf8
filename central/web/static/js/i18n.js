// Labels in English (default) and Simplified Chinese. Elements carry data-i18n="key" (text),
// data-i18n-placeholder / data-i18n-title (attributes). The choice is kept in localStorage.

const LANG_KEY = 'gridwatch.lang';
export const LANGS = ['en', 'zh-CN'];
let strings = {};
let fallback = {};
let current = 'en';

export function lang() { return current; }

async function load(code) {
  const res = await fetch(`/static/i18n/${code}.json`, { credentials: 'omit' });
  return res.ok ? res.json() : {};
}

/** Load the saved (or browser) language and translate the page. Call once per page before rendering. */
export async function initI18n() {
  const saved = localStorage.getItem(LANG_KEY);
  current = LANGS.includes(saved) ? saved : 'en'; // English is the default; the switch is one click away
  fallback = await load('en');
  strings = current === 'en' ? fallback : await load(current);
  document.documentElement.lang = current;
  apply(document);
  const select = document.getElementById('lang-select');
  if (select) {
    select.value = current;
    select.addEventListener('change', () => {
      localStorage.setItem(LANG_KEY, select.value);
      window.location.reload();
    });
  }
}

/** Translate `key`, replacing {name} placeholders from `vars`. Unknown keys fall back to English, then the key. */
export function t(key, vars = {}) {
  let s = strings[key] ?? fallback[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** Like t() but returns `alt` when the key is unknown (for labels built from data, e.g. state names). */
export function tOr(key, alt) {
  return strings[key] ?? fallback[key] ?? alt;
}

export function apply(root) {
  root.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll('[data-i18n-placeholder]').forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  root.querySelectorAll('[data-i18n-title]').forEach((el) => { el.title = t(el.dataset.i18nTitle); });
}
