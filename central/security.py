"""HTTP hardening for the central service: security headers, a request-body size limit and the CSRF policy.

CSRF policy: the API authenticates only with ``Authorization: Bearer`` headers (never cookies), so a forged
cross-site form or ``fetch`` cannot carry credentials. As a second line, any unsafe request (POST, PUT, PATCH,
DELETE) whose ``Origin`` header names a foreign origin is refused with 403 before it reaches a route, unless that
origin is listed in ``api.cors_origins``.

Both middlewares are plain ASGI (not ``BaseHTTPMiddleware``) so they never buffer streaming responses such as
the server-sent event stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # no-referrer: signed evidence URLs and ?token= stream URLs must never leak to other sites via Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(self)",  # field reports use the position
}

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def security_headers(tile_origin: str | None = None) -> dict[str, str]:
    """``SECURITY_HEADERS``, with ``tile_origin`` (the map's internal tile server, ``map.tile_url``) allowed as an
    image source. Without it the pages may load images from this origin only."""
    if not tile_origin:
        return dict(SECURITY_HEADERS)
    if any(c in tile_origin for c in " ;,'\"\n\r"):
        raise ValueError(f"tile server origin {tile_origin!r} cannot go into a Content-Security-Policy")
    csp = CONTENT_SECURITY_POLICY.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {tile_origin}")
    return {**SECURITY_HEADERS, "Content-Security-Policy": csp}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra_headers: Iterable[tuple[str, str]] = ()
) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


class SecurityHeadersMiddleware:
    """Adds ``SECURITY_HEADERS`` to every HTTP response (without overriding a header a route set itself).

    API responses also get ``Cache-Control: no-store`` so case data and evidence never sit in shared caches.
    """

    def __init__(
        self, app: ASGIApp, headers: dict[str, str] | None = None, no_store_prefixes: tuple[str, ...] = ("/api/",)
    ):
        self.app = app
        pairs = (headers or SECURITY_HEADERS).items()
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
        self.no_store_prefixes = no_store_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope.get("path", "").startswith(self.no_store_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k, v) for k, v in self.headers if k not in existing]
                if no_store and b"cache-control" not in existing:
                    added.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. An HTTPException so that FastAPI's body
    parsing re-raises it (other errors there become 400) and the app's handler renders it as 413."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body exceeds the limit of {max_bytes} bytes")
        self.code = "payload_too_large"


class BodySizeLimitMiddleware:
    """Refuses request bodies larger than ``max_bytes`` with 413.

    Checks ``Content-Length`` up front and also counts streamed chunks, so a chunked upload without a length
    cannot get past the limit either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = {"detail": f"request body exceeds the limit of {self.max_bytes} bytes", "code": "payload_too_large"}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header", "code": "bad_request"})
                    return
                if length > self.max_bytes:
                    await _send_json(send, 413, too_large)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _send_json(send, 413, too_large)


def _origin_of(scope: Scope) -> str | None:
    host = None
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1")
            break
    if host is None:
        return None
    return f"{scope.get('scheme', 'http')}://{host}"


class CrossOriginWriteGuard:
    """Refuses unsafe methods whose ``Origin`` is neither this server nor an allowed CORS origin (403)."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = {o.rstrip("/") for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in UNSAFE_METHODS:
            origin = None
            for name, value in scope.get("headers", []):
                if name == b"origin":
                    origin = value.decode("latin-1").rstrip("/")
                    break
            if origin is not None and origin != _origin_of(scope) and origin not in self.allowed:
                await _send_json(
                    send, 403, {"detail": f"cross-origin write from {origin} refused", "code": "cross_origin_refused"}
                )
                return
        await self.app(scope, receive, send)
