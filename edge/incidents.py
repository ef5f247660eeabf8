"""Incident lifecycle and the versioned event payload (docs/incident-format.md, edge/schemas/incident.v1.json).

One ``Incident`` per (camera, zone, type, subject) with a random UUID that stays the same for its whole
life; every event it emits (``opened`` → ``updated``… → ``closed``) gets the next ``seq`` and its own
``event_id`` (the consumer's idempotency key). An ``IncidentEvent`` is an immutable snapshot of the
incident at emission time, so building the JSON later (on the evidence thread, after JPEG rendering)
gives exactly what was true when the rule fired.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge.config import CameraConfig, ZoneConfig

SCHEMA_ID = "gridwatch.incident/1"
RULE_FOR_ZONE = {"no_parking": "illegal_parking", "no_vending": "street_vending", "crowd": "crowd_density"}


def rfc3339(ts: float) -> str:
    """Epoch seconds → '2026-11-22T03:42:59.123Z' (UTC, millisecond precision)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EngineContext:
    """What every payload of one camera carries besides the incident itself."""

    edge_id: str
    camera: dict[str, Any]
    model: dict[str, str]

    @classmethod
    def build(cls, camera: CameraConfig, edge_id: str, model_name: str, model_version: str) -> EngineContext:
        loc = camera.location
        cam = {
            "id": camera.id,
            "name": camera.display_name,
            "location": {"lat": loc.lat, "lon": loc.lon, "address": loc.address, "grid_cell": loc.grid_cell},
        }
        return cls(edge_id=edge_id, camera=cam, model={"name": str(model_name), "version": str(model_version)})


@dataclass(frozen=True, slots=True)
class SubjectPart:
    """One object of a vending stall: a person staying at it (``role`` "person") or one of its goods or
    equipment (``role`` "goods"), with its box of the moment the event was made."""

    cls: str
    role: str  # person | goods
    box_px: tuple[float, float, float, float]
    confidence: float
    track_id: int = -1


MAX_PARTS = 32  # parts listed in a payload (goods first): a stall with more is drawn and listed in part


@dataclass(slots=True)
class Subject:
    """The object (or stall cluster) an incident is about, in pixels; normalized when the payload is built."""

    cls: str
    track_ids: list[int]
    confidence: float
    box_px: tuple[float, float, float, float]
    position_px: tuple[float, float]
    members: int = 1
    arrived_at: float | None = None  # parking: first seen at its place (epoch s)
    evidence: str | None = None  # parking: "detections" or "appearance"
    appearance: float | None = None  # parking: last patch similarity to the reference
    parts: tuple[SubjectPart, ...] = ()  # vending: the stall's goods and the persons at it


@dataclass(frozen=True, slots=True)
class EvidenceFrame:
    """An extra photograph for an incident: ``kind`` "arrival" (when the vehicle was first seen staying)
    with the frame of that moment and the box there. Rendered to JPEG on the evidence thread."""

    kind: str
    at: float
    image: Any  # BGR numpy array; never mutated
    box_px: tuple[float, float, float, float]


@dataclass(slots=True)
class Incident:
    type: str
    zone: ZoneConfig
    started_at: float
    last_seen_at: float
    incident_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    seq: int = 0
    subject: Subject | None = None
    crowd: dict[str, Any] | None = None
    closed: bool = False
    last_event_at: float = 0.0
    evidence: tuple[EvidenceFrame, ...] = ()  # extra photographs, sent with the opening event

    def dwell_s(self) -> float:
        return max(0.0, self.last_seen_at - self.started_at)


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """One lifecycle event, ready to become a payload. ``needs_snapshot``: render evidence for it."""

    event_id: str
    incident_id: str
    seq: int
    event: str  # opened | updated | closed
    type: str
    emitted_at: float
    started_at: float
    last_seen_at: float
    ended_at: float | None
    dwell_s: float
    context: EngineContext
    zone: ZoneConfig
    zone_grid_cell: str | None
    subject: Subject | None
    crowd: dict[str, Any] | None
    frame_size: tuple[int, int]
    close_reason: str | None = None
    needs_snapshot: bool = False
    evidence: tuple[EvidenceFrame, ...] = ()

    @property
    def zone_name(self) -> str:
        return self.zone.name

    @property
    def camera_id(self) -> str:
        return self.context.camera["id"]

    def zone_points_px(self) -> np.ndarray:
        w, h = self.frame_size
        return np.round(np.asarray(self.zone.points, dtype=np.float64) * np.array([w, h])).astype(np.int32)

    def payload(
        self, snapshot: bytes | None = None, evidence: list[tuple[str, float, bytes]] | None = None
    ) -> dict[str, Any]:
        """The JSON-ready dict of schema gridwatch.incident/1 (snapshot JPEG inlined as base64).

        ``evidence``: extra JPEGs as (kind, time, bytes), e.g. the arrival photograph and a close-up.
        """
        w, h = self.frame_size
        out: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "event_id": self.event_id,
            "incident_id": self.incident_id,
            "seq": self.seq,
            "event": self.event,
            "type": self.type,
            "emitted_at": rfc3339(self.emitted_at),
            "started_at": rfc3339(self.started_at),
            "last_seen_at": rfc3339(self.last_seen_at),
            "ended_at": rfc3339(self.ended_at) if self.ended_at is not None else None,
            "dwell_s": round(float(self.dwell_s), 2),
            "edge_id": self.context.edge_id,
            "camera": _copy_camera(self.context.camera),
            "zone": {
                "name": self.zone.name,
                "type": str(self.zone.type),
                "grid_cell": self.zone_grid_cell,
                "location": self.zone.location,
            },
            "subject": _subject_dict(self.subject, w, h) if self.subject else None,
            "crowd": dict(self.crowd) if self.crowd is not None else None,
            "model": dict(self.context.model),
            "frame": {"width": int(w), "height": int(h)},
            "snapshot": _snapshot_dict(snapshot) if snapshot else None,
        }
        if self.close_reason is not None:
            out["close_reason"] = self.close_reason
        if evidence:
            out["evidence"] = [
                {"kind": kind, "at": rfc3339(at), "snapshot": _snapshot_dict(jpeg)} for kind, at, jpeg in evidence
            ]
        return out


