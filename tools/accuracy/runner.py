"""Run the real edge worker on one labelled clip and collect what it publishes.

Each case is a generated cameras.yaml (one camera, fast playback on the file's own clock, no loop) with
zones drawn from the clip's labels, never from the sample cameras.yaml:
- every labelled ``parking`` and ``negative`` zone becomes a no_parking zone (negative ones at dwell 10 s);
- every region with person counts becomes a crowd zone ``count-<region>``;
- a clip with people gets a whole-frame no_vending zone ``vending-full`` (dwell 10 s, product defaults
  otherwise), so any vending incident on footage without a labelled stall is a false one.
A variant is a YAML mapping deep-merged over the generated file (``detector:``, ``defaults:``, ...).
"""

from __future__ import annotations

import copy
import resource
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from edge.config import load_config
from edge.detectors import ConfiguredDetector, build_detector
from edge.worker import EdgeWorker
from tools.accuracy.labels import ClipLabels

EPOCH = 1_764_547_200.0  # 2025-12-01 00:00 UTC: the fixed start of every replay, so results repeat
NEGATIVE_DWELL_S = 10.0
VENDING_DWELL_S = 10.0


@dataclass
class CaseResult:
    clip: str
    variant: str
    detect_fps: float
    frames: int
    cpu_s: float
    wall_s: float
    incidents: list[dict[str, Any]] = field(default_factory=list)  # every published event payload
    crowd: list[dict[str, Any]] = field(default_factory=list)  # every crowd figure, with "t" (clip seconds)
    dropped: dict[str, int] = field(default_factory=dict)  # front-end drops by reason

    @property
    def cpu_per_frame(self) -> float:
        return self.cpu_s / self.frames if self.frames else 0.0


class Collector:
    """Stands in for the MQTT publisher: keeps every payload the worker hands over."""

    def __init__(self) -> None:
        self.incidents: list[dict[str, Any]] = []
        self.crowd: list[dict[str, Any]] = []

    def start(self) -> None: ...

    def stop(self, timeout: float = 5) -> None: ...

    def publish_incident(self, payload: dict) -> None:
        payload = dict(payload)
        payload["snapshot"] = None  # keep results small
        self.incidents.append(payload)

    def publish_crowd(self, figure: dict) -> None:
        self.crowd.append(dict(figure))

    def publish_heartbeat(self, cameras: list[dict], counters: dict) -> None: ...


def clip_time(rfc3339: str) -> float:
    """A payload timestamp → seconds on the clip's clock."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() - EPOCH


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def case_config(labels: ClipLabels, media_dir: Path, detect_fps: float, variant: dict, var_dir: Path) -> dict:
    zones: list[dict[str, Any]] = []
    for z in labels.zones:
        dwell = max(NEGATIVE_DWELL_S, z.dwell_s) if z.kind == "negative" else z.dwell_s
        zones.append({"name": z.name, "type": "no_parking", "points": [list(p) for p in z.points], "dwell_s": dwell})
    regions = sorted({c.region for c in labels.person_counts} | ({"full"} if labels.ground_truth else set()))
    for r in regions:
        zones.append({"name": f"count-{r}", "type": "crowd", "points": [list(p) for p in labels.region_points(r)],
                      "area_m2": 100.0})
    if regions or labels.groups:
        zones.append({"name": "vending-full", "type": "no_vending", "dwell_s": VENDING_DWELL_S,
                      "points": [[0, 0], [1, 0], [1, 1], [0, 1]]})
    cfg = {
        "version": 1,
        "edge_id": "edge-accuracy",
        "outbox": {"path": str(var_dir / "outbox.sqlite")},
        "snapshots": {"dir": str(var_dir / "snapshots")},
        "defaults": {"playback": "fast", "loop": False, "detect_fps": detect_fps},
        "cameras": [{"id": f"acc-{labels.stem}".replace("_", "-")[:64], "url": str(media_dir / labels.clip),
                     "zones": zones}],
    }
    return deep_merge(cfg, variant)


class CaseRunner:
    """Runs cases; builds each distinct detector configuration once."""

    def __init__(self, media_dir: Path):
        self.media_dir = media_dir
        self._detectors: dict[str, ConfiguredDetector] = {}

    def _detector(self, cfg) -> ConfiguredDetector:  # type: ignore[no-untyped-def]
        key = cfg.detector.model_dump_json()
        if key not in self._detectors:
            self._detectors[key] = build_detector(cfg.detector)
        return self._detectors[key]

    def run(self, labels: ClipLabels, variant_name: str, variant: dict, detect_fps: float) -> CaseResult:
        with tempfile.TemporaryDirectory(prefix="gridwatch-acc-") as tmp:
            tmp_dir = Path(tmp)
            path = tmp_dir / "cameras.yaml"
            path.write_text(yaml.safe_dump(case_config(labels, self.media_dir, detect_fps, variant, tmp_dir)))
            cfg = load_config(path)
            detector = self._detector(cfg)
            collector = Collector()
            worker = EdgeWorker(cfg, publisher=collector, detector=detector, start_epoch=EPOCH)
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            worker.start()
            try:
                worker.run()
            finally:
                worker.close()
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            dropped: Counter = Counter()
            for p in worker.pipelines.values():
                front_end = getattr(p, "front_end", None)  # absent in releases before the junk-box filter
                dropped.update(front_end.drops if front_end is not None else {})
        crowd = [dict(f, t=round(clip_time(f["at"]), 3)) for f in collector.crowd]
        return CaseResult(
            clip=labels.clip,
            variant=variant_name,
            detect_fps=detect_fps,
            frames=int(worker.counters["frames_analyzed"]),
            cpu_s=(r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            wall_s=t1 - t0,
            incidents=collector.incidents,
            crowd=crowd,
            dropped=dict(dropped),
        )
