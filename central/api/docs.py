"""Self-hosted API reference at ``/docs``: a small page that renders ``/openapi.json``.

FastAPI's built-in Swagger UI and ReDoc pages load scripts from a CDN and use inline scripts, which the content
security policy (``script-src 'self'``) and a closed network both forbid. This page uses only same-origin files.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>GridWatch central API</title><link rel="stylesheet" href="/docs/docs.css"></head>
<body><header><h1>GridWatch central API</h1>
<p>Machine-readable schema: <a href="/openapi.json">/openapi.json</a>. Prose reference: docs/api.md.
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>.</p></header>
<main id="ops"><p>Loading…</p></main><script src="/docs/docs.js"></script></body></html>
"""

_CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px;color:#1b1f24}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.op{border:1px solid #d0d7de;border-radius:6px;margin:8px 0;padding:8px 12px}
.m{display:inline-block;min-width:60px;font-weight:700;font-family:monospace}.GET{color:#0969da}
.POST{color:#1a7f37}.DELETE{color:#cf222e}.path{font-family:monospace}.sum{color:#57606a;margin-left:8px}
table{border-collapse:collapse;margin-top:6px}
td,th{border:1px solid #eee;padding:2px 8px;text-align:left;font-size:.9em}
"""

_JS = """'use strict';
(async function () {
  const root = document.getElementById('ops');
  const el = (tag, cls, text) => { const e = document.createElement(tag);
    if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
  let spec;
  try { spec = await (await fetch('/openapi.json')).json(); }
  catch (err) { root.textContent = 'Could not load /openapi.json: ' + err; return; }
  root.textContent = '';
  const groups = {};
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || 'other';
      (groups[tag] = groups[tag] || []).push([method.toUpperCase(), path, op]);
    }
  }
  for (const [tag, ops] of Object.entries(groups)) {
    root.appendChild(el('h2', '', tag));
    for (const [method, path, op] of ops) {
      const box = el('div', 'op');
      box.appendChild(el('span', 'm ' + method, method));
      box.appendChild(el('span', 'path', path));
      box.appendChild(el('span', 'sum', op.summary || ''));
      const params = op.parameters || [];
      if (params.length) {
        const t = el('table'); const h = el('tr');
        ['parameter', 'in', 'required', 'description'].forEach(x => h.appendChild(el('th', '', x)));
        t.appendChild(h);
        for (const p of params) {
          const r = el('tr');
          [p.name, p.in, p.required ? 'yes' : '', p.description || ''].forEach(x => r.appendChild(el('td', '', x)));
          t.appendChild(r);
        }
        box.appendChild(t);
      }
      if (op.requestBody) {
        const ct = Object.keys(op.requestBody.content || {}).join(', ');
        box.appendChild(el('div', 'sum', 'body: ' + ct));
      }
      root.appendChild(box);
    }
  }
})();
"""


@router.get("/docs")
def docs_page() -> HTMLResponse:
    return HTMLResponse(_HTML)


@router.get("/docs/docs.css")
def docs_css() -> Response:
    return Response(_CSS, media_type="text/css")


@router.get("/docs/docs.js")
def docs_js() -> Response:
    return Response(_JS, media_type="text/javascript")