def _copy_camera(cam: dict[str, Any]) -> dict[str, Any]:
    return {**cam, "location": dict(cam["location"])}


def _subject_dict(s: Subject, w: int, h: int) -> dict[str, Any]:
    def nx(v: float) -> float:
        return round(min(max(float(v) / w, 0.0), 1.0), 4)

    def ny(v: float) -> float:
        return round(min(max(float(v) / h, 0.0), 1.0), 4)

    x1, y1, x2, y2 = s.box_px
    px, py = s.position_px
    extra: dict[str, Any] = {}
    if s.arrived_at is not None:
        extra["arrived_at"] = rfc3339(s.arrived_at)
    if s.evidence is not None:
        extra["evidence"] = s.evidence
    if s.appearance is not None:
        extra["appearance"] = round(min(max(float(s.appearance), 0.0), 1.0), 3)
    if s.parts:
        extra["parts"] = [_part_dict(p, nx, ny) for p in s.parts[:MAX_PARTS]]
    return {
        "class": s.cls,
        "track_ids": sorted({int(t) for t in s.track_ids if t >= 0}),
        "confidence": round(float(s.confidence), 3),
        "box": [nx(x1), ny(y1), nx(x2), ny(y2)],
        "position": [nx(px), ny(py)],
        "members": int(s.members),
        **extra,
    }


def _part_dict(p: SubjectPart, nx: Any, ny: Any) -> dict[str, Any]:
    x1, y1, x2, y2 = p.box_px
    out = {"class": p.cls, "role": p.role, "box": [nx(x1), ny(y1), nx(x2), ny(y2)],
           "confidence": round(min(max(float(p.confidence), 0.0), 1.0), 3)}
    if p.track_id >= 0:
        out["track_id"] = int(p.track_id)
    return out


def _snapshot_dict(jpeg: bytes) -> dict[str, Any]:
    return {
        "content_type": "image/jpeg",
        "encoding": "base64",
        "sha256": hashlib.sha256(jpeg).hexdigest(),
        "bytes": len(jpeg),
        "data": base64.b64encode(jpeg).decode("ascii"),
    }


class IncidentFactory:
    """Creates incidents and their events for one camera; keeps seq and timestamps consistent."""

    def __init__(self, context: EngineContext, camera_grid_cell: str | None):
        self.context = context
        self.camera_grid_cell = camera_grid_cell

    def open(
        self,
        type_: str,
        zone: ZoneConfig,
        started_at: float,
        now: float,
        frame_size: tuple[int, int],
        *,
        subject: Subject | None = None,
        crowd: dict[str, Any] | None = None,
        evidence: tuple[EvidenceFrame, ...] = (),
    ) -> tuple[Incident, IncidentEvent]:
        inc = Incident(type=type_, zone=zone, started_at=started_at, last_seen_at=now, subject=subject, crowd=crowd,
                       evidence=evidence)
        return inc, self.event(inc, "opened", now, frame_size, needs_snapshot=True)

    def event(
        self,
        inc: Incident,
        kind: str,
        now: float,
        frame_size: tuple[int, int],
        *,
        close_reason: str | None = None,
        needs_snapshot: bool = False,
    ) -> IncidentEvent:
        if inc.closed:
            raise RuntimeError(f"incident {inc.incident_id} is closed; no more events")
        inc.seq += 1
        inc.last_event_at = now
        ended_at = None
        if kind == "closed":
            inc.closed = True
            ended_at = max(inc.last_seen_at, inc.started_at)
        subject = None
        if inc.subject is not None:
            s = inc.subject
            subject = replace(s, track_ids=list(s.track_ids))
        return IncidentEvent(
            event_id=str(uuid.uuid4()),
            incident_id=inc.incident_id,
            seq=inc.seq,
            event=kind,
            type=inc.type,
            emitted_at=now,
            started_at=inc.started_at,
            last_seen_at=inc.last_seen_at,
            ended_at=ended_at,
            dwell_s=inc.dwell_s(),
            context=self.context,
            zone=inc.zone,
            zone_grid_cell=inc.zone.grid_cell or self.camera_grid_cell,
            subject=subject,
            crowd=dict(inc.crowd) if inc.crowd is not None else None,
            frame_size=frame_size,
            close_reason=close_reason if kind == "closed" else None,
            needs_snapshot=needs_snapshot,
            evidence=inc.evidence if needs_snapshot else (),
        )
