// API client: Bearer token from sessionStorage, JSON helpers, evidence images as blobs, SSE over fetch.
// No cookies are used anywhere, so a cross-site page can never act with the signed-in user's rights.

const TOKEN_KEY = 'gridwatch.token';
const ME_KEY = 'gridwatch.me';

export function getToken() { return sessionStorage.getItem(TOKEN_KEY); }

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.removeItem(ME_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ME_KEY);
  window.location.assign('/login');
}

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/** Go to the sign-in page; returns a promise that never settles, so callers stop quietly while the page leaves. */
function toLogin() {
  const next = window.location.pathname + window.location.search;
  window.location.assign(`/login?next=${encodeURIComponent(next)}`);
  return new Promise(() => {});
}

function detailOf(body, status) {
  if (!body) return `HTTP ${status}`;
  if (typeof body.detail === 'string') return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ');
  return `HTTP ${status}`;
}

/** Call the JSON API. `body` is sent as JSON, `form` as multipart. 401 sends the user to the sign-in page. */
export async function api(path, { method = 'GET', body, form, signal, redirectOn401 = true } = {}) {
  const init = { method, headers: authHeaders({ Accept: 'application/json' }), signal, credentials: 'omit' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  } else if (form !== undefined) {
    init.body = form;
  }
  const res = await fetch(path, init);
  let data = null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('application/json')) data = await res.json();
  if (res.status === 401 && redirectOn401) return toLogin();
  if (!res.ok) throw new ApiError(res.status, detailOf(data, res.status), data);
  return data;
}

/** The signed-in token's identity ({role, name, ...}), cached for the tab. */
export async function me({ force = false } = {}) {
  if (!getToken()) return toLogin();
  const cached = sessionStorage.getItem(ME_KEY);
  if (cached && !force) return JSON.parse(cached);
  const data = await api('/api/v1/me');
  sessionStorage.setItem(ME_KEY, JSON.stringify(data));
  return data;
}

const blobUrls = new Map();

/** An object URL for an evidence image, fetched with the Bearer header (img-src allows blob:). */
export async function evidenceUrl(sha256) {
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256)) return null;
  if (blobUrls.has(sha256)) return blobUrls.get(sha256);
  const promise = fetch(`/api/v1/evidence/${sha256}`, { headers: authHeaders(), credentials: 'omit' })
    .then((res) => (res.ok ? res.blob() : null))
    .then((blob) => (blob ? URL.createObjectURL(blob) : null))
    .catch(() => null);
  blobUrls.set(sha256, promise);
  return promise;
}

/**
 * Server-sent events from /api/v1/stream, read with fetch so the token travels in a header (EventSource cannot
 * set one). Reconnects with back-off, sending the last case event id it saw (Last-Event-ID) so the server replays
 * what happened meanwhile; when it cannot (too much missed), `stream.resync` arrives: reload the data.
 * `onEvent(kind, data)`; `onState(connected)`. Returns a stop function.
 */
export function stream(onEvent, onState = () => {}) {
  let stopped = false;
  let controller = null;
  let delay = 1000;
  const cursor = { lastId: null };

  async function connect() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const extra = { Accept: 'text/event-stream' };
        if (cursor.lastId !== null) extra['Last-Event-ID'] = cursor.lastId;
        const res = await fetch('/api/v1/stream', {
          headers: authHeaders(extra), signal: controller.signal, credentials: 'omit',
        });
        if (res.status === 401) { toLogin(); return; } // signed out or token revoked
        if (!res.ok || !res.body) throw new Error(`stream HTTP ${res.status}`);
        delay = 1000;
        // "Connected" once the first bytes (the server's ": connected" comment) arrive: by then the server has
        // set up this client's subscription, unlike when only the response headers are in.
        await readEvents(res.body, onEvent, () => onState(true), cursor);
      } catch (err) {
        if (stopped) return;
      }
      onState(false);
      if (stopped) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  connect();
  return () => { stopped = true; if (controller) controller.abort(); };
}

async function readEvents(body, onEvent, onFirstChunk, cursor) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let first = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    if (first) { first = false; onFirstChunk(); }
    buffer += value.replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = 'message';
      const lines = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        if (line.startsWith('id:')) cursor.lastId = line.slice(3).trim();
        else if (line.startsWith('event:')) kind = line.slice(6).trim();
        else if (line.startsWith('data:')) lines.push(line.slice(5).replace(/^ /, ''));
      }
      if (!lines.length) continue;
      let data = lines.join('\n');
      try { data = JSON.parse(data); } catch { /* plain text event */ }
      // Either "event: case.created" + data, or one "message" whose JSON carries {kind, data}.
      if (kind === 'message' && data && typeof data === 'object' && data.kind) onEvent(data.kind, data.data ?? data);
      else onEvent(kind, data);
    }
  }
}
