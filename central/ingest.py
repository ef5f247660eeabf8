"""Ingest: MQTT messages (incidents, edge status, heartbeats, crowd figures) → database rows and cases.

``central/ingest_parse.py`` turns each message into a typed ``IncidentMessage`` / ``EdgeMessage`` or the specific
reason it is a dead letter, with no database; this module writes a batch of them in one transaction.

Properties:
- Idempotent: an incident event is recorded under its ``event_id``; a second delivery changes nothing.
- Ordered per incident by ``seq``: an event whose seq is not above the last applied one is recorded as ``stale``
  and applied to nothing; an ``updated`` after ``closed`` is recorded as ``after_close`` and does not reopen the
  incident. Gaps in seq are tolerated (the newest event wins).
- Bad input never raises and never fails a batch: every check happens before the transaction (ingest_parse), and a
  bad message becomes a ``dead_letters`` row with its reason.
- ``handle_batch`` commits once for many messages; the MQTT layer acknowledges only after that commit returns,
  so a crash before the commit means the broker redelivers.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock, SystemClock
from central.config import CentralConfig
from central.db import (
    Camera,
    Case,
    CaseAudit,
    CaseEvidence,
    CrowdFigure,
    DeadLetter,
    Edge,
    Incident,
    IncidentEvent,
    Silence,
)
from central.event_outbox import record_many
from central.events import DURABLE_KINDS, EventBus
from central.ingest_parse import (  # noqa: F401 - re-exported: the names other modules and tests know
    SCHEMA_ID,
    DeadLetterReason,
    EdgeMessage,
    Image,
    IncidentMessage,
    MessageParser,
    Parsed,
    decode_image,
    dedup_key,
    incident_validator,
    parse_time,
)
from central.occupancy import store_occupancy
from central.routing import route
from central.silences import silence_matches
from central.sla import Sla
from central.store import EvidenceError, EvidenceStore
from central.workflow import OPEN_STATES, apply_action_row, case_summary, enter_state, public_id_for

log = logging.getLogger(__name__)

DEAD_LETTER_KEEP_BYTES = 64 * 1024
# payloads refused for their sheer size keep only their start: storing 64 KiB of each would let a flood of them turn
# into disk writes (a 200 KB nesting bomb per message), and the first 4 KiB show what they were
DEAD_LETTER_KEEP_BYTES_HUGE = 4 * 1024
_HUGE_REASONS = frozenset({"oversized", "too_deep", "too_large"})
SYSTEM_ACTOR = "system"


@dataclass
class IngestResult:
    outcome: str  # applied | duplicate | stale | after_close | silenced | no_category | status | heartbeat | crowd |
    #               dead_letter
    reason: str | None = None  # dead-letter reason
    detail: str | None = None
    event_id: str | None = None
    incident_id: str | None = None
    case_id: int | None = None
    case_created: bool = False
    # case events go to the outbox in the batch's transaction; the others are published on the bus after the commit
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)


@dataclass
class _Batch:
    """What one transaction has loaded or written, so lookups inside a batch need no queries."""

    events: set[str] = field(default_factory=set)  # event ids already stored
    incidents: dict[str, Incident] = field(default_factory=dict)
    latest_case: dict[str, Case | None] = field(default_factory=dict)  # dedup key → newest case
    new_cases: set[int] = field(default_factory=set)
    evidence: set[tuple[int, str]] = field(default_factory=set)
    silences: list[Silence] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)  # pre-allocated case ids (popped from the end)
    sqlite_next: int = 0
    added: dict[tuple[type, Any], Any] = field(default_factory=dict)  # rows added (or prefetched) in the batch
    event_rows: list[dict[str, Any]] = field(default_factory=list)  # incident_events rows for one bulk insert
    dead_rows: list[dict[str, Any]] = field(default_factory=list)  # dead_letters rows for one bulk insert
    # case_audit and case_evidence rows: append-only and never read back in the batch, so plain dicts inserted in
    # bulk after the flush (their cases exist by then) instead of ORM objects in the unit of work
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    evidence_rows: list[dict[str, Any]] = field(default_factory=list)

    def get(self, session: Session, model: type, key: Any) -> Any:
        """Like session.get, but also finds rows this batch added (the batch runs without autoflush)."""
        row = self.added.get((model, key))
        return row if row is not None else session.get(model, key)

    def add(self, session: Session, model: type, key: Any, row: Any) -> Any:
        session.add(row)
        self.added[(model, key)] = row
        return row


CROWD_DETAIL_NUMBERS = ("estimate", "count_low", "count_high", "raw_count", "stationary", "peak_density")
PEAK_CELL_NUMBERS = ("col", "row", "estimate", "area_m2")
PEAK_CELL_POINTS = ("center_m", "center")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def crowd_detail(p: dict[str, Any]) -> dict[str, Any] | None:
    """The crowd figure's optional detail, kept only where it has the published shape (numbers, a short
    method name, a forecast object of numbers, short strings and booleans, a peak cell of numbers and points)."""
    out: dict[str, Any] = {k: p[k] for k in CROWD_DETAIL_NUMBERS if _is_number(p.get(k))}
    if isinstance(p.get("count_method"), str):
        out["count_method"] = p["count_method"][:32]
    f = p.get("forecast")
    if isinstance(f, dict):
        out["forecast"] = {k: (v[:16] if isinstance(v, str) else v) for k, v in list(f.items())[:8]
                           if isinstance(k, str) and isinstance(v, int | float | str | bool)}
    c = p.get("peak_cell")
    if isinstance(c, dict):
        cell = {k: c[k] for k in PEAK_CELL_NUMBERS if _is_number(c.get(k))}
        cell.update({k: list(c[k]) for k in PEAK_CELL_POINTS
                     if isinstance(c.get(k), list) and len(c[k]) == 2 and all(_is_number(v) for v in c[k])})
        if cell:
            out["peak_cell"] = cell
    return out or None


class PreparedMessage(tuple):  # type: ignore[type-arg]
    """A ``(topic, payload)`` pair that carries its parse result (``.parsed``), made by ``IngestService.prepare``:
    the MQTT worker classifies messages while it fills a batch (dead letters do not count towards ``batch_max``),
    and ``handle_batch`` does not parse them again. Anything that takes ``(topic, payload)`` pairs takes these."""

    parsed: Parsed

    def __new__(cls, topic: str, payload: bytes, parsed: Parsed) -> PreparedMessage:
        self = super().__new__(cls, (topic, payload))
        self.parsed = parsed
        return self


def _audit(case_id: int, at: datetime, action: str, from_state: str | None, to_state: str, note: str
           ) -> dict[str, Any]:
    """A case_audit row by the system (the ingest), for the batch's bulk insert."""
    return {"case_id": case_id, "at": at, "actor": SYSTEM_ACTOR, "action": action, "from_state": from_state,
            "to_state": to_state, "note": note, "attachments_json": None}


