"""Signed webhooks on case events, delivered durably from the database outbox.

Each configured ``WebhookConfig(url, secret, events)`` receives a JSON POST for every outbox event whose kind is in
``events`` (default ``case.created`` and ``case.updated``). The body is::

    {"id": "<delivery id>", "event_id": 123, "event": "case.updated", "attempt": 1, "timestamp": 1763782800,
     "data": {...case summary...}}

Headers: ``X-GridWatch-Event``, ``X-GridWatch-Event-Id`` (the outbox id: the same event has the same id on the
SSE stream and in every attempt — deduplicate on it), ``X-GridWatch-Delivery`` (this webhook's delivery of it, also
stable across attempts), ``X-GridWatch-Attempt``, ``X-GridWatch-Timestamp`` (Unix seconds, equal to the body's
``timestamp``) and, when the webhook has a secret, ``X-GridWatch-Signature: sha256=<hex>`` — the HMAC-SHA256 of the
exact body bytes with the secret. Because the timestamp is inside the signed body, a receiver that checks the
signature (``verify_signature``) and the timestamp's freshness is protected against replays.

Delivery (``WebhookDispatcher``, in every API process):

- **Scheduling**: per webhook, a cursor row (``webhook_cursors``) says up to which outbox id deliveries exist; a
  worker that finds newer events locks the cursor, inserts one ``webhook_deliveries`` row per matching event and
  moves the cursor, in one transaction — so each event is scheduled once whichever processes run. A webhook seen
  for the first time starts at the newest event then present.
- **In order, one process at a time**: a webhook's deliveries go out strictly in event order. A worker claims the
  oldest pending delivery with a conditional UPDATE (``claimed_by``/``claimed_until``, a lease of the HTTP timeout
  plus 30 s); the next one is not sent until that one is delivered or given up. A process that dies mid-delivery
  leaves a lease that runs out, and another process retries — at-least-once, hence the event id header.
- **Retries**: 2xx is success; network errors, 408, 425, 429 and 5xx are retried after ``webhook_backoff_s``,
  doubling up to ``webhook_max_backoff_s``, for ``webhook_attempts`` attempts; then, or at once for other 4xx, the
  delivery is recorded as ``failed`` and the next one goes. Attempts, last status and error, next attempt time
  and outcome are in ``webhook_deliveries``, so restarts lose nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from central import event_outbox
from central.config import EventsConfig
from central.db import OutboxEvent, WebhookCursor, WebhookDelivery
from central.events import DURABLE_KINDS
from edge.redact import mask_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-GridWatch-Signature"
TIMESTAMP_HEADER = "X-GridWatch-Timestamp"
EVENT_HEADER = "X-GridWatch-Event"
EVENT_ID_HEADER = "X-GridWatch-Event-Id"
DELIVERY_HEADER = "X-GridWatch-Delivery"
ATTEMPT_HEADER = "X-GridWatch-Attempt"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SCHEDULE_BATCH = 500
LEASE_MARGIN_S = 30.0


class WebhookTarget(Protocol):
    """What the dispatcher needs from ``central.config.WebhookConfig``."""

    url: str
    secret: str | None
    events: list[str]

    @property
    def key(self) -> str: ...


def sign(secret: str, body: bytes) -> str:
    """The ``X-GridWatch-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    signature_header: str | None,
    timestamp_header: str | None = None,
    *,
    tolerance_s: float | None = 300,
    now: float | None = None,
) -> bool:
    """Receiver side: True when the signature matches and (if ``tolerance_s``) the timestamp is fresh.

    The timestamp header must equal the signed body's ``timestamp`` field, so it cannot be swapped.
    """
    if not signature_header or not hmac.compare_digest(sign(secret, body), signature_header.strip()):
        return False
    if tolerance_s is None:
        return True
    try:
        ts = int(timestamp_header or "")
        body_ts = int(json.loads(body)["timestamp"])
    except (ValueError, KeyError, TypeError):
        return False
    if ts != body_ts:
        return False
    return abs((time.time() if now is None else now) - ts) <= tolerance_s


