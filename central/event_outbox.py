"""The case-event outbox: durable case events, written in the same transaction as the case change.

Whoever changes a case (ingest, a workflow transition, a note, an escalation, a field report) calls ``record`` on
its session before committing, so the event exists exactly when the change does: a rollback takes both away, a
crash after the commit loses neither. Readers — every API process's ``EventRelay`` (SSE) and the webhook delivery
(``central.webhooks``) — read rows by id, so it does not matter which process wrote them.

Ordering: a reader that has seen id N must never later find a newly committed row below N. SQLite has one writer
at a time, so ids are drawn and committed in the same order. On PostgreSQL two transactions can draw ids from the
sequence and commit in the other order; ``record`` therefore takes a transaction-scoped advisory lock
(``OUTBOX_LOCK``) before drawing ids, held from the insert to the commit (a few milliseconds at the very end of the
writing transaction, which holds no other lock it waits for after that point, so it cannot deadlock). It also
sends ``NOTIFY gridwatch_events`` (delivered at commit) to wake listening processes.

Rows are pruned after ``events.retention_days`` once no configured webhook still owes them (``prune``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, text
from sqlalchemy.orm import Session

from central.db import OutboxEvent, WebhookCursor, WebhookDelivery
from central.events import DURABLE_KINDS

OUTBOX_LOCK = 0x4757_0E0B_0001  # pg_advisory_xact_lock key: "GW" outbox
CHANNEL = "gridwatch_events"


@dataclass(frozen=True)
class StoredEvent:
    id: int
    kind: str
    case_id: int | None
    payload: str  # JSON text, as written
    created_at: datetime

    def data(self) -> dict[str, Any]:
        return json.loads(self.payload)  # type: ignore[no-any-return]


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def record(session: Session, kind: str, data: dict[str, Any]) -> int:
    """Add one durable event to the session's transaction (commit it with the change). Returns rows added."""
    return record_many(session, [(kind, data)])


def record_many(session: Session, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Add the durable ones of ``events`` (kinds in ``DURABLE_KINDS``; others are skipped) in this order."""
    now = datetime.now(UTC)
    rows = [
        {
            "kind": kind,
            "case_id": data.get("id") if isinstance(data.get("id"), int) else None,
            "payload": encode(data),
            "created_at": now,
        }
        for kind, data in events
        if kind in DURABLE_KINDS
    ]
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": OUTBOX_LOCK})
        session.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
    session.execute(insert(OutboxEvent.__table__), rows)
    return len(rows)


def begin_write(session: Session) -> None:
    """SQLite: take the write lock before the first read of a read-then-write transaction (a deferred one fails
    with SQLITE_BUSY_SNAPSHOT when another process committed in between). No-op on PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


def read_after(session: Session, after_id: int, limit: int = 500) -> list[StoredEvent]:
    """Events with ids above ``after_id``, oldest first."""
    stmt = (
        select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.case_id, OutboxEvent.payload, OutboxEvent.created_at)
        .where(OutboxEvent.id > after_id)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return [StoredEvent(*row) for row in session.execute(stmt)]


def last_id(session: Session) -> int:
    """The newest event id (0 when there is none)."""
    return int(session.scalar(select(func.max(OutboxEvent.id))) or 0)


def prune(session: Session, older_than: datetime, webhook_keys: Sequence[str]) -> int:
    """Delete events written before ``older_than`` that no configured webhook still owes: none of its deliveries
    of them is pending, and its scheduler has passed them (``webhook_cursors``). Their delivery records go too.
    Webhooks no longer configured do not hold events back. Commits; returns the events deleted."""
    begin_write(session)
    bound = None
    if webhook_keys:
        cursors = list(
            session.scalars(select(WebhookCursor.last_event_id).where(WebhookCursor.webhook.in_(webhook_keys)))
        )
        bound = min(cursors) if cursors else None
    owed = exists().where(
        WebhookDelivery.event_id == OutboxEvent.id,
        WebhookDelivery.status == "pending",
        WebhookDelivery.webhook.in_(list(webhook_keys) or [""]),
    )
    ids = select(OutboxEvent.id).where(OutboxEvent.created_at < older_than, ~owed)
    if bound is not None:
        ids = ids.where(OutboxEvent.id <= bound)
    doomed = list(session.scalars(ids.order_by(OutboxEvent.id).limit(50_000)))
    for i in range(0, len(doomed), 1000):
        chunk = doomed[i : i + 1000]
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(chunk)))
        session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(chunk)))
    session.commit()
    return len(doomed)
