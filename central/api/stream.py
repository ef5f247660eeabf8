"""Server-sent events: every event-bus event as ``event: <kind>`` / ``data: <json>``, plus a ``: keep-alive``
comment every 15 s so proxies and browsers keep the connection open.

``EventSource`` cannot send headers, so besides a Bearer header the stream accepts a ticket from
``POST /api/v1/stream/ticket`` (``?ticket=``: the caller's own token and role, valid 60 s to *open* the stream once),
a signed URL from ``GET /api/v1/stream/url`` (viewer rights, valid 5 minutes) or ``?token=`` (kept for old clients;
redacted from the access log, but prefer a ticket: proxies in front may log URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from central.auth import TICKET_TTL_S, CurrentPrincipal, Principal, get_principal_for_get, issue_ticket, sign_path

router = APIRouter(tags=["stream"])

KEEPALIVE_S = 15.0
STREAM_URL_TTL_S = 300
STREAM_PATH = "/api/v1/stream"


def sse_message(event_id: int, kind: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n"


async def event_stream(request: Request, kinds: set[str] | None) -> AsyncIterator[str]:
    st = request.app.state
    keepalive = float(getattr(st, "sse_keepalive_s", KEEPALIVE_S))
    listener = st.bus.listen()
    counter = itertools.count(1)
    yield "retry: 3000\n: connected\n\n"
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(listener.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if await request.is_disconnected() or getattr(st, "shutting_down", False):
                break
            if not done:
                yield f": keep-alive {datetime.now(UTC).isoformat(timespec='seconds')}\n\n"
                continue
            kind, data = pending.result()
            pending = None
            if kinds is None or kind in kinds:
                yield sse_message(next(counter), kind, data)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending
        await listener.aclose()  # type: ignore[attr-defined]


@router.get("/stream", summary="Server-sent events of case, edge, camera and crowd updates")
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal_for_get)],
    kinds: Annotated[str | None, Query(description="Comma-separated event kinds to receive (default: all).")] = None,
) -> StreamingResponse:
    wanted = {k.strip() for k in kinds.split(",") if k.strip()} if kinds else None
    return StreamingResponse(
        event_stream(request, wanted),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


@router.get("/stream/url", summary="A short-lived signed URL for EventSource (which cannot send headers)")
def stream_url(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"url": sign_path(request.app, STREAM_PATH, STREAM_URL_TTL_S), "expires_in": STREAM_URL_TTL_S}


@router.post("/stream/ticket", summary="A one-time ticket to open the event stream with EventSource (?ticket=)")
def stream_ticket(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Send the API token in the header here, then open ``url`` (``/api/v1/stream?ticket=…``) within
    ``expires_in`` seconds. The ticket works once and only for the stream; the stream runs with the token's role.
    After a disconnect, ask for a new ticket (EventSource's automatic retry would reuse the spent one)."""
    ticket = issue_ticket(request.app, principal, STREAM_PATH, TICKET_TTL_S)
    return {"ticket": ticket, "url": f"{STREAM_PATH}?ticket={ticket}", "expires_in": TICKET_TTL_S}