def build_delivery(
    kind: str,
    data: dict[str, Any],
    secret: str | None,
    *,
    now: float | None = None,
    event_id: int | None = None,
    delivery_id: str | None = None,
    attempt: int = 1,
) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers of one attempt (signed with this attempt's timestamp)."""
    ts = int(time.time() if now is None else now)
    delivery_id = delivery_id or str(uuid.uuid4())
    doc: dict[str, Any] = {
        "id": delivery_id,
        "event_id": event_id,
        "event": kind,
        "attempt": attempt,
        "timestamp": ts,
        "data": data,
    }
    body = json.dumps(doc, separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GridWatch-Webhooks/1",
        EVENT_HEADER: kind,
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
        TIMESTAMP_HEADER: str(ts),
    }
    if event_id is not None:
        headers[EVENT_ID_HEADER] = str(event_id)
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


def backoff_s(attempts: int, cfg: EventsConfig) -> float:
    """Wait after the ``attempts``-th failed attempt: backoff, 2×, 4×, … capped."""
    return float(min(cfg.webhook_backoff_s * 2 ** max(0, attempts - 1), cfg.webhook_max_backoff_s))


@dataclass
class WebhookStats:
    """What this process did since start (the database has the durable record)."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None


@dataclass
class _Job:
    delivery_id: int
    attempts: int
    event: event_outbox.StoredEvent | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _insert_ignore(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(ins(model.__table__).values(rows).on_conflict_do_nothing())  # type: ignore[attr-defined]


class WebhookDispatcher:
    """Delivers the configured webhooks' events from ``webhook_deliveries``: one thread per webhook.

    ``attach(bus)`` wakes the workers on each relayed case event (else they look every ``events.poll_s``);
    ``start()`` / ``stop()`` run them; ``run_once(target)`` does one step synchronously (tests, tools).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        targets: Iterable[WebhookTarget],
        config: EventsConfig | None = None,
        *,
        owner: str | None = None,
    ):
        self.session_factory = session_factory
        self.targets = list(targets)
        self.config = config or EventsConfig()
        self.owner = (owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")[:64]
        self.stats = WebhookStats()
        self._stop = threading.Event()
        self._wake = {t.key: threading.Event() for t in self.targets}
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Any = None

    # ------------------------------------------------------------------ lifecycle
    def attach(self, bus: Any) -> None:
        """Wake the workers when the relay puts a case event on ``bus`` (a ``central.events.EventBus``)."""

        def wake(kind: str, _data: dict[str, Any]) -> None:
            if kind in DURABLE_KINDS:
                for ev in self._wake.values():
                    ev.set()

        self._unsubscribe = bus.subscribe(wake)

    def start(self) -> None:
        self._stop.clear()
        for t in self.targets:
            th = threading.Thread(target=self._run, args=(t,), name=f"webhook-{t.key}", daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        for th in self._threads:
            th.join(timeout)
        self._threads = []

    def pending(self) -> int:
        """Deliveries of the configured webhooks not yet delivered or given up (from the database)."""
        with self.session_factory() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(
                        WebhookDelivery.status == "pending", WebhookDelivery.webhook.in_([t.key for t in self.targets])
                    )
                )
                or 0
            )

    def _run(self, target: WebhookTarget) -> None:
        wake = self._wake[target.key]
        while not self._stop.is_set():
            try:
                wait = self.run_once(target)
            except Exception as e:  # the database may be away: keep the worker alive, try again shortly
                self.stats.last_error = f"{type(e).__name__}: {e}"[:300]
                log.warning("webhook %s: %s", mask_url(target.url), self.stats.last_error)
                wait = max(self.config.poll_s, 2.0)
            if wait > 0:
                wake.wait(wait)
                wake.clear()

    def run_once(self, target: WebhookTarget) -> float:
        """Schedule new events, then send the head delivery if it is due. Returns how long to wait before the
        next step (0: go on at once)."""
        self.schedule(target)
        job = self._claim(target)
        if isinstance(job, float):
            return job
        self._attempt(target, job)
        return 0.0

    # ------------------------------------------------------------------ scheduling
    def schedule(self, target: WebhookTarget) -> int:
        """Create the deliveries of events past the webhook's cursor (under the cursor's lock). Returns how many."""
        key = target.key
        with self.session_factory() as s:  # a cheap read first: most calls find nothing to do
            cursor = s.get(WebhookCursor, key)
            top = event_outbox.last_id(s)
        if cursor is not None and cursor.last_event_id >= top:
            return 0
        with self.session_factory() as s:
            event_outbox.begin_write(s)
            if cursor is None:
                _insert_ignore(
                    s,
                    WebhookCursor,
                    [{"webhook": key, "last_event_id": event_outbox.last_id(s), "updated_at": _utcnow()}],
                )
                s.commit()
                log.info("webhook %s: first seen, delivering events from now on", mask_url(target.url))
                return 0
            cursor = s.get(WebhookCursor, key, with_for_update=True, populate_existing=True)
            assert cursor is not None
            events = event_outbox.read_after(s, cursor.last_event_id, SCHEDULE_BATCH)
            if not events:
                s.rollback()
                return 0
            now = _utcnow()
            rows = [
                {
                    "webhook": key,
                    "url": mask_url(target.url)[:1024],
                    "event_id": e.id,
                    "event": e.kind,
                    "case_id": e.case_id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for e in events
                if e.kind in target.events
            ]
            if rows:
                _insert_ignore(s, WebhookDelivery, rows)
            cursor.last_event_id = events[-1].id
            cursor.updated_at = now
            s.commit()
            return len(rows)

    # ------------------------------------------------------------------ delivery
    def _claim(self, target: WebhookTarget) -> _Job | float:
        """Lease the webhook's oldest pending delivery when it is due; else the seconds to wait."""
        d = WebhookDelivery
        idle = self.config.poll_s
        with self.session_factory() as s:
            head = s.execute(
                select(d.id, d.event_id, d.attempts, d.next_attempt_at, d.claimed_by, d.claimed_until)
                .where(d.webhook == target.key, d.status == "pending")
                .order_by(d.event_id)
                .limit(1)
            ).first()
        if head is None:
            return idle
        now = _utcnow()
        if head.next_attempt_at is not None and head.next_attempt_at > now:
            return min(idle * 4, (head.next_attempt_at - now).total_seconds())
        if head.claimed_until is not None and head.claimed_until > now and head.claimed_by != self.owner:
            return min(idle * 4, (head.claimed_until - now).total_seconds())  # another process is sending it
        lease = now + timedelta(seconds=self.config.webhook_timeout_s + LEASE_MARGIN_S)
        with self.session_factory() as s:  # the UPDATE is the transaction's first statement (SQLite write lock)
            res = s.execute(
                update(d)
                .where(
                    d.id == head.id,
                    d.status == "pending",
                    or_(d.claimed_until.is_(None), d.claimed_until <= now, d.claimed_by == self.owner),
                )
                .values(claimed_by=self.owner, claimed_until=lease)
            )
            s.commit()
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return min(idle, 0.2)  # another process took it first
        with self.session_factory() as s:
            row = s.get(OutboxEvent, head.event_id)
            ev = (
                None
                if row is None
                else event_outbox.StoredEvent(row.id, row.kind, row.case_id, row.payload, row.created_at)
            )
        return _Job(head.id, head.attempts, ev)

    def _attempt(self, target: WebhookTarget, job: _Job) -> None:
        attempt = job.attempts + 1
        if job.event is None:  # deleted from under us (by hand): nothing to send
            status, error = 0, "event no longer in the outbox"
        else:
            body, headers = build_delivery(
                job.event.kind,
                job.event.data(),
                target.secret,
                event_id=job.event.id,
                delivery_id=f"{target.key}-{job.event.id}",
                attempt=attempt,
            )
            status, error = self._post(target.url, body, headers)
        now = _utcnow()
        values: dict[str, Any] = {
            "attempts": attempt,
            "last_status": status or None,
            "claimed_by": None,
            "claimed_until": None,
        }
        if status is not None and 200 <= status < 300:
            values.update(status="delivered", delivered_at=now, last_error=None)
            self.stats.delivered += 1
        else:
            reason = error or f"HTTP {status}"
            values["last_error"] = reason[:1000]
            retryable = status is None or status in RETRY_STATUSES
            if retryable and attempt < self.config.webhook_attempts:
                wait = backoff_s(attempt, self.config)
                values["next_attempt_at"] = now + timedelta(seconds=wait)
                self.stats.retried += 1
                log.info(
                    "webhook %s: event %s failed (%s); attempt %d in %.1f s",
                    mask_url(target.url),
                    job.event.id if job.event else "?",
                    reason,
                    attempt + 1,
                    wait,
                )
            else:
                values.update(status="failed", delivered_at=now)
                self.stats.failed += 1
                self.stats.last_error = reason
                log.warning(
                    "webhook %s: event %s failed permanently after %d attempt(s): %s",
                    mask_url(target.url),
                    job.event.id if job.event else "?",
                    attempt,
                    reason,
                )
        d = WebhookDelivery
        with self.session_factory() as s:
            s.execute(
                update(d)
                .where(d.id == job.delivery_id, d.claimed_by == self.owner, d.status == "pending")
                .values(**values)
            )
            s.commit()

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        if not url.lower().startswith(("http://", "https://")):
            return 0, f"unsupported URL scheme in {mask_url(url)}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.config.webhook_timeout_s) as resp:  # noqa: S310
                with contextlib.suppress(Exception):
                    resp.read(1024)
                return resp.status, None
        except urllib.error.HTTPError as e:
            return e.code, None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            return None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"
