"""Durable, bounded SQLite outbox for incident events.

An event is committed here before ``EdgePublisher.publish_incident`` returns and deleted only after the
broker's PUBACK, so a broker outage, a network loss or a SIGKILL of the edge never loses it. Rows are
published in ``seq`` (insertion) order, which keeps every incident's events in order.

Durability: WAL journal with ``synchronous=FULL``: each commit is fsynced, so an acknowledged enqueue
also survives a power cut of the edge box, not only a process crash (NORMAL would be enough for SIGKILL
but may lose the last commits on power loss). Incident events are rare (a few per minute per camera), so
one fsync per event costs nothing that matters.

Full policy (``max_events``): to make room, drop the oldest ``updated`` event first (a later ``updated``
or the ``closed`` event supersedes it); only when no ``updated`` event is left drop the oldest event of
any kind. The newest event is always kept. Drops are counted (persisted in the ``meta`` table).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox(kind, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
SUPERSEDED_KIND = "updated"


class OutboxError(ValueError):
    """An event cannot be stored (bad payload); the message names the field and the cause."""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    event_id: str
    incident_id: str
    kind: str
    topic: str
    payload: bytes
    enqueued_at: float  # wall clock (time.time()) when the event was committed

    def meta(self) -> dict[str, Any]:
        """The entry without its payload (what ``on_ack`` callbacks receive)."""
        return {"seq": self.seq, "event_id": self.event_id, "incident_id": self.incident_id, "event": self.kind,
                "topic": self.topic, "bytes": len(self.payload), "enqueued_at": self.enqueued_at}  # fmt: skip


class Outbox:
    """One SQLite file, one process. Thread-safe: every call takes the instance lock."""

    def __init__(self, path: str | Path, max_events: int = 100_000):
        if max_events < 1:
            raise ValueError(f"outbox max_events must be >= 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as e:
            raise OutboxError(f"outbox {self.path}: cannot open SQLite database: {e}") from None
        self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._dropped = self._meta("dropped")

    # ------------------------------------------------------------------ writing

    def put(self, payload: dict, topic: str) -> int:
        """Commit one incident event; returns its ``seq``. Makes room first if the outbox is full."""
        event_id, incident_id, kind = _required(payload)
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise OutboxError(f"incident event {event_id}: payload is not JSON-serialisable: {e}") from None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._make_room_locked(self._count + 1 - self.max_events)
                cur = self._db.execute(
                    "INSERT INTO outbox(event_id, incident_id, kind, topic, payload, enqueued_at) VALUES (?,?,?,?,?,?)",
                    (event_id, incident_id, kind, topic, body, time.time()),
                )
                if dropped:
                    self._db.execute(
                        "INSERT INTO meta(key, value) VALUES ('dropped', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                        (dropped,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += 1 - dropped
            self._dropped += dropped
            return int(cur.lastrowid)

    def _make_room_locked(self, n: int) -> int:
        """Delete ``n`` rows by the full policy; returns how many were deleted."""
        if n <= 0:
            return 0
        rows = self._db.execute(
            "SELECT seq FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?", (SUPERSEDED_KIND, n)
        ).fetchall()
        if len(rows) < n:
            rows += self._db.execute(
                "SELECT seq FROM outbox WHERE kind != ? ORDER BY seq LIMIT ?", (SUPERSEDED_KIND, n - len(rows))
            ).fetchall()
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", rows)
        return len(rows)

    def ack(self, seqs: list[int]) -> int:
        """Delete acknowledged events (a seq already dropped or acked is ignored); returns rows deleted."""
        if not seqs:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for seq in seqs:
                    deleted += self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= deleted
            return deleted

    # ------------------------------------------------------------------ reading

    def next_after(self, seq: int, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` events with a seq greater than ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, incident_id, kind, topic, payload, enqueued_at FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]

    def pending(self) -> int:
        with self._lock:
            return self._count

    @property
    def dropped(self) -> int:
        """Events dropped by the full policy over the outbox file's life."""
        with self._lock:
            return self._dropped

    def oldest_age_s(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(enqueued_at) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    def counts_by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())

    def pragmas(self) -> dict[str, Any]:
        with self._lock:
            return {
                "journal_mode": self._db.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": self._db.execute("PRAGMA synchronous").fetchone()[0],
            }

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _required(payload: Any) -> tuple[str, str, str]:
    if not isinstance(payload, dict):
        raise OutboxError(f"incident event must be a dict, got {type(payload).__name__}")
    values = []
    for key in ("event_id", "incident_id", "event"):
        value = payload.get(key)
        if not isinstance(value, str) or not value:
            raise OutboxError(f"incident event: {key!r} must be a non-empty string, got {value!r}")
        values.append(value)
    return values[0], values[1], values[2]
