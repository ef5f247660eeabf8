"""MQTT message → typed, fully validated message, or the specific reason it is a dead letter. No database.

Everything a message could break later is refused here, before the batch's transaction, so a batch never fails as a
whole and SQLite and PostgreSQL accept and refuse exactly the same messages. In order:

- ``unknown_topic`` / ``unknown_edge``: not ``<prefix>/<edge>/{incidents,status,heartbeat,crowd,occupancy}``; an
  edge not in ``mqtt.edges`` when that is set;
- ``oversized``: payload over ``max_payload_bytes`` (not parsed);
- ``too_deep`` / ``too_large``: a scan of the raw bytes *before* ``json.loads`` recurses: nesting over
  ``MAX_DEPTH``, more than ``MAX_NODES`` values;
- ``malformed_json``: not UTF-8 JSON, not an object;
- ``invalid_number``: ``NaN``/``Infinity``, a float that overflows (``1e400``), an integer beyond ±2^53 — refused by
  the parser's hooks, so a 5,000-digit integer never reaches ``int()``;
- ``invalid_text``: a NUL or a lone surrogate in any string or key (PostgreSQL refuses both); in identifiers and
  labels (zone name, camera id and name, grid cells, addresses) also control and format characters (bidi overrides
  such as U+202E), private-use, unassigned and non-characters (U+FFFF);
- ``unknown_version`` / ``schema``: ``edge/schemas/incident.v1.json`` (the single source: package data, compiled
  once), timestamps, column sizes and integer ranges (``seq`` and track ids ≤ 2^31-1, what both databases store);
- ``topic_mismatch``: payload ``edge_id`` is not the topic's edge;
- ``bad_snapshot``: base64, size, byte count and SHA-256 of the snapshot and of each ``evidence`` photo;
- ``processing_error``: any other exception while parsing or classifying the message (a bug this list missed): the
  message becomes a dead letter on its own, its batch goes on.

An incident becomes an ``IncidentMessage``: every field the ingest needs, typed, with the times parsed, the
category looked up and the dedup key computed once. Status, heartbeat and crowd messages become ``EdgeMessage`` after
``central.edge_messages.check``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema

from central import edge_messages
from central.config import CategoryConfig, CentralConfig

log = logging.getLogger(__name__)

SCHEMA_ID = "gridwatch.incident/1"
LEAVES = frozenset({"incidents", "status", "heartbeat", "crowd", "occupancy"})
POSITION_TYPES = frozenset({"illegal_parking", "street_vending"})
MAX_DEPTH = edge_messages.MAX_DEPTH  # 16: an incident needs 3
MAX_NODES = edge_messages.MAX_NODES  # 20,000 values
MAX_SAFE_INT = 2**53  # beyond this JSON numbers stop being exact (JavaScript, jsonb → float)
INT4_MAX = 2**31 - 1  # INTEGER columns (seq) on PostgreSQL; SQLite would store more, so both refuse more
_MAX_INT_DIGITS = 16  # 2^53 has 16 digits: longer digit strings are refused without calling int()
_MAX_LEN = {"event_id": 64, "incident_id": 64, "type": 48, "edge_id": 128}
# identifiers and labels: other (control, format such as bidi overrides, surrogate, private use, unassigned incl.
# non-characters like U+FFFF) and line/paragraph separators
_BAD_LABEL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")  # \u0000, a surrogate half
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class DeadLetterReason(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled by central.ingest_process: rebuilt from both fields
        return (DeadLetterReason, (self.reason, self.detail))


# --------------------------------------------------------------------------- typed messages


@dataclass(slots=True)
class Image:
    data: bytes
    content_type: str
    sha256: str


@dataclass(slots=True)
class IncidentMessage:
    """One incident event that passed every check that needs no database, with what ingest derives from it."""

    edge_id: str
    event_id: str
    incident_id: str
    seq: int
    event: str  # opened | updated | closed
    type: str
    camera_id: str
    camera_name: str | None
    camera_grid_cell: str | None
    lat: float | None
    lon: float | None
    camera_address: str | None
    zone: str
    zone_grid_cell: str | None
    zone_location: str | None
    position: tuple[float, float] | None
    started: datetime
    last_seen: datetime
    ended: datetime | None
    emitted: datetime
    stored: dict[str, Any] = field(repr=False)  # the payload as stored: image data lives in the evidence store
    snapshot: Image | None = field(default=None, repr=False)
    evidence: list[tuple[str, datetime, Image]] = field(default_factory=list, repr=False)  # (kind, taken at, image)
    category: CategoryConfig | None = None
    dedup_key: str | None = None  # None when the type has no category

    @property
    def grid_cell(self) -> str | None:
        return self.zone_grid_cell or self.camera_grid_cell


@dataclass(slots=True)
class EdgeMessage:
    """A status, heartbeat or crowd message that passed its schema (central/schemas/<leaf>.v1.json)."""

    edge_id: str
    leaf: str
    data: dict[str, Any]


Parsed = IncidentMessage | EdgeMessage | DeadLetterReason


# --------------------------------------------------------------------------- schema (edge/schemas/incident.v1.json)


@cache
def incident_schema() -> dict[str, Any]:
    """The edge's contract, from the installed ``edge`` package (package data: always there)."""
    raw = resources.files("edge").joinpath("schemas/incident.v1.json").read_text(encoding="utf-8")
    return json.loads(raw)


