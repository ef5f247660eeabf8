"""Status, heartbeat and crowd messages are checked against their schemas (central/schemas/*.v1.json) before they
touch the database, on SQLite and PostgreSQL: an incident payload on …/heartbeat does not set the edge online, bad
messages are dead letters with a specific reason (never a crash, never a failed batch), and the crowd figure's extra
fields (estimate, raw_count, count_method, count_low, count_high, stationary, …) are accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from central.db import Camera, CrowdFigure, DeadLetter, Edge
from central.edge_messages import LEAVES, check, check_values, fast_validator, validator
from tests.central_support import encode, incident_payload, make_central, topic

EDGE = "edge-test-01"
STATUS = {"edge_id": EDGE, "state": "online", "at": "2026-11-23T02:00:00Z", "version": "0.1.0"}
HEARTBEAT = {
    "edge_id": EDGE,
    "at": "2026-11-23T02:00:30Z",
    "uptime_s": 30.5,
    "cameras": [
        {
            "camera_id": "cam-1",
            "state": "running",
            "input_fps": 9.5,
            "last_frame_at": 1.7e9,
            "reconnects": 0,
            "last_error": None,
            "frames_decoded": 10,
            "frames_sampled": 5,
            "frames_dropped": 0,
            "url": "rtsp://***@10.0.0.1/1",
            "decode": "all",
            "name": "Gate",
            "grid_cell": "440305-001-07",
            "frames_analyzed": 5,
            "incidents_opened": 0,
            "zones": ["plaza"],
        }
    ],
    "counters": {"frames": 10, "uptime_s": 30.5},
    "outbox": {"pending": 0, "dropped": 0, "oldest_age_s": None},
}
# CrowdFigure.to_dict() as published (edge/rules/crowd.py), with the colleague's optional count fields.
CROWD = {
    "edge_id": EDGE,
    "camera_id": "cam-1",
    "zone": "plaza",
    "at": "2026-11-23T02:00:10Z",
    "count": 12,
    "estimate": 12.4,
    "count_low": 10,
    "count_high": 15,
    "count_method": "tracks+foreground",
    "raw_count": 11,
    "stationary": 3,
    "density": 0.03,
    "level": "normal",
    "forecast": {"predicted_density": 0.05, "horizon_s": 120.0, "predicted_level": "normal", "early_warning": False},
}


def _send(central: Any, leaf: str, payload: Any, edge: str = EDGE) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return central.ingest.handle(topic(edge, leaf), raw)


def test_good_messages_are_applied_with_extra_crowd_fields(central: Any) -> None:
    assert _send(central, "status", STATUS).outcome == "status"
    assert _send(central, "heartbeat", HEARTBEAT).outcome == "heartbeat"
    extra = {**CROWD, "at": "2026-11-23T02:00:20Z", "count_p90": 17.5, "new_figure": 3, "count_method": "future"}
    for msg in (CROWD, extra, {k: v for k, v in CROWD.items() if k not in ("at", "estimate", "forecast")}):
        r = _send(central, "crowd", msg)
        assert r.outcome == "crowd", r
    with central.session_factory() as s:
        assert s.get(Edge, EDGE).state == "online"
        assert s.get(Camera, "cam-1").health_json["input_fps"] == 9.5
        assert s.get(CrowdFigure, ("cam-1", "plaza")).count == 12
        assert s.scalars(select(DeadLetter)).all() == []


def test_incident_payload_on_heartbeat_does_not_set_the_edge_online(central: Any) -> None:
    assert _send(central, "status", {**STATUS, "state": "offline"}).outcome == "status"
    incident = incident_payload(edge_id=EDGE)
    for leaf in ("heartbeat", "status", "crowd"):
        r = central.ingest.handle(topic(EDGE, leaf), encode(incident))
        assert (r.outcome, r.reason) == ("dead_letter", "schema"), (leaf, r)
        assert r.detail.startswith(f"{leaf}: "), r.detail
    with central.session_factory() as s:
        edge = s.get(Edge, EDGE)
        assert edge.state == "offline" and edge.heartbeat_json is None
        assert {d.reason for d in s.scalars(select(DeadLetter))} == {"schema"}


BAD: list[tuple[str, str, Any, str]] = [
    # (name, leaf, payload, dead-letter reason)
    ("status without at", "status", {"edge_id": EDGE, "state": "online"}, "schema"),
    ("status state", "status", {**STATUS, "state": "sleepy"}, "schema"),
    ("status other edge", "status", {**STATUS, "edge_id": "edge-other"}, "topic_mismatch"),
    ("status version NUL", "status", {**STATUS, "version": "1\x00"}, "invalid_text"),
    ("heartbeat empty", "heartbeat", {}, "schema"),
    ("heartbeat cameras not a list", "heartbeat", {**HEARTBEAT, "cameras": {"cam-1": {}}}, "schema"),
    ("heartbeat camera without id", "heartbeat", {**HEARTBEAT, "cameras": [{"state": "ok"}]}, "schema"),
    ("heartbeat camera id bidi", "heartbeat", {**HEARTBEAT, "cameras": [{"camera_id": "cam\u202e1"}]}, "schema"),
    (
        "heartbeat NaN",
        "heartbeat",
        b'{"edge_id": "edge-test-01", "at": "2026-11-23T02:00:30Z", "cameras": [], "uptime_s": NaN}',
        "invalid_number",
    ),
    (
        "heartbeat Infinity",
        "heartbeat",
        b'{"edge_id": "edge-test-01", "at": "2026-11-23T02:00:30Z", "cameras": [], "counters": {"x": 1e400}}',
        "invalid_number",
    ),
    (
        "heartbeat lone surrogate",
        "heartbeat",
        b'{"edge_id": "edge-test-01", "at": "2026-11-23T02:00:30Z", '
        b'"cameras": [{"camera_id": "c", "last_error": "\\ud800"}]}',
        "invalid_text",
    ),
    ("heartbeat deep", "heartbeat", {**HEARTBEAT, "extra": json.loads("[" * 40 + "]" * 40)}, "too_deep"),
    ("heartbeat other edge", "heartbeat", {**HEARTBEAT, "edge_id": "edge-other"}, "topic_mismatch"),
    ("crowd missing count", "crowd", {k: v for k, v in CROWD.items() if k != "count"}, "schema"),
    ("crowd missing level", "crowd", {k: v for k, v in CROWD.items() if k != "level"}, "schema"),
    ("crowd negative count", "crowd", {**CROWD, "count": -1}, "schema"),
    ("crowd count 2^31", "crowd", {**CROWD, "count": 2**31}, "schema"),
    ("crowd huge int", "crowd", {**CROWD, "count_p90": 10**20}, "invalid_number"),
    ("crowd count text", "crowd", {**CROWD, "count": "12"}, "schema"),
    ("crowd zone NUL", "crowd", {**CROWD, "zone": "pla\x00za"}, "invalid_text"),
    ("crowd zone empty", "crowd", {**CROWD, "zone": ""}, "schema"),
    ("crowd level", "crowd", {**CROWD, "level": "apocalyptic"}, "schema"),
    ("crowd bad at", "crowd", {**CROWD, "at": "yesterday"}, "schema"),
    (
        "crowd extra NaN",
        "crowd",
        b'{"edge_id": "edge-test-01", "camera_id": "cam-1", "zone": "plaza", "count": 1, '
        b'"density": 0.1, "level": "normal", "count_p90": NaN}',
        "invalid_number",
    ),
    ("crowd other edge", "crowd", {**CROWD, "edge_id": "edge-other"}, "topic_mismatch"),
]


def test_bad_messages_are_dead_letters_with_a_reason_in_one_batch(central: Any) -> None:
    """All of them in one batch with good ones: each bad one gets its reason, the good ones are applied, and the
    batch is not redone message by message (no processing_error)."""
    messages = []
    for _, leaf, payload, _ in BAD:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        messages.append((topic(EDGE, leaf), raw))
    messages.append((topic(EDGE, "heartbeat"), json.dumps(HEARTBEAT).encode()))
    messages.append((topic(EDGE, "crowd"), json.dumps(CROWD).encode()))
    results = central.ingest.handle_batch(messages)
    for (name, _, _, reason), r in zip(BAD, results, strict=False):
        assert (r.outcome, r.reason) == ("dead_letter", reason), (name, r.detail)
    assert [r.outcome for r in results[-2:]] == ["heartbeat", "crowd"]
    with central.session_factory() as s:
        reasons = [d.reason for d in s.scalars(select(DeadLetter).order_by(DeadLetter.id))]
        assert reasons == [b[3] for b in BAD]
        assert s.get(CrowdFigure, ("cam-1", "plaza")).count == 12


def test_unknown_edge_is_refused_when_edges_are_listed(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, {"mqtt": {"edges": [EDGE]}})
    try:
        r = c.ingest.handle(topic("city-hall-99", "incidents"), encode(incident_payload(edge_id="city-hall-99")))
        assert (r.outcome, r.reason) == ("dead_letter", "unknown_edge")
        r = c.ingest.handle(topic("city-hall-99", "status"), json.dumps({**STATUS, "edge_id": "city-hall-99"}).encode())
        assert (r.outcome, r.reason) == ("dead_letter", "unknown_edge")
        assert c.send(incident_payload(edge_id=EDGE)).outcome == "applied"
    finally:
        c.session_factory.kw["bind"].dispose()


def test_check_values_is_iterative_and_bounded() -> None:
    deep: Any = []
    for _ in range(100_000):  # deeper than Python's recursion limit: must not raise RecursionError
        deep = [deep]
    assert check_values(deep)[0] == "too_deep"
    assert check_values(list(range(30_000)))[0] == "too_large"
    assert check_values({"a\x00": 1})[0] == "invalid_text"
    for leaf in LEAVES:  # both validators load and compile (no silent fallback, no unresolvable $ref)
        assert fast_validator(leaf) is not None and validator(leaf) is not None
    bad_cam = check("heartbeat", EDGE, {**HEARTBEAT, "cameras": [{"camera_id": "a b"}]})
    assert bad_cam is not None and bad_cam[0] == "schema" and "cameras/0/camera_id" in bad_cam[1]
    assert check("crowd", EDGE, CROWD) is None
    assert check("heartbeat", EDGE, HEARTBEAT) is None
    assert check("status", EDGE, STATUS) is None


def test_the_edges_own_crowd_figure_passes() -> None:
    """The contract with edge/rules/crowd.py: what publish_crowd sends (CrowdFigure.to_dict + edge_id/at) is valid."""
    from edge.rules.crowd import CrowdFigure

    fig = CrowdFigure(
        edge_id=EDGE,
        camera_id="cam-plaza-01",
        zone="plaza-floor",
        timestamp=1_795_399_200.5,
        count=34,
        raw_count=31,
        density=0.085,
        level="high",
        forecast={"predicted_density": 0.1, "horizon_s": 120.0, "predicted_level": "high", "early_warning": False},
    )
    message = {"edge_id": EDGE, "at": "2026-11-23T02:00:00.000Z", **fig.to_dict(), "zone": "plaza-floor"}
    assert check("crowd", EDGE, json.loads(json.dumps(message))) is None
