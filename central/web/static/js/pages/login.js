// Sign-in: check the token against /api/v1/me, keep it in sessionStorage, go back where the user came from.
import { api, setToken, ApiError } from '../api.js';
import { initI18n, t } from '../i18n.js';

function safeNext() {
  const next = new URLSearchParams(window.location.search).get('next') || '/queue';
  // Only same-site paths: never an absolute URL or a protocol-relative one.
  return next.startsWith('/') && !next.startsWith('//') ? next : '/queue';
}

async function main() {
  await initI18n();
  const form = document.getElementById('login-form');
  const input = document.getElementById('token');
  const error = document.getElementById('login-error');
  input.focus();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    try {
      await api('/api/v1/me', { redirectOn401: false });
      window.location.assign(safeNext());
    } catch (err) {
      sessionStorage.clear();
      error.textContent = err instanceof ApiError && err.status === 401 ? t('login.bad_token') : `${t('common.error')}: ${err.message}`;
      error.hidden = false;
    }
  });
}

main();
