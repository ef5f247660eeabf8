"""Malformed incident payloads of every kind issue 12 found (and a few more), each with the dead-letter reason
ingest must give it. Used by tests/test_central_ingest_flood.py and ``tools/bench_central.py --malformed``.

``hostile(valid)`` → list of (name, reason, raw bytes) built from one valid payload (a dict per the v1 schema).
"""

from __future__ import annotations

import json
from typing import Any


def _raw(p: dict[str, Any]) -> bytes:
    return json.dumps(p).encode()


def _sub(p: dict[str, Any], old: str, new: str) -> bytes:
    raw = json.dumps(p)
    assert old in raw, old
    return raw.replace(old, new, 1).encode()


def hostile(valid: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    p = json.loads(json.dumps(valid))
    pos = json.dumps(p["subject"]["position"]) if p.get("subject") else None
    zone = json.dumps(p["zone"]["name"])
    dwell = '"dwell_s": ' + json.dumps(p["dwell_s"])
    out: list[tuple[str, str, bytes]] = [
        ("NaN in subject.position", "invalid_number", _sub(p, pos, "[NaN, 0.5]") if pos else b""),
        ("Infinity dwell", "invalid_number", _sub(p, dwell, '"dwell_s": Infinity')),
        ("-Infinity dwell", "invalid_number", _sub(p, dwell, '"dwell_s": -Infinity')),
        ("1e400 dwell", "invalid_number", _sub(p, dwell, '"dwell_s": 1e400')),
        ("5000-digit integer seq", "invalid_number", _sub(p, f'"seq": {p["seq"]}', '"seq": ' + "9" * 5000)),
        ("5000-digit integer frame", "invalid_number", _sub(p, '"width": ', '"width": ' + "1" * 5000 + ", \"w\": ")),
        ("seq 2^31", "schema", _raw({**p, "seq": 2**31})),
        ("seq 2^53", "schema", _raw({**p, "seq": 2**53})),
        ("track id 2^31", "schema", _raw({**p, "subject": {**p["subject"], "track_ids": [2**31]}})),
        ("lone surrogate in zone", "invalid_text", _sub(p, zone, '"z\\ud800"')),
        ("lone surrogate in camera name", "invalid_text", _raw({**p, "camera": {**p["camera"], "name": "x"}}).replace(
            b'"name": "x"', b'"name": "\\udfff"')),
        ("NUL in zone (escaped)", "invalid_text", _sub(p, zone, '"z\\u0000"')),
        ("NUL in a key", "invalid_text", _sub(p, '"dwell_s"', '"dw\\u0000ell_s": 1, "dwell_s"')),
        ("raw NUL byte", "malformed_json", _sub(p, zone, '"z\x00"')),
        ("U+202E in zone", "invalid_text", _raw({**p, "zone": {**p["zone"], "name": "lane\u202egnikrap"}})),
        ("U+FFFF in zone", "invalid_text", _raw({**p, "zone": {**p["zone"], "name": "lane\uffff"}})),
        ("control char in zone", "invalid_text", _raw({**p, "zone": {**p["zone"], "name": "lane\u0007"}})),
        ("U+202E in camera name", "invalid_text", _raw({**p, "camera": {**p["camera"], "name": "cam\u202e"}})),
        ("U+202E in camera id", "invalid_text", _raw({**p, "camera": {**p["camera"], "id": "cam\u202e1"}})),
        ("NUL in camera id", "invalid_text", _sub(p, json.dumps(p["camera"]["id"]), '"cam\\u00001"')),
        ("100,000-deep nesting", "too_deep", _sub(p, '"dwell_s"', '"x": ' + "[" * 100_000 + "]" * 100_000 +
                                                  ', "dwell_s"')),
        ("30,000 values", "too_large", _raw({**p, "subject": {**p["subject"], "track_ids": list(range(30_000))}})),
        ("timestamp overflow", "schema", _raw({**p, "started_at": "9999-12-31T23:59:59-23:59"})),
        ("timestamp year 0", "schema", _raw({**p, "started_at": "0000-01-01T00:00:00Z"})),
        ("not JSON", "malformed_json", b"{not json"),
        ("not UTF-8", "malformed_json", b"\xff\xfe\x00garbage"),
        ("a JSON list", "malformed_json", b"[1, 2, 3]"),
        ("unknown version", "unknown_version", _raw({**p, "schema": "gridwatch.incident/9"})),
        ("missing event_id", "schema", _raw({k: v for k, v in p.items() if k != "event_id"})),
        ("other edge", "topic_mismatch", _raw({**p, "edge_id": "someone-else"})),
    ]
    return [x for x in out if x[2]]
