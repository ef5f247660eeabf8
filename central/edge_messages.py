"""Validation of the edge's live messages — status, heartbeat, crowd figure, live frame — before they are stored.

Each topic has a JSON Schema in ``central/schemas/<leaf>.v1.json`` (documented in docs/mqtt.md). ``check(leaf,
edge_id, data)`` returns ``None`` for a good message or ``(reason, detail)`` for a dead letter:

- ``invalid_number``: NaN, ±Infinity or an integer beyond ±2^53 anywhere in the message;
- ``invalid_text``: a NUL character or a lone surrogate in any string or key (PostgreSQL refuses both);
- ``too_deep`` / ``too_large``: nesting deeper than ``MAX_DEPTH`` or more than ``MAX_NODES`` values;
- ``schema``: the topic's schema refused it (a required field missing or mistyped — e.g. an incident payload sent on
  ``…/heartbeat`` has no ``cameras`` and no ``at``), with the path and the schema's message;
- ``topic_mismatch``: the payload's ``edge_id`` is not the edge id in the topic.

The schemas require the core fields and type the known optional ones; other fields are accepted (an edge may add
figures, e.g. the crowd estimate's ``count_low``/``count_high``), bounded by ``maxProperties`` and the checks above.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema

log = logging.getLogger(__name__)

# frame: central.live_frames; occupancy: central.occupancy
LEAVES = ("status", "heartbeat", "crowd", "frame", "occupancy")
MAX_DEPTH = 16
MAX_NODES = 20_000
MAX_SAFE_INT = 2**53
_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_text(value: str) -> str | None:
    """"a NUL character" or "a lone surrogate" if ``value`` holds one (what no database column should store), else
    None. ``in`` and ``isascii`` first: a regex over an 11 KB base64 snapshot costs 10-20 µs, these well under 1."""
    if "\x00" in value:
        return "a NUL character"
    if not value.isascii() and _SURROGATE.search(value):  # (an ASCII string cannot hold a surrogate)
        return "a lone surrogate"
    return None


@cache
def schema(leaf: str) -> dict[str, Any]:
    raw = resources.files("central").joinpath(f"schemas/{leaf}.v1.json").read_text(encoding="utf-8")
    return json.loads(raw)


@cache
def validator(leaf: str) -> jsonschema.protocols.Validator:
    s = schema(leaf)
    cls = jsonschema.validators.validator_for(s, default=jsonschema.Draft202012Validator)
    cls.check_schema(s)
    return cls(s)


@cache
def fast_validator(leaf: str) -> Callable[[Any], Any] | None:
    """The schema compiled by fastjsonschema (several times faster) for the accept path; jsonschema writes the
    message for a refused one."""
    try:
        return fastjsonschema.compile(schema(leaf))
    except Exception:  # a schema feature fastjsonschema lacks: jsonschema alone
        log.warning("fastjsonschema cannot compile the %s schema; using jsonschema", leaf, exc_info=True)
        return None


def _schema_ok(leaf: str, data: Any) -> bool:
    fast = fast_validator(leaf)
    if fast is None:
        return False
    try:
        fast(data)
        return True
    except fastjsonschema.JsonSchemaException:
        return False


def check_values(data: Any) -> tuple[str, str] | None:
    """Finite numbers, storable text, bounded nesting and size — iteratively (no recursion on hostile depth)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return "too_large", f"more than {MAX_NODES} values"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                return "invalid_number", f"{path or '<root>'}: {value} is not a finite number"
        elif isinstance(value, int):
            if abs(value) > MAX_SAFE_INT:
                return "invalid_number", f"{path or '<root>'}: integer of {value.bit_length()} bits is beyond ±2^53"
        elif isinstance(value, str):
            what = bad_text(value)
            if what:
                return "invalid_text", f"{path or '<root>'}: text contains {what}"
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return "too_deep", f"{path or '<root>'}: nested deeper than {MAX_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str) and bad_text(k):
                    return "invalid_text", f"{path or '<root>'}: a key contains a NUL character or a lone surrogate"
                stack.append((v, f"{path}/{k}", depth + 1))
    return None


def check(leaf: str, edge_id: str, data: Any) -> tuple[str, str] | None:
    """``None`` if ``data`` is a valid ``leaf`` message from ``edge_id``, else ``(dead-letter reason, detail)``."""
    problem = check_values(data)
    if problem:
        return problem[0], f"{leaf}: {problem[1]}"
    err = None if _schema_ok(leaf, data) else jsonschema.exceptions.best_match(validator(leaf).iter_errors(data))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        return "schema", f"{leaf}: {where}: {err.message[:300]}"
    if data.get("edge_id") != edge_id:
        claimed = str(data.get("edge_id"))[:64]
        return "topic_mismatch", f"{leaf}: payload edge_id {claimed!r} published on edge {edge_id!r}"
    return None
