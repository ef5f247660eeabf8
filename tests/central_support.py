"""Helpers shared by the central tests: incident payload builder and a wired-up central (no broker needed)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from central.clock import FixedClock
from central.config import CentralConfig, parse_central_config
from central.db import make_engine, make_session_factory
from central.event_outbox import read_after
from central.events import DURABLE_KINDS, EventBus
from central.ingest import IngestService
from central.store import FileEvidenceStore
from central.workflow import CaseService

# Monday 2026-11-23 10:00 Asia/Shanghai = 02:00 UTC: inside the morning work period.
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

# A tiny but real JPEG (1x1 px) — content matters only for hashing.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a"
    "1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f"
    "0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d0102"
    "0300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738"
    "393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3"
    "a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9"
    "faffda0008010100003f00fbd3ffd9"
)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def snapshot_block(data: bytes = TINY_JPEG) -> dict[str, Any]:
    return {
        "content_type": "image/jpeg",
        "encoding": "base64",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "data": base64.b64encode(data).decode(),
    }


def incident_payload(
    *,
    event: str = "opened",
    seq: int = 1,
    incident_id: str | None = None,
    event_id: str | None = None,
    type: str = "illegal_parking",  # noqa: A002 - mirrors the payload field
    edge_id: str = "edge-test-01",
    camera_id: str = "cam-1",
    zone: str = "north-curb",
    grid_cell: str | None = "440305-001-07",
    position: tuple[float, float] | None = (0.42, 0.61),
    at: datetime = T0,
    snapshot: bool = False,
) -> dict[str, Any]:
    """A payload per the incident v1 contract (docs: /tmp/contract_payload.md → edge/schemas/incident.v1.json)."""
    subject = None
    crowd = None
    if type == "crowd_density":
        crowd = {"count": 34, "density": 0.085, "level": "high", "previous_level": "elevated", "forecast": None}
    else:
        subject = {
            "class": "car" if type == "illegal_parking" else "person",
            "track_ids": [3],
            "confidence": 0.81,
            "box": [0.4, 0.5, 0.45, 0.7],
            "position": list(position) if position else None,
            "members": 1 if type == "illegal_parking" else 3,
        }
        if subject["position"] is None:
            del subject["position"]
    return {
        "schema": "gridwatch.incident/1",
        "event_id": event_id or str(uuid.uuid4()),
        "incident_id": incident_id or str(uuid.uuid4()),
        "seq": seq,
        "event": event,
        "type": type,
        "emitted_at": iso(at),
        "started_at": iso(at - timedelta(seconds=60)),
        "last_seen_at": iso(at),
        "ended_at": iso(at) if event == "closed" else None,
        "dwell_s": 60.0,
        "edge_id": edge_id,
        "camera": {
            "id": camera_id,
            "name": f"Camera {camera_id}",
            "location": {"lat": 22.54, "lon": 114.05, "address": "Shennan Rd 1", "grid_cell": grid_cell},
        },
        "zone": {
            "name": zone,
            "type": {"illegal_parking": "no_parking", "street_vending": "no_vending"}.get(type, "crowd"),
            "grid_cell": grid_cell,
            "location": None,
        },
        "subject": subject,
        "crowd": crowd,
        "model": {"name": "ssd_mobilenet_v2_coco", "version": "2018_03_29"},
        "frame": {"width": 640, "height": 480},
        "snapshot": snapshot_block() if snapshot else None,
    }


def topic(edge_id: str = "edge-test-01", leaf: str = "incidents") -> str:
    return f"gridwatch/v1/{edge_id}/{leaf}"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@dataclass
class Central:
    config: CentralConfig
    session_factory: sessionmaker[Session]
    clock: FixedClock
    store: FileEvidenceStore
    bus: EventBus
    ingest: IngestService
    _events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _outbox_seen: int = 0

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Live events as the bus published them, with the case events committed to the outbox since the last look
        appended (in id order) when this is read."""
        try:
            with self.session_factory() as s:
                rows = read_after(s, self._outbox_seen, 10_000)
        except (OperationalError, ProgrammingError):  # a test that never migrated its database
            rows = []
        for r in rows:
            self._events.append((r.kind, r.data()))
            self._outbox_seen = r.id
        return self._events

    def send(self, payload: dict[str, Any], edge_id: str | None = None):  # type: ignore[no-untyped-def]
        return self.ingest.handle(topic(edge_id or payload.get("edge_id", "edge-test-01")), encode(payload))

    def cases(self) -> CaseService:
        return CaseService(self.session_factory(), self.config, self.clock, self.store, self.bus)

    def app(self, **options: Any) -> Any:
        """The FastAPI app on this central's database, bus, clock and store; ``options`` go to create_app."""
        from central.app import create_app

        return create_app(
            self.config,
            session_factory=self.session_factory,
            bus=self.bus,
            clock=self.clock,
            store=self.store,
            **options,
        )


def make_central(db_url: str, tmp_path: Path, config: dict[str, Any] | None = None, at: datetime = T0) -> Central:
    cfg = parse_central_config({"database_url": db_url, "evidence_dir": str(tmp_path / "evidence"), **(config or {})})
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    clock = FixedClock(at)
    store = FileEvidenceStore(cfg.evidence_dir, max_bytes=cfg.max_upload_bytes)
    bus = EventBus()
    c = Central(cfg, sf, clock, store, bus, IngestService(sf, cfg, clock=clock, store=store, bus=bus))
    bus.subscribe(lambda kind, data: None if kind in DURABLE_KINDS else c._events.append((kind, data)))
    return c
