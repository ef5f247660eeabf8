"""Ingest: MQTT messages (incidents, edge status, heartbeats, crowd figures) → database rows and cases.

Properties:
- Idempotent: an incident event is recorded under its ``event_id``; a second delivery changes nothing.
- Ordered per incident by ``seq``: an event whose seq is not above the last applied one is recorded as ``stale``
  and applied to nothing; an ``updated`` after ``closed`` is recorded as ``after_close`` and does not reopen the
  incident. Gaps in seq are tolerated (the newest event wins).
- Bad input never raises: malformed JSON, schema failures, oversized payloads, unknown schema versions, bad
  snapshots and unknown topics go to ``dead_letters`` with a reason.
- ``handle_batch`` commits once for many messages; the MQTT layer acknowledges only after that commit returns,
  so a crash before the commit means the broker redelivers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from central import edge_messages
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
from central.events import EventBus
from central.routing import route
from central.silences import silence_matches
from central.sla import Sla
from central.store import EvidenceError, EvidenceStore
from central.workflow import OPEN_STATES, apply_action, case_summary, enter_state, public_id_for

log = logging.getLogger(__name__)

SCHEMA_ID = "gridwatch.incident/1"
POSITION_TYPES = frozenset({"illegal_parking", "street_vending"})
DEAD_LETTER_KEEP_BYTES = 64 * 1024
SYSTEM_ACTOR = "system"


class DeadLetterReason(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


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
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)  # published after commit


@dataclass
class _Checked:
    """An incident event that passed every check that needs no database."""

    started: datetime
    last_seen: datetime
    ended: datetime | None
    emitted: datetime
    snapshot: tuple[bytes, str, str] | None  # (data, content type, sha256)
    evidence: list[tuple[str, datetime, tuple[bytes, str, str]]] = field(default_factory=list)  # (kind, at, image)


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
    added: dict[tuple[type, Any], Any] = field(default_factory=dict)  # rows added but not flushed yet
    event_rows: list[dict[str, Any]] = field(default_factory=list)  # incident_events rows for one bulk insert

    def get(self, session: Session, model: type, key: Any) -> Any:
        """Like session.get, but also finds rows this batch added (the batch runs without autoflush)."""
        row = self.added.get((model, key))
        return row if row is not None else session.get(model, key)

    def add(self, session: Session, model: type, key: Any, row: Any) -> Any:
        session.add(row)
        self.added[(model, key)] = row
        return row


# --------------------------------------------------------------------------- schema


_FALLBACK_SCHEMA: dict[str, Any] = {
    # Used only when edge/schemas/incident.v1.json is not installed; mirrors the payload contract's required core.
    "type": "object",
    "required": ["schema", "event_id", "incident_id", "seq", "event", "type", "emitted_at", "started_at",
                 "last_seen_at", "edge_id", "camera", "zone"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "event_id": {"type": "string", "minLength": 8, "maxLength": 64},
        "incident_id": {"type": "string", "minLength": 8, "maxLength": 64},
        "seq": {"type": "integer", "minimum": 1},
        "event": {"enum": ["opened", "updated", "closed"]},
        "type": {"enum": ["illegal_parking", "street_vending", "crowd_density"]},
        "emitted_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time"},
        "last_seen_at": {"type": "string", "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "edge_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "camera": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "minLength": 1}}},
        "zone": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}},
        "subject": {"type": ["object", "null"]},
        "crowd": {"type": ["object", "null"]},
        "snapshot": {
            "type": ["object", "null"],
            "required": ["content_type", "encoding", "sha256", "data"],
            "properties": {"encoding": {"const": "base64"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        },
    },
}


def _load_incident_schema() -> dict[str, Any]:
    try:
        raw = resources.files("edge").joinpath("schemas/incident.v1.json").read_text(encoding="utf-8")
        return json.loads(raw)
    except (FileNotFoundError, ModuleNotFoundError):
        log.warning("edge/schemas/incident.v1.json not found; validating incidents with the built-in core schema")
        return _FALLBACK_SCHEMA


@lru_cache(maxsize=1)
def incident_validator() -> jsonschema.protocols.Validator:
    """The edge's JSON Schema (edge/schemas/incident.v1.json via importlib.resources), compiled once."""
    schema = _load_incident_schema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@lru_cache(maxsize=1)
