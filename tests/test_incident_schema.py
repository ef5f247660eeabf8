"""The incident JSON Schema: valid Draft 2020-12, accepts every payload the engine emits, rejects broken ones."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.incidents import SCHEMA_ID
from edge.snapshots import encode_jpeg
from tests.test_rules_crowd import engine as crowd_engine
from tests.test_rules_crowd import persons
from tests.test_rules_parking import PARKED, T0, dets
from tests.test_rules_parking import engine as parking_engine
from tests.test_rules_vending import UMBRELLA, VENDOR
from tests.test_rules_vending import engine as vending_engine

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(resources.files("edge").joinpath("schemas/incident.v1.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
JPEG = encode_jpeg(np.full((48, 64, 3), 90, np.uint8))


def emitted_payloads() -> list[dict]:
    """Every kind of event the engine produces, from constructed runs."""
    out = []
    eng = parking_engine(update_every_s=5)
    for i in range(0, 60):
        d = dets((*PARKED, 1)) if i < 36 else dets()
        events = eng.update(d, T0 + i * 0.5, (640, 480)).events
        out += [ev.payload(JPEG if ev.needs_snapshot else None) for ev in events]
    eng = vending_engine()
    for i in range(0, 30):
        events = eng.update(dets((*VENDOR, 1), (*UMBRELLA, 2)), T0 + i * 0.5, (640, 480)).events
        out += [ev.payload(JPEG) for ev in events]
    out += [ev.payload(None) for ev in eng.flush(T0 + 20)]
    eng = crowd_engine(forecast_horizon_s=30, forecast_window_s=20)
    for i, n in enumerate(list(range(10, 90)) + [0] * 10):
        out += [ev.payload(None) for ev in eng.update(persons(n), T0 + i, (640, 480)).events]
    return out


@pytest.fixture(scope="module")
def payloads() -> list[dict]:
    return emitted_payloads()


def test_schema_is_valid_draft_2020_12_and_matches_the_version_id():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema"]["const"] == SCHEMA_ID
    assert json.loads((REPO / "edge/schemas/incident.v1.json").read_text()) == SCHEMA  # packaged copy = repo copy


def test_every_emitted_payload_validates(payloads):
    kinds = {(p["type"], p["event"]) for p in payloads}
    assert kinds == {(t, e) for t in ("illegal_parking", "street_vending", "crowd_density")
                     for e in ("opened", "updated", "closed")} - {("street_vending", "updated")}
    for p in payloads:
        VALIDATOR.validate(p)
    with_snapshot = [p for p in payloads if p["snapshot"]]
    assert with_snapshot and all(p["event"] == "opened" for p in with_snapshot)
    snap = with_snapshot[0]["snapshot"]
    assert hashlib.sha256(base64.b64decode(snap["data"])).hexdigest() == snap["sha256"]
    assert any(p["crowd"] and p["crowd"]["forecast"] and p["crowd"]["forecast"]["early_warning"] for p in payloads)


def test_documented_examples_validate():
    text = (REPO / "docs/incident-format.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    incidents = [b for b in blocks if b.get("schema") == SCHEMA_ID]
    assert len(incidents) == 2
    for b in incidents:
        VALIDATOR.validate(b)
    snap = incidents[0]["snapshot"]
    assert hashlib.sha256(base64.b64decode(snap["data"])).hexdigest() == snap["sha256"]


def _set(p: dict, path: str, value: object) -> dict:
    p = copy.deepcopy(p)
    node = p
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    if value is _DELETE:
        del node[keys[-1]]
    elif keys[-1].isdigit():
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return p


_DELETE = object()
BROKEN = [
    ("unknown version", "schema", "gridwatch.incident/2"),
    ("missing event_id", "event_id", _DELETE),
    ("event_id not a uuid", "event_id", "evt-1"),
    ("seq zero", "seq", 0),
    ("seq as text", "seq", "1"),
    ("unknown event", "event", "reopened"),
    ("unknown type", "type", "littering"),
    ("timestamp without zone", "emitted_at", "2025-11-22 03:00:00"),
    ("ended_at on an open incident", "ended_at", "2025-11-22T03:00:00Z"),
    ("negative dwell", "dwell_s", -1),
    ("extra field", "colour", "red"),
    ("camera without id", "camera.id", _DELETE),
    ("zone type mismatch", "zone.type", "crowd"),
    ("box outside 0..1", "subject.box.2", 1.5),
    ("box with 3 numbers", "subject.box", [0.1, 0.2, 0.3]),
    ("negative track id", "subject.track_ids", [-1]),
    ("confidence above 1", "subject.confidence", 1.2),
    ("crowd block on a parking incident", "crowd",
     {"count": 1, "density": 0.1, "level": "normal", "previous_level": None, "forecast": None}),
    ("subject missing", "subject", None),
    ("frame of zero width", "frame.width", 0),
    ("snapshot sha not hex", "snapshot.sha256", "xyz"),
    ("snapshot png", "snapshot.content_type", "image/png"),
    ("close_reason on an opened event", "close_reason", "left"),
]


@pytest.mark.parametrize("path,value", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_payloads_are_rejected(payloads, path, value):
    opened = next(p for p in payloads if p["type"] == "illegal_parking" and p["event"] == "opened")
    VALIDATOR.validate(opened)
    assert not VALIDATOR.is_valid(_set(opened, path, value))


def test_closed_events_need_ended_at_and_crowd_events_need_crowd(payloads):
    closed = next(p for p in payloads if p["event"] == "closed" and p["type"] == "illegal_parking")
    assert closed["close_reason"] == "left"
    assert not VALIDATOR.is_valid(_set(closed, "ended_at", None))
    assert not VALIDATOR.is_valid(_set(closed, "close_reason", "bored"))
    crowd = next(p for p in payloads if p["type"] == "crowd_density")
    assert not VALIDATOR.is_valid(_set(crowd, "crowd", None))
    assert not VALIDATOR.is_valid(_set(crowd, "crowd.level", "extreme"))
    assert not VALIDATOR.is_valid(_set(crowd, "crowd.forecast", {"predicted_density": 1}))