def _cut(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


# --------------------------------------------------------------------------- service


class IngestService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        config: CentralConfig,
        *,
        clock: Clock | None = None,
        store: EvidenceStore,
        bus: EventBus | None = None,
    ):
        self.session_factory = session_factory
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store
        self.bus = bus or EventBus()
        self.sla = Sla(config)
        self.parser = MessageParser(config)  # fails fast on a broken schema file
        self._camera_cache: dict[str, tuple[Any, ...]] = {}

    # ------------------------------------------------------------------ entry points

    def prepare(self, topic: str, payload: bytes) -> PreparedMessage:
        """Parse and validate one message (no database): a ``(topic, payload)`` pair for ``handle_batch``."""
        return PreparedMessage(topic, payload, self.parser.parse(topic, payload))

    def handle(self, topic: str, payload: bytes) -> IngestResult:
        """Process one message in its own transaction (commits). Never raises on bad input."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[IngestResult]:
        """Process messages in one transaction (commits) with their case events (outbox), then publish the live
        events on the bus.

        Every message is classified before the transaction (``MessageParser``), so bad input cannot fail a batch.
        Should the database still refuse a batch (a bug, or a race with another instance), the messages are redone
        one by one, and one that still fails goes to dead letters ("processing_error") so it cannot block the
        stream. Raises ``OperationalError``/``InterfaceError`` when the database itself is unavailable or locked:
        then nothing is committed and the caller must not acknowledge.
        """
        if not messages:
            return []
        # parsing, schema validation and snapshot decoding need no database: done before the write lock
        parsed = [m.parsed if isinstance(m, PreparedMessage) else self.parser.parse(*m) for m in messages]
        try:
            results = self._run(messages, parsed)
        except (OperationalError, InterfaceError):
            raise
        except Exception:  # not bad input (that is classified above): isolate it, never block the stream on it
            if len(messages) > 1:
                log.warning("ingest: batch of %d failed; redoing one by one", len(messages), exc_info=True)
                return [r for m in messages for r in self.handle_batch([m])]
            results = self._retry_alone(messages[0], parsed[0])
        durable = False
        for r in results:
            for kind, data in r.events:
                if kind in DURABLE_KINDS:
                    durable = True  # committed to the outbox in _run; the relay publishes it with its id
                else:
                    self.bus.publish(kind, data)
        if durable:
            self.bus.poke()
        if log.isEnabledFor(logging.INFO):
            dead = Counter(r.reason for r in results if r.outcome == "dead_letter")
            if dead:  # one line per batch, not per message: a flood of bad input must not become a flood of logs
                log.info("ingest: %d of %d messages dead-lettered: %s", sum(dead.values()), len(results),
                         ", ".join(f"{k} {v}" for k, v in dead.most_common()))
        return results

    def _retry_alone(self, message: tuple[str, bytes], parsed: Parsed) -> list[IngestResult]:
        # An IntegrityError can be a race with another central instance inserting the same incident: a retry then
        # sees the committed row. Anything that keeps failing is a data problem for the dead-letter table.
        error: Exception | None = None
        for _ in range(2):
            try:
                return self._run([message], [parsed])
            except (OperationalError, InterfaceError):
                raise
            except Exception as e:
                error = e
        log.error("ingest: %s could not be stored: %r", message[0], error)
        return [self._dead_letter_alone(message, "processing_error", f"{type(error).__name__}: {error}"[:500])]

    def _run(self, messages: Sequence[tuple[str, bytes]], parsed: list[Parsed]) -> list[IngestResult]:
        with self.session_factory() as session, session.no_autoflush:
            try:
                if session.get_bind().dialect.name == "sqlite":
                    # take the write lock up front: a deferred transaction that reads first and then writes can
                    # fail with SQLITE_BUSY_SNAPSHOT when another writer committed in between
                    session.execute(text("BEGIN IMMEDIATE"))
                batch = self._prefetch(session, parsed)
                results = [
                    self._one(session, topic, payload, pre, batch) for (topic, payload), pre in zip(
                        messages, parsed, strict=True)
                ]
                session.flush()  # cases, incidents, cameras, edges (ORM: they are updated within the batch)
                for model, rows in ((IncidentEvent, batch.event_rows), (DeadLetter, batch.dead_rows),
                                    (CaseAudit, batch.audit_rows), (CaseEvidence, batch.evidence_rows)):
                    if rows:  # Core on the table: one executemany (the ORM's bulk path splits rows by their Nones)
                        session.execute(insert(model.__table__), rows)
                record_many(session, [e for r in results for e in r.events])  # case events: with the change
                session.commit()
            except BaseException:
                session.rollback()
                self._camera_cache.clear()
                raise
        return results

    def _prefetch(self, session: Session, parsed: list[Parsed]) -> _Batch:
        """Load what the batch will look up (known events, incidents, latest case per dedup key) in a few queries."""
        batch = _Batch()
        incidents = [m for m in parsed if isinstance(m, IncidentMessage)]
        if not incidents:
            if session.get_bind().dialect.name == "postgresql" and self.config.mqtt.shared_group is not None:
                self._lock_rows(session, parsed)
            return batch
        batch.events = set(session.scalars(select(IncidentEvent.event_id).where(
            IncidentEvent.event_id.in_({m.event_id for m in incidents}))))
        if session.get_bind().dialect.name == "postgresql" and self.config.mqtt.shared_group is not None:
            self._lock_rows(session, parsed)
        stmt = select(Incident).where(Incident.incident_id.in_({m.incident_id for m in incidents}))
        batch.incidents = {i.incident_id: i for i in session.scalars(stmt)}
        cameras = {m.camera_id for m in incidents if self._camera_cache.get(m.camera_id) != self._camera_info(m)}
        if cameras:  # loaded at once: _touch_camera then needs no query per camera
            for row in session.scalars(select(Camera).where(Camera.camera_id.in_(cameras))):
                batch.added[(Camera, row.camera_id)] = row
        fresh = [m for m in incidents if m.incident_id not in batch.incidents]
        keys = {m.dedup_key for m in fresh if m.dedup_key is not None}
        if keys:
            latest_ids = select(func.max(Case.id)).where(Case.dedup_key.in_(keys)).group_by(Case.dedup_key)
            found = {c.dedup_key: c for c in session.scalars(select(Case).where(Case.id.in_(latest_ids)))}
            batch.latest_case = {k: found.get(k) for k in keys}
        if fresh:
            lower = min(m.started for m in fresh)
            batch.silences = list(session.scalars(select(Silence).where(Silence.ends_at > lower).order_by(Silence.id)))
        return batch

    def _lock_rows(self, session: Session, parsed: list[Parsed]) -> None:
        """Several instances on a shared subscription: before looking anything up, take a transaction-scoped
        advisory lock on every row this batch might insert (incident, dedup key → case, camera, edge, crowd figure),
        all at once in one global order so two batches cannot deadlock. Whoever comes second then sees the first
        one's committed rows instead of inserting them again."""
        names: set[str] = set()
        for m in parsed:
            if isinstance(m, IncidentMessage):
                names.add("incident:" + m.incident_id)
                if m.dedup_key is not None:
                    names.add("case:" + m.dedup_key)
                if m.camera_id not in self._camera_cache:
                    names.add("camera:" + m.camera_id)
            elif isinstance(m, EdgeMessage):
                if m.leaf in ("status", "heartbeat"):
                    names.add("edge:" + m.edge_id)
                    cams = m.data.get("cameras") if m.leaf == "heartbeat" else None
                    for c in cams if isinstance(cams, list) else []:
                        cid = (c.get("camera_id") or c.get("id")) if isinstance(c, dict) else None
                        if isinstance(cid, str):
                            names.add("camera:" + cid)
                elif m.leaf == "crowd":
                    names.add(f"crowd:{m.data.get('camera_id')}|{m.data.get('zone')}")
        ids = sorted({int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big", signed=True)
                      for n in names})
        if ids:
            session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:ids AS bigint[])) AS k"),
                            {"ids": ids})

    def _dead_letter_alone(self, message: tuple[str, bytes], reason: str, detail: str) -> IngestResult:
        topic, payload = message
        batch = _Batch()
        res = self._dead_letter(topic, payload, reason, detail, batch)
        with self.session_factory() as session:
            session.execute(insert(DeadLetter.__table__), batch.dead_rows)
            session.commit()
        return res

    # ------------------------------------------------------------------ dispatch

    def _one(self, session: Session, topic: str, payload: bytes, pre: Parsed, batch: _Batch) -> IngestResult:
        if isinstance(pre, DeadLetterReason):
            return self._dead_letter(topic, payload, pre.reason, pre.detail, batch)
        try:
            if isinstance(pre, IncidentMessage):
                return self._incident(session, pre, batch)
            if pre.leaf == "status":
                return self._status(session, pre.edge_id, pre.data, batch)
            if pre.leaf == "heartbeat":
                return self._heartbeat(session, pre.edge_id, pre.data, batch)
            if pre.leaf == "occupancy":  # parking figures: central/occupancy.py
                outcome, detail = store_occupancy(session, pre.edge_id, pre.data, self.clock.now(), batch)
                return IngestResult(outcome, detail=detail)
            return self._crowd(session, pre.edge_id, pre.data, batch)
        except DeadLetterReason as e:
            return self._dead_letter(topic, payload, e.reason, e.detail, batch)

    def _dead_letter(self, topic: str, payload: bytes, reason: str, detail: str, batch: _Batch) -> IngestResult:
        batch.dead_rows.append({
            "received_at": self.clock.now(), "topic": topic[:512], "reason": reason, "detail": detail,
            "size": len(payload),
            "payload": payload[:DEAD_LETTER_KEEP_BYTES_HUGE if reason in _HUGE_REASONS else DEAD_LETTER_KEEP_BYTES],
        })
        log.debug("dead letter (%s) on %s: %s", reason, topic[:200], detail)  # a summary per batch: _log_batch
        return IngestResult("dead_letter", reason=reason, detail=detail)

    # ------------------------------------------------------------------ incidents

    def _incident(self, session: Session, m: IncidentMessage, batch: _Batch) -> IngestResult:
        now = self.clock.now()
        event_id, incident_id, seq, kind = m.event_id, m.incident_id, m.seq, m.event
        if event_id in batch.events:
            return IngestResult("duplicate", event_id=event_id, incident_id=incident_id)

        result = IngestResult("applied", event_id=event_id, incident_id=incident_id)
        self._touch_camera(session, m, now, batch)
        inc = batch.incidents.get(incident_id)
        if inc is None:
            pos = m.position
            inc = Incident(
                incident_id=incident_id, type=m.type, edge_id=m.edge_id, camera_id=m.camera_id,
                zone=m.zone, grid_cell=self._grid_cell(m),
                position_x=pos[0] if pos else None, position_y=pos[1] if pos else None,
                state="closed" if kind == "closed" else "open", started_at=m.started, last_seen_at=m.last_seen,
                ended_at=m.ended, last_seq=seq, payload_json=m.stored, created_at=now, silenced=False,
            )
            batch.add(session, Incident, incident_id, inc)
            batch.incidents[incident_id] = inc
            self._attach_case(session, inc, m, now, result, batch)
        elif seq <= inc.last_seq:
            result.outcome = "stale"
        elif inc.state == "closed" and kind != "closed":
            result.outcome = "after_close"  # recorded, does not reopen
        else:
            inc.last_seq = seq
            inc.last_seen_at = max(inc.last_seen_at, m.last_seen)
            inc.payload_json = m.stored
            if kind == "closed":
                inc.state = "closed"
                inc.ended_at = m.ended or m.last_seen
            result.case_id = inc.case_id
            if inc.silenced:
                result.outcome = "silenced"
        if m.snapshot is not None and inc.case_id is not None and result.outcome == "applied":
            self._add_snapshot(session, inc.case_id, m.snapshot, incident_id, event_id, now, batch)
        if inc.case_id is not None and result.outcome == "applied":
            for ev_kind, taken_at, image in m.evidence:  # dated when taken (the arrival photo is older)
                self._add_snapshot(session, inc.case_id, image, incident_id, event_id, taken_at, batch, kind=ev_kind)
        batch.events.add(event_id)
        batch.event_rows.append({  # inserted in bulk (Core) at the end of the batch
            "event_id": event_id, "incident_id": incident_id, "seq": seq, "event": kind, "emitted_at": m.emitted,
            "received_at": now, "outcome": result.outcome,
            "payload_json": None if result.outcome == "applied" else m.stored,
        })
        result.events.insert(0, ("incident.event", {
            "event_id": event_id, "incident_id": incident_id, "seq": seq, "event": kind, "type": m.type,
            "camera_id": m.camera_id, "zone": m.zone, "outcome": result.outcome, "case_id": inc.case_id,
        }))
        return result

    def _grid_cell(self, m: IncidentMessage) -> str | None:
        return m.grid_cell

    def _snapshot(self, snap: dict[str, Any] | None, what: str = "snapshot") -> Image | None:
        """Decode and verify one inline JPEG (the snapshot or an evidence item's); raises DeadLetterReason."""
        return decode_image(snap, self.config.max_snapshot_bytes, what)

    def _add_snapshot(
        self, session: Session, case_id: int, snapshot: Image, incident_id: str, event_id: str,
        now: datetime, batch: _Batch, kind: str = "before",
    ) -> None:
        try:
            self.store.put(snapshot.data, snapshot.content_type, expected_sha256=snapshot.sha256)
        except EvidenceError as e:
            log.warning("snapshot of %s not stored: %s", event_id, e)
            return
        digest = snapshot.sha256
        if (case_id, digest) in batch.evidence:
            return
        batch.evidence.add((case_id, digest))
        exists = None if case_id in batch.new_cases else session.scalar(
            select(CaseEvidence.id).where(CaseEvidence.case_id == case_id, CaseEvidence.sha256 == digest).limit(1)
        )
        if exists is None:
            batch.evidence_rows.append({
                "case_id": case_id, "kind": kind, "sha256": digest, "content_type": snapshot.content_type,
                "bytes": len(snapshot.data), "at": now, "incident_id": incident_id, "event_id": event_id,
                "actor": SYSTEM_ACTOR,
            })
            case = batch.get(session, Case, case_id)
            if kind == "before" and case is not None and case.snapshot_sha256 is None:
                case.snapshot_sha256 = digest

    @staticmethod
    def _camera_info(m: IncidentMessage) -> tuple[Any, ...]:
        return m.edge_id, _cut(m.camera_name, 256), m.camera_grid_cell, m.lat, m.lon, _cut(m.camera_address, 512)

    def _touch_camera(self, session: Session, m: IncidentMessage, now: datetime, batch: _Batch) -> None:
        info = self._camera_info(m)
        if self._camera_cache.get(m.camera_id) == info:
            return
        row = batch.get(session, Camera, m.camera_id)
        if row is None:
            row = batch.add(session, Camera, m.camera_id, Camera(camera_id=m.camera_id))
        row.edge_id, row.name, row.grid_cell, row.lat, row.lon, row.address = info
        row.updated_at = now
        self._camera_cache[m.camera_id] = info

    def _attach_case(
        self, session: Session, inc: Incident, m: IncidentMessage, now: datetime, res: IngestResult, batch: _Batch
    ) -> None:
        """Silence check, then append to the open case with the same dedup key or open a new one."""
        cat = m.category
        if cat is None or m.dedup_key is None:
            res.outcome = "no_category"
            return
        silence = next((s for s in batch.silences if silence_matches(
            s, category=inc.type, camera_id=inc.camera_id, zone=inc.zone, grid_cell=inc.grid_cell, at=inc.started_at,
        )), None)
        if silence is not None:
            inc.silenced, inc.silence_id = True, silence.id
            res.outcome = "silenced"
            return
        key = m.dedup_key
        latest = batch.latest_case.get(key)  # complete: prefetched after the row locks (see _lock_rows)
        if latest is not None and latest.state in OPEN_STATES:
            latest.incident_count += 1
            latest.updated_at = now
            inc.case_id = latest.id
            batch.audit_rows.append(_audit(latest.id, now, "incident_appended", latest.state, latest.state,
                                           f"repeat incident {inc.incident_id}"))
            res.case_id = latest.id
            res.events.append(("case.updated", {**case_summary(latest), "action": "incident_appended"}))
            return
        recurrence = latest if latest is not None and latest.state in ("closed", "archived") else None
        pos = m.position
        r = route(self.config, category=inc.type, grid_cell=inc.grid_cell, zone=inc.zone, camera_id=inc.camera_id)
        case = Case(
            id=self._next_case_id(session, batch), category=inc.type, state="reported", dedup_key=key,
            camera_id=inc.camera_id, edge_id=inc.edge_id,
            zone=inc.zone, grid_cell=inc.grid_cell, lat=m.lat, lon=m.lon,
            address=_cut(m.zone_location or m.camera_address, 512),
            position_x=pos[0] if pos else None, position_y=pos[1] if pos else None,
            department=r.department, squad=r.squad, reported_at=now, due_at=self.sla.due_at(inc.type, now),
            previous_case_id=recurrence.id if recurrence else None,
            recurrence_count=(recurrence.recurrence_count + 1) if recurrence else 0,
            rework_count=0, incident_count=1,
            title=_cut(f"{cat.name} — {m.zone} ({m.camera_name or m.camera_id})", 256),
            updated_at=now,
        )
        enter_state(case, "reported", now, self.sla)
        case.public_id = public_id_for(case.id, now, self.config)
        batch.add(session, Case, case.id, case)
        batch.latest_case[key] = case
        batch.new_cases.add(case.id)
        inc.case_id = case.id
        note = f"incident {inc.incident_id}"
        if recurrence:
            note += f"; recurrence of {recurrence.public_id}"
        batch.audit_rows.append(_audit(case.id, now, "report", None, "reported", note))
        if cat.auto_file or cat.auto_dispatch:
            batch.audit_rows.append(apply_action_row(case, "file", SYSTEM_ACTOR, now, self.sla,
                                                     note="auto-filed (category rule)"))
        if cat.auto_dispatch:
            batch.audit_rows.append(apply_action_row(case, "dispatch", SYSTEM_ACTOR, now, self.sla,
                                                     note="auto-dispatched (category rule)"))
        res.case_id, res.case_created = case.id, True
        res.events.append(("case.created", case_summary(case)))

    def _next_case_id(self, session: Session, batch: _Batch) -> int:
        """Case ids are assigned here (not by a flush per case): SQLite holds the write lock for the whole batch
        (BEGIN IMMEDIATE), so max(id) + 1 is safe; PostgreSQL takes blocks from the serial's sequence."""
        if not batch.case_ids:
            if session.get_bind().dialect.name == "postgresql":
                batch.case_ids = list(session.scalars(text(
                    "SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, 64)")))
            else:
                top = batch.sqlite_next or (session.scalar(select(func.max(Case.id))) or 0) + 1
                batch.case_ids = list(range(top, top + 64))
                batch.sqlite_next = top + 64
            batch.case_ids.reverse()
        return batch.case_ids.pop()

    # ------------------------------------------------------------------ edge status, heartbeat, crowd

    def _edge(self, session: Session, edge_id: str, batch: _Batch) -> Edge:
        row = batch.get(session, Edge, edge_id)
        if row is None:
            row = batch.add(session, Edge, edge_id, Edge(edge_id=edge_id, state="unknown"))
        return row

    def _status(self, session: Session, edge_id: str, p: dict[str, Any], batch: _Batch) -> IngestResult:
        state = p.get("state")
        if state not in ("online", "offline"):
            raise DeadLetterReason("schema", f"status.state must be 'online' or 'offline', got {str(state)[:40]!r}")
        now = self.clock.now()
        row = self._edge(session, edge_id, batch)
        row.state = state
        row.version = str(p["version"])[:64] if p.get("version") else row.version
        row.status_json = p
        row.last_seen_at = now
        row.updated_at = now
        return IngestResult("status", events=[("edge.status", {"edge_id": edge_id, "state": state,
                                                               "at": now.isoformat(), "version": row.version})])

    def _heartbeat(self, session: Session, edge_id: str, p: dict[str, Any], batch: _Batch) -> IngestResult:
        now = self.clock.now()
        cams = p.get("cameras") or []
        if not isinstance(cams, list):
            raise DeadLetterReason("schema", "heartbeat.cameras must be a list")
        row = self._edge(session, edge_id, batch)
        if row.state != "online":
            row.state = "online"
        row.heartbeat_json = p
        row.heartbeat_at = now
        row.last_seen_at = now
        row.updated_at = now
        events: list[tuple[str, dict[str, Any]]] = []
        for c in cams:
            if not isinstance(c, dict):
                continue
            cid = c.get("camera_id") or c.get("id")
            if not isinstance(cid, str) or not cid or len(cid) > 128:
                continue
            cam = batch.get(session, Camera, cid)
            if cam is None:
                cam = batch.add(session, Camera, cid,
                                Camera(camera_id=cid, edge_id=edge_id, name=_cut(c.get("name"), 256)))
            self._camera_cache.pop(cid, None)
            cam.edge_id = edge_id
            cam.health_json = c
            cam.updated_at = now
            events.append(("camera.health", {"camera_id": cid, "edge_id": edge_id, "health": c}))
        return IngestResult("heartbeat", events=[("edge.status", {"edge_id": edge_id, "state": row.state,
                                                                  "at": now.isoformat(), "heartbeat": True}), *events])

    def _crowd(self, session: Session, edge_id: str, p: dict[str, Any], batch: _Batch) -> IngestResult:
        cid, zone = p.get("camera_id"), p.get("zone")
        if not isinstance(cid, str) or not 0 < len(cid) <= 128 or not isinstance(zone, str) or not 0 < len(zone) <= 128:
            raise DeadLetterReason("schema", "crowd figure needs camera_id and zone strings of 1..128 characters")
        now = self.clock.now()
        at = parse_time(p["at"], "at") if p.get("at") else now
        row = batch.get(session, CrowdFigure, (cid, zone))
        if row is None:
            row = batch.add(session, CrowdFigure, (cid, zone),
                            CrowdFigure(camera_id=cid, zone=zone, at=at, updated_at=now))
        elif at < row.at:
            return IngestResult("crowd", detail="older than the stored figure")
        count, density = p.get("count"), p.get("density")
        row.edge_id = edge_id
        row.at = at
        row.count = int(count) if isinstance(count, int | float) else None
        row.density = float(density) if isinstance(density, int | float) else None
        row.level = str(p["level"])[:16] if p.get("level") else None
        row.detail_json = crowd_detail(p)
        row.updated_at = now
        return IngestResult("crowd", events=[("crowd.figure", {"edge_id": edge_id, "camera_id": cid, "zone": zone,
                                                               "at": at.isoformat(), "count": row.count,
                                                               "density": row.density, "level": row.level,
                                                               **(row.detail_json or {})})])