def _fast_validator() -> Callable[[Any], Any] | None:
    """The same schema compiled to Python by fastjsonschema (~10x faster): the accept path at thousands of events
    per second. A payload it rejects is re-checked by jsonschema, which also writes the error message."""
    try:
        return fastjsonschema.compile(_load_incident_schema())
    except Exception:  # a schema feature fastjsonschema does not support: use jsonschema only
        log.warning("fastjsonschema cannot compile the incident schema; using jsonschema", exc_info=True)
        return None


def _schema_error(payload: dict[str, Any]) -> str | None:
    fast = _fast_validator()
    if fast is not None:
        try:
            fast(payload)
            return None
        except fastjsonschema.JsonSchemaException:
            pass
    err = jsonschema.exceptions.best_match(incident_validator().iter_errors(payload))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    return f"{where}: {err.message[:300]}"


# --------------------------------------------------------------------------- helpers


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise DeadLetterReason("schema", f"{name}: expected an RFC 3339 timestamp, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise DeadLetterReason("schema", f"{name}: {value[:40]!r} is not an RFC 3339 timestamp") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def dedup_key(payload: dict[str, Any], grid: float) -> str:
    """camera | zone | type, plus the subject position rounded to ``grid`` for parking and vending."""
    key = f"{payload['type']}|{payload['camera']['id']}|{payload['zone']['name']}"
    subject = payload.get("subject") or {}
    pos = subject.get("position")
    if payload["type"] in POSITION_TYPES and isinstance(pos, list) and len(pos) == 2:
        key += f"|{round(float(pos[0]) / grid)}:{round(float(pos[1]) / grid)}"
    return key


_MAX_LEN = {"event_id": 64, "incident_id": 64, "type": 48, "edge_id": 128}


def _check_lengths(p: dict[str, Any]) -> None:
    """Column limits, so PostgreSQL never refuses what SQLite would silently accept."""
    for key, limit in _MAX_LEN.items():
        if len(str(p[key])) > limit:
            raise DeadLetterReason("schema", f"{key}: longer than {limit} characters")
    if len(str(p["camera"]["id"])) > 128 or len(str(p["zone"]["name"])) > 128:
        raise DeadLetterReason("schema", "camera.id / zone.name: longer than 128 characters")
    cells = [p["zone"].get("grid_cell"), (p["camera"].get("location") or {}).get("grid_cell")]
    if any(c is not None and len(str(c)) > 64 for c in cells):
        raise DeadLetterReason("schema", "grid_cell: longer than 64 characters")


def _cut(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _strip_snapshot(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as stored: image data lives in the evidence store, not in the JSON."""
    out = dict(payload)
    if payload.get("snapshot"):
        out["snapshot"] = {k: v for k, v in payload["snapshot"].items() if k != "data"}
    if payload.get("evidence"):
        out["evidence"] = [{**e, "snapshot": {k: v for k, v in e["snapshot"].items() if k != "data"}}
                           for e in payload["evidence"]]
    return out


def _topic_parts(topic: str, prefix: str) -> tuple[str, str] | None:
    """'gridwatch/v1/<edge>/<leaf>' → (edge, leaf); None when the topic is not ours."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1:].split("/")
    if len(rest) != 2 or not 0 < len(rest[0]) <= 128:
        return None
    return rest[0], rest[1]


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
        self._camera_cache: dict[str, tuple[Any, ...]] = {}
        incident_validator()  # fail fast on a broken schema file

    # ------------------------------------------------------------------ entry points

    def handle(self, topic: str, payload: bytes) -> IngestResult:
        """Process one message in its own transaction (commits). Never raises on bad input."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[IngestResult]:
        """Process messages in one transaction (commits) and publish their bus events.

        If the batch fails on a data error (or an unexpected exception), the messages are redone one by one, and a
        message that still fails goes to dead letters ("processing_error") so it cannot block the stream.
        Raises ``OperationalError``/``InterfaceError`` when the database itself is unavailable or locked: then
        nothing is committed and the caller must not acknowledge.
        """
        if not messages:
            return []
        try:
            # parsing, schema validation and snapshot decoding need no database: done before the write lock
            results = self._run(messages, [self._parse(topic, payload) for topic, payload in messages])
        except (OperationalError, InterfaceError):
            raise
        except Exception:  # a data error (or a bug) in one message: isolate it, never block the stream on it
            if len(messages) > 1:
                log.warning("ingest: batch of %d failed; redoing one by one", len(messages), exc_info=True)
                return [r for m in messages for r in self.handle_batch([m])]
            results = self._retry_alone(messages[0])
        for r in results:
            for kind, data in r.events:
                self.bus.publish(kind, data)
        return results

    def _retry_alone(self, message: tuple[str, bytes]) -> list[IngestResult]:
        # An IntegrityError can be a race with another central instance inserting the same incident: a retry then
        # sees the committed row. Anything that keeps failing is a data problem for the dead-letter table.
        error: Exception | None = None
        for _ in range(2):
            try:
                return self._run([message], [self._parse(*message)])
            except (OperationalError, InterfaceError):
                raise
            except Exception as e:
                error = e
        log.error("ingest: %s could not be stored: %r", message[0], error)
        return [self._dead_letter_alone(message, "processing_error", f"{type(error).__name__}: {error}"[:500])]

    def _run(self, messages: Sequence[tuple[str, bytes]], parsed: list[Any]) -> list[IngestResult]:
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
                session.flush()
                if batch.event_rows:
                    session.execute(insert(IncidentEvent), batch.event_rows)
                session.commit()
            except BaseException:
                session.rollback()
                self._camera_cache.clear()
                raise
        return results

    def _prefetch(self, session: Session, parsed: list[Any]) -> _Batch:
        """Load what the batch will look up (known events, incidents, latest case per dedup key) in a few queries."""
        batch = _Batch()
        incidents = [d for d in parsed if isinstance(d, tuple) and d[1] == "incidents"]
        event_ids = {d[2].get("event_id") for d in incidents} - {None}
        incident_ids = {d[2].get("incident_id") for d in incidents} - {None}
        event_ids = {x for x in event_ids if isinstance(x, str)}
        incident_ids = {x for x in incident_ids if isinstance(x, str)}
        if event_ids:
            batch.events = set(session.scalars(select(IncidentEvent.event_id).where(
                IncidentEvent.event_id.in_(event_ids))))
        if session.get_bind().dialect.name == "postgresql" and self.config.mqtt.shared_group is not None:
            self._lock_rows(session, parsed)
        if incident_ids:
            stmt = select(Incident).where(Incident.incident_id.in_(incident_ids))
            batch.incidents = {i.incident_id: i for i in session.scalars(stmt)}
        keys: set[str] = set()
        starts: list[str] = []
        for _, _, p, _ in incidents:
            if p.get("incident_id") in batch.incidents:
                continue
            cat = self.config.category(str(p.get("type")))
            try:
                if cat is not None:
                    keys.add(dedup_key(p, cat.dedup_grid))
                starts.append(str(p["started_at"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # invalid payload: the schema check reports it
        if keys:
            latest_ids = select(func.max(Case.id)).where(Case.dedup_key.in_(keys)).group_by(Case.dedup_key)
            found = {c.dedup_key: c for c in session.scalars(select(Case).where(Case.id.in_(latest_ids)))}
            batch.latest_case = {k: found.get(k) for k in keys}
        if starts:
            try:
                lower = min(parse_time(x, "started_at") for x in starts)
            except DeadLetterReason:
                lower = None
            stmt = select(Silence).order_by(Silence.id)
            batch.silences = list(session.scalars(stmt if lower is None else stmt.where(Silence.ends_at > lower)))
        return batch

    def _lock_rows(self, session: Session, parsed: list[Any]) -> None:
        """Several instances on a shared subscription: before looking anything up, take a transaction-scoped
        advisory lock on every row this batch might insert (incident, dedup key → case, camera, edge, crowd figure),
        all at once in one global order so two batches cannot deadlock. Whoever comes second then sees the first
        one's committed rows instead of inserting them again."""
        names: set[str] = set()
        for d in parsed:
            if not isinstance(d, tuple):
                continue
            edge_id, leaf, p, _ = d
            if leaf == "incidents":
                names.add("incident:" + p["incident_id"])
                cat = self.config.category(p["type"])
                if cat is not None:
                    names.add("case:" + dedup_key(p, cat.dedup_grid))
                if p["camera"]["id"] not in self._camera_cache:
                    names.add("camera:" + p["camera"]["id"])
            elif leaf in ("status", "heartbeat"):
                names.add("edge:" + edge_id)
                cams = p.get("cameras") if leaf == "heartbeat" else None
                for c in cams if isinstance(cams, list) else []:
                    cid = (c.get("camera_id") or c.get("id")) if isinstance(c, dict) else None
                    if isinstance(cid, str):
                        names.add("camera:" + cid)
            elif leaf == "crowd":
                names.add(f"crowd:{p.get('camera_id')}|{p.get('zone')}")
        ids = sorted({int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big", signed=True)
                      for n in names})
        if ids:
            session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:ids AS bigint[])) AS k"),
                            {"ids": ids})

    def _dead_letter_alone(self, message: tuple[str, bytes], reason: str, detail: str) -> IngestResult:
        topic, payload = message
        with self.session_factory() as session:
            res = self._dead_letter(session, topic, payload, reason, detail)
            session.commit()
        return res

    # ------------------------------------------------------------------ dispatch by topic

    def _parse(
        self, topic: str, payload: bytes
    ) -> tuple[str, str, dict[str, Any], _Checked | None] | DeadLetterReason:
        """(edge_id, leaf, JSON object, checked incident) or the reason the message is a dead letter."""
        parts = _topic_parts(topic, self.config.mqtt.topic_prefix)
        if parts is None:
            return DeadLetterReason("unknown_topic", f"topic {topic[:200]!r} is not ours")
        edge_id, leaf = parts
        if leaf not in ("incidents", "status", "heartbeat", "crowd"):
            return DeadLetterReason("unknown_topic", f"no handler for '{leaf}' messages")
        if self.config.mqtt.edges and edge_id not in self.config.mqtt.edges:
            return DeadLetterReason("unknown_edge", f"edge {edge_id[:64]!r} is not in mqtt.edges")
        if len(payload) > self.config.max_payload_bytes:
            return DeadLetterReason(
                "oversized", f"{len(payload)} bytes is over max_payload_bytes={self.config.max_payload_bytes}"
            )
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return DeadLetterReason("malformed_json", str(e)[:300])
        if not isinstance(data, dict):
            return DeadLetterReason("malformed_json", "top level is not a JSON object")
        if leaf == "incidents":
            try:
                return edge_id, leaf, data, self._check_incident(edge_id, data)
            except DeadLetterReason as e:
                return e
        problem = edge_messages.check(leaf, edge_id, data)  # status, heartbeat, crowd: their schemas
        if problem:
            return DeadLetterReason(*problem)
        return edge_id, leaf, data, None

    def _one(self, session: Session, topic: str, payload: bytes, pre: Any, batch: _Batch) -> IngestResult:
        if isinstance(pre, DeadLetterReason):
            return self._dead_letter(session, topic, payload, pre.reason, pre.detail)
        edge_id, leaf, data, checked = pre
        try:
            if leaf == "incidents":
                return self._incident(session, edge_id, data, checked, batch)
            if leaf == "status":
                return self._status(session, edge_id, data, batch)
            if leaf == "heartbeat":
                return self._heartbeat(session, edge_id, data, batch)
            return self._crowd(session, edge_id, data, batch)
        except DeadLetterReason as e:
            return self._dead_letter(session, topic, payload, e.reason, e.detail)

    def _dead_letter(self, session: Session, topic: str, payload: bytes, reason: str, detail: str) -> IngestResult:
        session.add(DeadLetter(
            received_at=self.clock.now(), topic=topic[:512], reason=reason, detail=detail, size=len(payload),
            payload=payload[:DEAD_LETTER_KEEP_BYTES],
        ))
        log.info("dead letter (%s) on %s: %s", reason, topic[:200], detail)
        return IngestResult("dead_letter", reason=reason, detail=detail)

    # ------------------------------------------------------------------ incidents

    def _check_incident(self, edge_id: str, p: dict[str, Any]) -> _Checked:
        """Everything about an incident event that needs no database; raises DeadLetterReason."""
        version = p.get("schema")
        if version != SCHEMA_ID:
            raise DeadLetterReason("unknown_version", f"schema {str(version)[:60]!r} is not {SCHEMA_ID!r}")
        problem = _schema_error(p)
        if problem:
            raise DeadLetterReason("schema", problem)
        _check_lengths(p)
        if p["edge_id"] != edge_id:
            raise DeadLetterReason("topic_mismatch", f"payload edge_id {p['edge_id']!r} published on edge {edge_id!r}")
        return _Checked(
            started=parse_time(p["started_at"], "started_at"),
            last_seen=parse_time(p["last_seen_at"], "last_seen_at"),
            ended=parse_time(p["ended_at"], "ended_at") if p.get("ended_at") else None,
            emitted=parse_time(p["emitted_at"], "emitted_at"),
            snapshot=self._snapshot(p.get("snapshot")),
            evidence=[(e["kind"], parse_time(e["at"], f"evidence[{i}].at"),  # type: ignore[misc]
                       self._snapshot(e["snapshot"], f"evidence[{i}]")) for i, e in enumerate(p.get("evidence") or [])],
        )

    def _incident(
        self, session: Session, edge_id: str, p: dict[str, Any], checked: _Checked, batch: _Batch
    ) -> IngestResult:
        now = self.clock.now()
        event_id, incident_id, seq, kind = p["event_id"], p["incident_id"], int(p["seq"]), p["event"]
        started, last_seen, ended, emitted = checked.started, checked.last_seen, checked.ended, checked.emitted
        snapshot = checked.snapshot
        if event_id in batch.events:
            return IngestResult("duplicate", event_id=event_id, incident_id=incident_id)

        stored = _strip_snapshot(p)
        result = IngestResult("applied", event_id=event_id, incident_id=incident_id)
        self._touch_camera(session, edge_id, p, now, batch)
        inc = batch.incidents.get(incident_id)
        if inc is None:
            subject = p.get("subject") or {}
            pos = subject.get("position") if isinstance(subject.get("position"), list) else None
            inc = Incident(
                incident_id=incident_id, type=p["type"], edge_id=edge_id, camera_id=p["camera"]["id"],
                zone=p["zone"]["name"], grid_cell=self._grid_cell(p),
                position_x=float(pos[0]) if pos else None, position_y=float(pos[1]) if pos else None,
                state="closed" if kind == "closed" else "open", started_at=started, last_seen_at=last_seen,
                ended_at=ended, last_seq=seq, payload_json=stored, created_at=now, silenced=False,
            )
            batch.add(session, Incident, incident_id, inc)
            batch.incidents[incident_id] = inc
            self._attach_case(session, inc, p, now, result, batch)
        elif seq <= inc.last_seq:
            result.outcome = "stale"
        elif inc.state == "closed" and kind != "closed":
            result.outcome = "after_close"  # recorded, does not reopen
        else:
            inc.last_seq = seq
            inc.last_seen_at = max(inc.last_seen_at, last_seen)
            inc.payload_json = stored
            if kind == "closed":
                inc.state = "closed"
                inc.ended_at = ended or last_seen
            result.case_id = inc.case_id
            if inc.silenced:
                result.outcome = "silenced"
        if snapshot is not None and inc.case_id is not None and result.outcome == "applied":
            self._add_snapshot(session, inc.case_id, snapshot, incident_id, event_id, now, batch)
        if inc.case_id is not None and result.outcome == "applied":
            for kind, taken_at, image in checked.evidence:  # dated when taken (the arrival photo is older)
                self._add_snapshot(session, inc.case_id, image, incident_id, event_id, taken_at, batch, kind=kind)
        batch.events.add(event_id)
        batch.event_rows.append({  # inserted in bulk (Core) at the end of the batch
            "event_id": event_id, "incident_id": incident_id, "seq": seq, "event": kind, "emitted_at": emitted,
            "received_at": now, "outcome": result.outcome,
            "payload_json": None if result.outcome == "applied" else stored,
        })
        result.events.insert(0, ("incident.event", {
            "event_id": event_id, "incident_id": incident_id, "seq": seq, "event": kind, "type": p["type"],
            "camera_id": p["camera"]["id"], "zone": p["zone"]["name"], "outcome": result.outcome,
            "case_id": inc.case_id,
        }))
        return result

    def _grid_cell(self, p: dict[str, Any]) -> str | None:
        return p["zone"].get("grid_cell") or ((p["camera"].get("location") or {}).get("grid_cell"))

    def _snapshot(self, snap: dict[str, Any] | None, what: str = "snapshot") -> tuple[bytes, str, str] | None:
        """Decode and verify one inline JPEG (the snapshot or an evidence item's)."""
        if not snap:
            return None
        try:
            data = base64.b64decode(snap.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise DeadLetterReason("bad_snapshot", f"{what}.data is not valid base64") from None
        if len(data) > self.config.max_snapshot_bytes:
            limit = self.config.max_snapshot_bytes
            raise DeadLetterReason("bad_snapshot", f"{what} is {len(data)} bytes, over max_snapshot_bytes={limit}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != str(snap.get("sha256", "")).lower():
            raise DeadLetterReason("bad_snapshot", f"{what} sha256 mismatch (data hashes to {digest[:16]}…)")
        if snap.get("bytes") is not None and snap["bytes"] != len(data):
            raise DeadLetterReason("bad_snapshot", f"{what}.bytes={snap['bytes']} but data has {len(data)} bytes")
        return data, str(snap.get("content_type") or "image/jpeg"), digest

    def _add_snapshot(
        self, session: Session, case_id: int, snapshot: tuple[bytes, str, str], incident_id: str, event_id: str,
        now: datetime, batch: _Batch, kind: str = "before",
    ) -> None:
        data, content_type, digest = snapshot
        try:
            self.store.put(data, content_type, expected_sha256=digest)
        except EvidenceError as e:
            log.warning("snapshot of %s not stored: %s", event_id, e)
            return
        if (case_id, digest) in batch.evidence:
            return
        batch.evidence.add((case_id, digest))
        exists = None if case_id in batch.new_cases else session.scalar(
            select(CaseEvidence.id).where(CaseEvidence.case_id == case_id, CaseEvidence.sha256 == digest).limit(1)
        )
        if exists is None:
            session.add(CaseEvidence(case_id=case_id, kind=kind, sha256=digest, content_type=content_type,
                                     bytes=len(data), at=now, incident_id=incident_id, event_id=event_id,
                                     actor=SYSTEM_ACTOR))
            case = batch.get(session, Case, case_id)
            if kind == "before" and case is not None and case.snapshot_sha256 is None:
                case.snapshot_sha256 = digest

    def _touch_camera(self, session: Session, edge_id: str, p: dict[str, Any], now: datetime, batch: _Batch) -> None:
        cam = p["camera"]
        loc = cam.get("location") or {}
        info = (edge_id, _cut(cam.get("name"), 256), loc.get("grid_cell"), loc.get("lat"), loc.get("lon"),
                _cut(loc.get("address"), 512))
        if self._camera_cache.get(cam["id"]) == info:
            return
        row = batch.get(session, Camera, cam["id"])
        if row is None:
            row = batch.add(session, Camera, cam["id"], Camera(camera_id=cam["id"]))
        row.edge_id, row.name, row.grid_cell, row.lat, row.lon, row.address = info
        row.updated_at = now
        self._camera_cache[cam["id"]] = info

    def _attach_case(
        self, session: Session, inc: Incident, p: dict[str, Any], now: datetime, res: IngestResult, batch: _Batch
    ) -> None:
        """Silence check, then append to the open case with the same dedup key or open a new one."""
        cat = self.config.category(inc.type)
        if cat is None:
            res.outcome = "no_category"
            return
        silence = next((s for s in batch.silences if silence_matches(
            s, category=inc.type, camera_id=inc.camera_id, zone=inc.zone, grid_cell=inc.grid_cell, at=inc.started_at,
        )), None)
        if silence is not None:
            inc.silenced, inc.silence_id = True, silence.id
            res.outcome = "silenced"
            return
        key = dedup_key(p, cat.dedup_grid)
        latest = batch.latest_case.get(key)  # complete: prefetched after the row locks (see _lock_rows)
        if latest is not None and latest.state in OPEN_STATES:
            latest.incident_count += 1
            latest.updated_at = now
            inc.case_id = latest.id
            session.add(CaseAudit(case_id=latest.id, at=now, actor=SYSTEM_ACTOR, action="incident_appended",
                                  from_state=latest.state, to_state=latest.state,
                                  note=f"repeat incident {inc.incident_id}"))
            res.case_id = latest.id
            res.events.append(("case.updated", {**case_summary(latest), "action": "incident_appended"}))
            return
        recurrence = latest if latest is not None and latest.state in ("closed", "archived") else None
        camera, zone = p["camera"], p["zone"]
        loc = camera.get("location") or {}
        subject = p.get("subject") or {}
        pos = subject.get("position") if isinstance(subject.get("position"), list) else None
        r = route(self.config, category=inc.type, grid_cell=inc.grid_cell, zone=inc.zone, camera_id=inc.camera_id)
        case = Case(
            id=self._next_case_id(session, batch), category=inc.type, state="reported", dedup_key=key,
            camera_id=inc.camera_id, edge_id=inc.edge_id,
            zone=inc.zone, grid_cell=inc.grid_cell, lat=loc.get("lat"), lon=loc.get("lon"),
            address=_cut(zone.get("location") or loc.get("address"), 512),
            position_x=float(pos[0]) if pos else None, position_y=float(pos[1]) if pos else None,
            department=r.department, squad=r.squad, reported_at=now, due_at=self.sla.due_at(inc.type, now),
            previous_case_id=recurrence.id if recurrence else None,
            recurrence_count=(recurrence.recurrence_count + 1) if recurrence else 0,
            rework_count=0, incident_count=1,
            title=_cut(f"{cat.name} — {zone['name']} ({camera.get('name') or camera['id']})", 256),
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
        session.add(CaseAudit(case_id=case.id, at=now, actor=SYSTEM_ACTOR, action="report", from_state=None,
                              to_state="reported", note=note))
        if cat.auto_file or cat.auto_dispatch:
            apply_action(session, case, "file", SYSTEM_ACTOR, now, self.sla, note="auto-filed (category rule)")
        if cat.auto_dispatch:
            apply_action(session, case, "dispatch", SYSTEM_ACTOR, now, self.sla, note="auto-dispatched (category rule)")
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
        row.updated_at = now
        return IngestResult("crowd", events=[("crowd.figure", {"edge_id": edge_id, "camera_id": cid, "zone": zone,
                                                               "at": at.isoformat(), "count": row.count,
                                                               "density": row.density, "level": row.level})])
