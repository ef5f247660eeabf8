"""Server-sent events: case events from the database outbox (every process's, with resumable ids) and this
process's live events (edge status, camera health, crowd figures, incident events; no id), as
``event: <kind>`` / ``data: <json>``, plus a ``: keep-alive`` comment every 15 s so proxies and browsers keep the
connection open.

Resuming: a case event's ``id:`` is its outbox id (``central.event_outbox``). A client that reconnects with
``Last-Event-ID: <id>`` (EventSource sends it by itself) or ``?last_event_id=<id>`` first gets every case event after
that id, in order, then the live stream; each event once. When it missed more than ``events.replay_max`` events, or
asks for ids this database never had or has already pruned (``events.retention_days``), it gets one
``stream.resync`` event (with the newest id) instead: reload the lists over REST. Live events are not replayed.
Without an id the stream starts at the moment of the ``: connected`` comment, which comes with an ``id:`` line of
its own (no event) so that even a client that saw no case event yet resumes from there.

``EventSource`` cannot send headers, so besides a Bearer header the stream accepts a ticket from
``POST /api/v1/stream/ticket`` (``?ticket=``: the caller's own token and role, valid 60 s to *open* the stream once;
pass ``?last_event_id=`` to the ticket call and its URL resumes), a signed URL from ``GET /api/v1/stream/url``
(viewer rights, valid 5 minutes) or ``?token=`` (kept for old clients; redacted from the access log, but prefer a
ticket: proxies in front may log URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from central import event_outbox
from central.api.errors import ApiError
from central.auth import TICKET_TTL_S, CurrentPrincipal, Principal, get_principal_for_get, issue_ticket, sign_path
from central.db import OutboxEvent
from central.events import OVERFLOW, Listener

router = APIRouter(tags=["stream"])

KEEPALIVE_S = 15.0
STREAM_URL_TTL_S = 300
STREAM_PATH = "/api/v1/stream"
RESYNC = "stream.resync"
MAX_EVENT_ID = 2**63 - 1


def sse_message(event_id: int | None, kind: str, data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {payload}\n\n"


def parse_event_id(value: str | None, where: str) -> int | None:
    """A Last-Event-ID value: a non-negative integer id from this stream (blank means none)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_EVENT_ID:
        raise ApiError(
            400,
            f"{where} must be an event id from this stream (a non-negative integer), not {text[:40]!r}",
            "bad_request",
        )
    return int(text)


def _bounds(session_factory: Any) -> tuple[int, int]:
    """(oldest, newest) outbox ids; (0, 0) when empty."""
    with session_factory() as s:
        lo, hi = s.execute(select(func.min(OutboxEvent.id), func.max(OutboxEvent.id))).one()
    return int(lo or 0), int(hi or 0)


def _read(session_factory: Any, after: int, limit: int) -> list[event_outbox.StoredEvent]:
    with session_factory() as s:
        return event_outbox.read_after(s, after, limit)


class _Cursor:
    """Where one stream is: the newest case event id it has passed (sent, or skipped by its kinds filter)."""

    def __init__(self, last: int):
        self.last = last


async def _catch_up(st: Any, cur: _Cursor, kinds: set[str] | None) -> AsyncIterator[str]:
    """Every stored case event after ``cur.last`` (at most ``events.replay_max``), or one resync event."""
    limit = int(st.config.events.replay_max)
    lo, hi = await run_in_threadpool(_bounds, st.session_factory)
    if cur.last > hi or (lo and cur.last + 1 < lo):  # never had it (another database) or pruned since
        reason = "unknown_id" if cur.last > hi else "pruned"
        cur.last = hi
        yield sse_message(hi, RESYNC, {"reason": reason, "last_event_id": hi})
        return
    rows = await run_in_threadpool(_read, st.session_factory, cur.last, limit + 1)
    if len(rows) > limit:
        cur.last = hi
        yield sse_message(hi, RESYNC, {"reason": "too_many_missed", "missed_more_than": limit, "last_event_id": hi})
        return
    for r in rows:
        cur.last = r.id
        if kinds is None or r.kind in kinds:
            yield sse_message(r.id, r.kind, r.payload)


