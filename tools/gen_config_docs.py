"""Write docs/configuration.md from the pydantic models in edge/config.py (the models are the documentation).

    .venv/bin/python tools/gen_config_docs.py            # rewrite docs/configuration.md
    .venv/bin/python tools/gen_config_docs.py --check    # exit 1 if the file is out of date (used by tests)
"""

from __future__ import annotations

import argparse
import sys
import typing
from enum import Enum
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge import config as C  # noqa: E402

OUT = ROOT / "docs" / "configuration.md"

INTRO = """# cameras.yaml reference

Generated from `edge/config.py` by `tools/gen_config_docs.py` — do not edit by hand.

- Unknown keys are errors, so a typo never passes silently; every error names its path
  (`cameras[2].zones[0].points`) and the reason. Validate with `gridwatch-edge check cameras.yaml`.
- `${VAR}` and `${VAR:-default}` in any string are replaced from the environment (use it for
  passwords); credentials in URLs are masked in logs and health reports.
- Relative paths (files, outbox, snapshots, models) are relative to the cameras.yaml file.
- `defaults` holds camera settings that every camera inherits; a camera overrides any of them.
- Zone points are normalized: x from 0 (left) to 1 (right), y from 0 (top) to 1 (bottom). Polygons must
  have 3+ points, a non-zero area and no crossing edges.
- The configuration is re-read while the worker runs (every 2 s): zone and rule edits apply without
  dropping streams; an invalid edit is logged and the running configuration stays.
- Where to draw no-parking zones (kerbs, sidewalks, bus stops, junction boxes), how to choose the dwell so
  queues at a light never fire, and zoomed zone windows for kerbs the detector cannot see well, with
  pictures from the sample footage: [parking-zones.md](parking-zones.md).
"""

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Top level", C.EdgeConfig),
    ("site", C.SiteConfig),
    ("mqtt", C.MqttConfig),
    ("mqtt.tls", C.TlsConfig),
    ("mqtt.live_frames", C.LiveFrameConfig),
    ("outbox", C.OutboxConfig),
    ("snapshots", C.SnapshotConfig),
    ("detector", C.DetectorConfig),
    ("detector.tiling", C.TilingConfig),
    ("tracker", C.TrackerConfig),
    ("health", C.HealthLogConfig),
    ("defaults (and every camera)", C.CameraSettings),
    ("cameras[]", C.CameraConfig),
    ("cameras[].location", C.Location),
    ("cameras[].zones[]", C.ZoneConfig),
    ("cameras[].zones[].schedule[]", C.ScheduleWindow),
    ("cameras[].zones[].size", C.SizeRange),
    ("cameras[].zones[].levels", C.CrowdLevels),
]


def _type_name(tp: object) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is tuple:
        return f"({', '.join(_type_name(a) for a in args)})"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " \\| ".join(repr(m.value) for m in tp)
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _default(field: typing.Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return f"`{value!r}`" if value is not None else "`null`"


def render() -> str:
    parts = [INTRO]
    for title, model in SECTIONS:
        own = model.model_fields
        if model is C.CameraConfig:
            own = {k: v for k, v in own.items() if k not in C.CameraSettings.model_fields}
        parts.append(f"\n## {title}\n")
        doc = (model.__doc__ or "").strip()
        if doc and not doc.startswith("Base for") and "Usage docs" not in doc:
            parts.append(doc.replace("\n    ", "\n") + "\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, field in own.items():
            desc = (field.description or "").replace("|", "\\|")
            parts.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
    parts.append(
        "\nDefault watched classes per zone type: "
        + "; ".join(f"`{t.value}`: {', '.join(c)}" for t, c in C.DEFAULT_ZONE_CLASSES.items())
        + f". Default vending evidence: {', '.join(C.DEFAULT_VENDING_EVIDENCE)}.\n"
    )
    return "\n".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run tools/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
