"""Input hygiene for every HTTP endpoint, so no request can reach the database with text or numbers it cannot store.

- ``TextGuardMiddleware`` (plain ASGI, outermost after the security headers): the request path and every query
  key and value must be valid UTF-8 once percent-decoded and hold no NUL; the path also no other control
  character (it is written to the access log decoded). Refused with 422 ``validation_error`` naming the parameter
  (``query.q``, ``path``), or the GeoReport error body with 400 under ``/open311/``. PostgreSQL refuses NUL in text
  and invalid UTF-8 would otherwise reach queries as U+FFFD.
- ``SafeBody``: the base of the JSON request bodies; any string or key in the body with a NUL or a lone surrogate
  (``"\\ud800"`` is valid JSON but not storable text) is a 422 naming the field.
- ``DB_INT_MAX``: the largest id any database column holds (PostgreSQL ``integer``); path and query ids are bounded
  by it (``ID``/``path_id``) so a huge id is a 422, not an overflow in the driver.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Path
from pydantic import BaseModel, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from central.security import _send_json

DB_INT_MAX = 2**31 - 1
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")
_PATH_CONTROL = re.compile("[\x00-\x1f\x7f]")

CaseId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="Case id (1 … 2^31-1).")]
SilenceId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="Silence id (1 … 2^31-1).")]


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (NUL, lone surrogate), or None."""
    m = _NUL_OR_SURROGATE.search(value)
    if m is None:
        return None
    return "contains a NUL character" if m.group() == "\x00" else "contains a lone surrogate (not valid Unicode)"


def _decode(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def request_text_problem(scope: Scope) -> tuple[str, str] | None:
    """(loc, message) for the first bad part of the path or query string, else None."""
    raw_path = scope.get("raw_path")
    if raw_path is None:
        path: str | None = scope.get("path", "")
    else:
        path = _decode(raw_path)
    if path is None:
        return "path", "the path is not valid UTF-8 once percent-decoded"
    if _PATH_CONTROL.search(path):
        return "path", "the path contains a NUL or another control character"
    qs: bytes = scope.get("query_string", b"")
    if not qs:
        return None
    for part in qs.split(b"&"):
        if not part:
            continue
        key_raw, _, value_raw = part.partition(b"=")
        key = _decode(key_raw.replace(b"+", b" "))
        if key is None:
            return "query", "a parameter name is not valid UTF-8 once percent-decoded"
        if "\x00" in key:
            return "query", "a parameter name contains a NUL character"
        loc = f"query.{key[:40]}"
        value = _decode(value_raw.replace(b"+", b" "))
        if value is None:
            return loc, "not valid UTF-8 once percent-decoded (or a lone surrogate)"
        if "\x00" in value:
            return loc, "contains a NUL character"
    return None


class TextGuardMiddleware:
    """Refuses requests whose path or query string cannot be stored or logged as text (see the module doc)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = request_text_problem(scope)
            if problem is not None:
                loc, msg = problem
                if (scope.get("path") or "").startswith("/open311/"):
                    await _send_json(send, 400, [{"code": 400, "description": f"invalid request: {loc}: {msg}"}])
                else:
                    await _send_json(send, 422, {
                        "detail": f"invalid request: {loc}: {msg}", "code": "validation_error",
                        "errors": [{"loc": loc, "msg": msg, "type": "invalid_text"}],
                    })
                return
        await self.app(scope, receive, send)


def _walk_text(data: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return path, problem
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and text_problem(k):
                    return path, f"a key {text_problem(k)}"
                stack.append((v, f"{path}.{k}"))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return None


class SafeBody(BaseModel):
    """Base of JSON request bodies: no string anywhere in the body may hold a NUL or a lone surrogate."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        problem = _walk_text(data)
        if problem:
            raise ValueError(f"{problem[0]} {problem[1]}")
        return data