@cache
def incident_validator() -> jsonschema.protocols.Validator:
    """jsonschema on the schema file: writes the message for a payload the fast validator refused."""
    schema = incident_schema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _for_speed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema rewritten for fastjsonschema, accepting exactly the same documents:

    - local ``$ref``s inlined (the schema has no recursion): fastjsonschema names each array item it passes to a
      referenced definition with ``str.format(**locals())`` inside one huge function, ~100 µs per event;
    - ``{"oneOf": [{"type": "null"}, S]}`` → ``{"if": {"type": "null"}, "else": S}`` (S never admits null here): a
      failing oneOf branch raises an exception that carries S's whole definition, on every valid event;
    - ``contentEncoding``/``contentMediaType`` dropped (annotations in draft 2020-12; fastjsonschema decodes the
      base64 to check it, and ``decode_image`` decodes and verifies it anyway).
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items() if k not in _NOT_FOR_SPEED}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = walk(defs[ref[len("#/$defs/"):]])
            out = {**target, **out} if not set(target) & set(out) else {"allOf": [target, out]}
        elif ref is not None:
            out["$ref"] = ref
        alts = out.get("oneOf")
        if isinstance(alts, list) and len(alts) == 2 and alts[0] == {"type": "null"} and len(out) == 1:
            return {"if": {"type": "null"}, "else": alts[1]}
        return out

    return walk(schema)


_NOT_FOR_SPEED = frozenset({"$defs", "$ref", "contentEncoding", "contentMediaType", "description", "title"})