async def event_stream(request: Request, kinds: set[str] | None, last_event_id: int | None) -> AsyncIterator[str]:
    st = request.app.state
    keepalive = float(getattr(st, "sse_keepalive_s", KEEPALIVE_S))
    listener: Listener = st.bus.listener(overflow_marker=True)  # registered before the database is read
    pending: asyncio.Task[Any] | None = None
    try:
        if last_event_id is None:
            cur = _Cursor((await run_in_threadpool(_bounds, st.session_factory))[1])
            # an id with no data fires no event but sets the client's Last-Event-ID: a reconnect before the first
            # case event then still resumes from here
            yield f"retry: 3000\nid: {cur.last}\n: connected\n\n"
        else:
            cur = _Cursor(last_event_id)
            yield "retry: 3000\n: connected\n\n"
            async for chunk in _catch_up(st, cur, kinds):
                yield chunk
        while True:
            if pending is None:
                pending = asyncio.ensure_future(listener.get())
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if await request.is_disconnected() or getattr(st, "shutting_down", False):
                break
            if not done:
                yield f": keep-alive {datetime.now(UTC).isoformat(timespec='seconds')}\n\n"
                continue
            kind, data, event_id = pending.result()
            pending = None
            if kind == OVERFLOW:  # this client fell behind and its queue dropped events: re-read case events
                async for chunk in _catch_up(st, cur, kinds):
                    yield chunk
                continue
            if event_id is not None:
                if event_id <= cur.last:
                    continue  # already sent (replayed from the database)
                cur.last = event_id
            if kinds is None or kind in kinds:
                yield sse_message(event_id, kind, data)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        listener.close()


@router.get("/stream", summary="Server-sent events of case, edge, camera and crowd updates (resumable)")
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal_for_get)],
    kinds: Annotated[str | None, Query(description="Comma-separated event kinds to receive (default: all).")] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="Resume after this case event id (as the Last-Event-ID header; for a new EventSource)."),
    ] = None,
    last_event_id_header: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this case event id (EventSource sends it itself)."),
    ] = None,
) -> StreamingResponse:
    wanted = {k.strip() for k in kinds.split(",") if k.strip()} if kinds else None
    resume = parse_event_id(last_event_id_header, "the Last-Event-ID header")
    if resume is None:
        resume = parse_event_id(last_event_id, "query.last_event_id")
    return StreamingResponse(
        event_stream(request, wanted, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


@router.get("/stream/url", summary="A short-lived signed URL for EventSource (which cannot send headers)")
def stream_url(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"url": sign_path(request.app, STREAM_PATH, STREAM_URL_TTL_S), "expires_in": STREAM_URL_TTL_S}


@router.post("/stream/ticket", summary="A one-time ticket to open the event stream with EventSource (?ticket=)")
def stream_ticket(
    request: Request,
    principal: CurrentPrincipal,
    last_event_id: Annotated[str | None, Query(description="Make the URL resume after this case event id.")] = None,
) -> dict[str, Any]:
    """Send the API token in the header here, then open ``url`` (``/api/v1/stream?ticket=…``) within
    ``expires_in`` seconds. The ticket works once and only for the stream; the stream runs with the token's role.
    After a disconnect, ask for a new ticket with ``?last_event_id=`` the last ``id`` you received (EventSource's
    automatic retry would reuse the spent ticket): the new URL replays what you missed."""
    resume = parse_event_id(last_event_id, "query.last_event_id")
    ticket = issue_ticket(request.app, principal, STREAM_PATH, TICKET_TTL_S)
    url = f"{STREAM_PATH}?ticket={ticket}" + (f"&last_event_id={resume}" if resume is not None else "")
    return {"ticket": ticket, "url": url, "expires_in": TICKET_TTL_S}