@cache
def fast_incident_validator() -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema: the accept path at thousands of events per second."""
    return fastjsonschema.compile(_for_speed(incident_schema()))


def schema_error(payload: dict[str, Any]) -> str | None:
    """None if the payload satisfies the incident schema, else ``path: message`` (fastjsonschema's own message:
    jsonschema's best_match costs 3-4 ms per refused payload, which a flood of them would turn into a slowdown)."""
    try:
        fast_incident_validator()(payload)
        return None
    except fastjsonschema.JsonSchemaValueException as e:
        where = (e.name or "data").removeprefix("data").lstrip(".").replace(".", "/") or "<root>"
        return f"{where}: {e.message[:300]}"
    except fastjsonschema.JsonSchemaException as e:
        return str(e)[:300]


# --------------------------------------------------------------------------- JSON with guards


class _Refused(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail


def _constant(name: str) -> Any:
    raise _Refused("invalid_number", f"{name} is not a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("invalid_number", f"{text[:40]} is not a finite number")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Refused("invalid_number", f"integer of {len(text)} characters is beyond ±2^53")
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise _Refused("invalid_number", f"integer {value} is beyond ±2^53")
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)  # one: json.loads(**kw)
# would build a decoder and its C scanner for every message


def _count_upto(data: bytes, byte: bytes, limit: int) -> int:
    """Occurrences of ``byte`` in ``data``, counting no further than ``limit``: ``find`` is memchr (fast),
    ``bytes.count`` of one byte is a plain loop (40 µs over an 11 KB event with its base64 snapshot here)."""
    n, i = 0, data.find(byte)
    while i >= 0 and n < limit:
        n += 1
        i = data.find(byte, i + 1)
    return n


def _scan(payload: bytes) -> DeadLetterReason | None:
    """Nesting depth and size from the raw bytes, before ``json.loads`` can recurse or allocate: C-speed counts,
    then (only for payloads with many brackets) a walk over strings and brackets that stops at the first level too
    deep. Commas are counted in and out of strings alike: 20,000 of them is too large either way."""
    if len(payload) >= MAX_NODES and payload.count(b",") >= MAX_NODES:  # (fewer bytes cannot hold that many)
        return DeadLetterReason("too_large", f"more than {MAX_NODES} values")
    if _count_upto(payload, b"[", MAX_DEPTH + 1) + _count_upto(payload, b"{", MAX_DEPTH + 1) <= MAX_DEPTH:
        return None  # cannot be too deep: the common case, a few memchr calls
    depth = 0
    # a string is one token, so brackets inside strings do not count; hostile depth shows in the first tokens
    for m in itertools.islice(_TOKEN.finditer(payload), 2 * MAX_NODES):
        c = m.group()[0]
        if c == 91 or c == 123:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return DeadLetterReason("too_deep", f"nested deeper than {MAX_DEPTH} levels")
        elif c == 93 or c == 125:  # ] }
            depth -= 1
    if payload.count(b"[") + payload.count(b"{") > MAX_NODES:  # every container is a value
        return DeadLetterReason("too_large", f"more than {MAX_NODES} values")
    return None


def _bad_strings(data: Any) -> str | None:
    """Path of the first string or key with a NUL or a lone surrogate (iterative: depth is already bounded)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if edge_messages.bad_text(value):
                return path or "<root>"
        elif isinstance(value, dict):
            for k, v in value.items():
                if edge_messages.bad_text(k):
                    return f"{path}/<key>"
                stack.append((v, f"{path}/{k}"))
        elif isinstance(value, list):
            stack.extend((v, f"{path}/{i}") for i, v in enumerate(value))
    return None


def decode_json(payload: bytes) -> dict[str, Any] | DeadLetterReason:
    """The payload as a JSON object, or why not (too_deep, too_large, malformed_json, invalid_number, invalid_text)."""
    problem = _scan(payload)
    if problem is not None:
        return problem
    try:
        data = _DECODER.decode(payload.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
    except _Refused as e:
        return DeadLetterReason(e.reason, e.detail)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return DeadLetterReason("malformed_json", str(e)[:300])
    except (ValueError, RecursionError, OverflowError) as e:  # belt and braces: the scan and hooks should catch these
        return DeadLetterReason("malformed_json", f"{type(e).__name__}: {str(e)[:200]}")
    if not isinstance(data, dict):
        return DeadLetterReason("malformed_json", "top level is not a JSON object")
    # NUL and surrogates can only come from \u escapes (raw control bytes and invalid UTF-8 fail above); a valid
    # surrogate pair or an escaped backslash before "u0000" also matches, and the walk then finds nothing
    if b"\\" in payload and _SUSPECT_ESCAPE.search(payload):  # memchr first: most payloads have no escape at all
        where = _bad_strings(data)
        if where is not None:
            return DeadLetterReason("invalid_text", f"{where}: text contains a NUL character or a lone surrogate")
    return data


# --------------------------------------------------------------------------- helpers


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise DeadLetterReason("schema", f"{name}: expected an RFC 3339 timestamp, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59:59-23:59 is past datetime.max in UTC
        raise DeadLetterReason("schema", f"{name}: {value[:40]!r} is not a usable RFC 3339 timestamp") from None


def _label(value: Any, name: str, limit: int | None = None) -> str | None:
    """A string that becomes an identifier or a label: None stays None; refused if too long or not printable."""
    if value is None:
        return None
    s = str(value)
    if limit is not None and len(s) > limit:
        raise DeadLetterReason("schema", f"{name}: longer than {limit} characters")
    if not s.isprintable():  # fast path in C; then find what exactly is wrong (spaces other than ' ' are fine)
        for ch in s:
            if unicodedata.category(ch) in _BAD_LABEL_CATEGORIES:
                raise DeadLetterReason(
                    "invalid_text", f"{name}: contains U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')})")
    return s


def dedup_key(type_: str, camera_id: str, zone: str, position: tuple[float, float] | None, grid: float) -> str:
    """camera | zone | type, plus the subject position rounded to ``grid`` for parking and vending."""
    key = f"{type_}|{camera_id}|{zone}"
    if type_ in POSITION_TYPES and position is not None:
        key += f"|{round(position[0] / grid)}:{round(position[1] / grid)}"
    return key


def strip_images(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as stored: image data lives in the evidence store, not in the JSON."""
    out = dict(payload)
    if payload.get("snapshot"):
        out["snapshot"] = {k: v for k, v in payload["snapshot"].items() if k != "data"}
    if payload.get("evidence"):
        out["evidence"] = [{**e, "snapshot": {k: v for k, v in e["snapshot"].items() if k != "data"}}
                           for e in payload["evidence"]]
    return out


def decode_image(snap: dict[str, Any] | None, max_bytes: int, what: str = "snapshot") -> Image | None:
    """Decode and verify one inline JPEG (the snapshot or an evidence item's)."""
    if not snap:
        return None
    try:
        data = base64.b64decode(snap.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise DeadLetterReason("bad_snapshot", f"{what}.data is not valid base64") from None
    if len(data) > max_bytes:
        raise DeadLetterReason("bad_snapshot", f"{what} is {len(data)} bytes, over max_snapshot_bytes={max_bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != str(snap.get("sha256", "")).lower():
        raise DeadLetterReason("bad_snapshot", f"{what} sha256 mismatch (data hashes to {digest[:16]}…)")
    if snap.get("bytes") is not None and snap["bytes"] != len(data):
        raise DeadLetterReason("bad_snapshot", f"{what}.bytes={snap['bytes']} but data has {len(data)} bytes")
    return Image(data, str(snap.get("content_type") or "image/jpeg"), digest)


def topic_parts(topic: str, prefix: str) -> tuple[str, str] | None:
    """'gridwatch/v1/<edge>/<leaf>' → (edge, leaf); None when the topic is not ours."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1:].split("/")
    if len(rest) != 2 or not 0 < len(rest[0]) <= 128:
        return None
    return rest[0], rest[1]


# --------------------------------------------------------------------------- the parser


class MessageParser:
    """``parse(topic, payload)`` → ``IncidentMessage`` | ``EdgeMessage`` | ``DeadLetterReason``; never raises."""

    def __init__(self, config: CentralConfig):
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.edges = frozenset(config.mqtt.edges or ())
        incident_validator()  # fail fast on a broken schema file
        fast_incident_validator()

    def parse(self, topic: str, payload: bytes) -> Parsed:
        try:
            result = self._parse(topic, payload)
        except Exception as e:  # noqa: BLE001 - never let one message fail its batch or stop the worker
            log.error("ingest: parsing a message on %s raised %s", topic[:200], type(e).__name__, exc_info=True)
            result = DeadLetterReason("processing_error", f"{type(e).__name__} while parsing: {str(e)[:300]}")
        if isinstance(result, DeadLetterReason):  # raised ones: their traceback's frames reach (f_back) the batch
            # that will hold this result, a reference cycle keeping every payload of it alive until a full collection
            result.__traceback__ = result.__context__ = result.__cause__ = None
        return result

    def _parse(self, topic: str, payload: bytes) -> Parsed:
        parts = topic_parts(topic, self.prefix)
        if parts is None:
            return DeadLetterReason("unknown_topic", f"topic {topic[:200]!r} is not ours")
        edge_id, leaf = parts
        if leaf not in LEAVES:
            return DeadLetterReason("unknown_topic", f"no handler for '{leaf}' messages")
        if self.edges and edge_id not in self.edges:
            return DeadLetterReason("unknown_edge", f"edge {edge_id[:64]!r} is not in mqtt.edges")
        if len(payload) > self.config.max_payload_bytes:
            return DeadLetterReason(
                "oversized", f"{len(payload)} bytes is over max_payload_bytes={self.config.max_payload_bytes}")
        data = decode_json(payload)
        if isinstance(data, DeadLetterReason):
            return data
        if leaf == "incidents":
            try:
                return self.incident(edge_id, data)
            except DeadLetterReason as e:
                return e
        problem = edge_messages.check(leaf, edge_id, data)  # status, heartbeat, crowd: their schemas
        if problem:
            return DeadLetterReason(*problem)
        return EdgeMessage(edge_id, leaf, data)

    def incident(self, edge_id: str, p: dict[str, Any]) -> IncidentMessage:
        """Version, cheap checks, schema, images; raises DeadLetterReason."""
        version = p.get("schema")
        if version != SCHEMA_ID:
            raise DeadLetterReason("unknown_version", f"schema {str(version)[:60]!r} is not {SCHEMA_ID!r}")
        times = self._precheck(edge_id, p)
        problem = schema_error(p)
        if problem:
            raise DeadLetterReason("schema", problem)
        camera, zone = p["camera"], p["zone"]
        loc = camera["location"]
        subject = p.get("subject") or {}
        pos = subject.get("position")
        position = (float(pos[0]), float(pos[1])) if isinstance(pos, list) and len(pos) == 2 else None
        max_snap = self.config.max_snapshot_bytes
        msg = IncidentMessage(
            edge_id=edge_id, event_id=p["event_id"], incident_id=p["incident_id"], seq=int(p["seq"]),
            event=p["event"], type=p["type"], camera_id=camera["id"], camera_name=camera.get("name"),
            camera_grid_cell=loc.get("grid_cell"), lat=loc.get("lat"), lon=loc.get("lon"),
            camera_address=loc.get("address"), zone=zone["name"], zone_grid_cell=zone.get("grid_cell"),
            zone_location=zone.get("location"), position=position,
            started=times["started_at"], last_seen=times["last_seen_at"], ended=times.get("ended_at"),
            emitted=times["emitted_at"], stored=strip_images(p),
            snapshot=decode_image(p.get("snapshot"), max_snap),
            evidence=[(e["kind"], parse_time(e["at"], f"evidence[{i}].at"),
                       decode_image(e["snapshot"], max_snap, f"evidence[{i}]"))  # type: ignore[misc]
                      for i, e in enumerate(p.get("evidence") or [])],
        )
        msg.category = self.config.category(msg.type)
        if msg.category is not None:
            msg.dedup_key = dedup_key(msg.type, msg.camera_id, msg.zone, position, msg.category.dedup_grid)
        return msg

    @staticmethod
    def _precheck(edge_id: str, p: dict[str, Any]) -> dict[str, datetime]:
        """What the schema does not check — labels, integer ranges the databases store, column sizes, origin,
        timestamps that parse — done *before* it, so most bad input is refused for a few microseconds. Each check
        looks only at a field of the expected type: anything else is the schema's to report."""
        camera = p.get("camera") if isinstance(p.get("camera"), dict) else {}
        zone = p.get("zone") if isinstance(p.get("zone"), dict) else {}
        loc = camera.get("location") if isinstance(camera.get("location"), dict) else {}
        for value, name, limit in (
            (camera.get("id"), "camera/id", 128), (camera.get("name"), "camera/name", None),
            (loc.get("grid_cell"), "camera/location/grid_cell", 64), (loc.get("address"), "camera/location/address",
                                                                      None),
            (zone.get("name"), "zone/name", 128), (zone.get("grid_cell"), "zone/grid_cell", 64),
            (zone.get("location"), "zone/location", None),
        ):
            if isinstance(value, str):
                _label(value, name, limit)
        for key, limit in _MAX_LEN.items():  # column sizes, so PostgreSQL never refuses what SQLite would accept
            value = p.get(key)
            if isinstance(value, str) and len(value) > limit:
                raise DeadLetterReason("schema", f"{key}: longer than {limit} characters")
        seq = p.get("seq")
        if isinstance(seq, int | float) and not 1 <= seq <= INT4_MAX:  # INTEGER columns, on both databases
            raise DeadLetterReason("schema", f"seq: {seq} is outside 1..{INT4_MAX}")
        subject = p.get("subject")
        ids = subject.get("track_ids") if isinstance(subject, dict) else None
        if isinstance(ids, list) and any(isinstance(t, int | float) and t > INT4_MAX for t in ids):
            raise DeadLetterReason("schema", f"subject/track_ids: an id is over {INT4_MAX}")
        claimed = p.get("edge_id")
        if isinstance(claimed, str) and claimed != edge_id:
            raise DeadLetterReason("topic_mismatch", f"payload edge_id {claimed[:64]!r} published on edge {edge_id!r}")
        return {k: parse_time(p[k], k) for k in ("started_at", "last_seen_at", "ended_at", "emitted_at")
                if isinstance(p.get(k), str)}
