"""Score one case's published incidents and crowd figures against the clip's labels.

Matching rules (also in eval/labels/README.md):
- an incident matches a labelled vehicle when its subject box overlaps the labelled box (intersection
  over the smaller of the two ≥ ``MATCH_OVERLAP``) and it opened within the vehicle's ``present``
  interval (plus ``TIME_SLACK_S`` for the departure grace);
- every incident opened in a ``negative`` zone is false, matched or not;
- in a ``parking`` zone an incident matching no labelled vehicle is false; a second incident matched
  to the same vehicle is a duplicate;
- recall counts the vehicles that are ``parked``, not ``ambiguous``, with their bottom centre inside a
  parking zone and present there for longer than that zone's dwell + ``RECALL_MARGIN_S``;
- person counts are compared with the crowd figure published nearest to the labelled time (at most one
  analysis period away).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Point, Polygon

from edge.detectors.postprocess import overlap_of_smaller
from tools.accuracy.labels import Box, ClipLabels, Vehicle
from tools.accuracy.runner import CaseResult, clip_time

MATCH_OVERLAP = 0.3
TIME_SLACK_S = 2.0
RECALL_MARGIN_S = 10.0


@dataclass
class CountSample:
    t: float
    region: str
    truth: int
    estimate: float
    raw: int | None
    error: float

    @property
    def rel_error(self) -> float:
        return abs(self.error) / self.truth if self.truth else 0.0


@dataclass
class CaseScore:
    clip: str
    variant: str
    detect_fps: float
    frames: int
    cpu_ms_per_frame: float
    parking_expected: list[str] = field(default_factory=list)
    parking_found: list[str] = field(default_factory=list)
    parking_incidents: int = 0
    parking_false: int = 0
    parking_duplicates: int = 0
    negative_false: int = 0
    negative_false_per_hour: float = 0.0
    vending_incidents: int = 0
    vending_false: int = 0
    counts: list[CountSample] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    false_incidents: list[dict[str, Any]] = field(default_factory=list)  # what was false, for reading

    @property
    def recall(self) -> float | None:
        return len(self.parking_found) / len(self.parking_expected) if self.parking_expected else None

    @property
    def precision(self) -> float | None:
        n = self.parking_incidents
        return (n - self.parking_false - self.parking_duplicates) / n if n else None

    def count_stats(self, raw: bool = False) -> dict[str, float] | None:
        samples = [c for c in self.counts if not raw or c.raw is not None]
        if not samples:
            return None
        errors = [(c.raw - c.truth) if raw else c.error for c in samples]
        rel = [abs(e) / c.truth for e, c in zip(errors, samples, strict=True) if c.truth]
        return {
            "mae": statistics.fmean(abs(e) for e in errors),
            "bias": statistics.fmean(errors),
            "median_rel": statistics.median(rel) if rel else 0.0,
            "mean_rel": statistics.fmean(rel) if rel else 0.0,
            "mean_truth": statistics.fmean(c.truth for c in samples),
            "n": len(samples),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["recall"] = self.recall
        out["precision"] = self.precision
        out["count"] = self.count_stats()
        out["raw_count"] = self.count_stats(raw=True)
        return out


def overlap_min(a: Box, b: Box) -> float:
    """Intersection over the smaller box: a detector box around part of a car still matches it."""
    return overlap_of_smaller(np.asarray(a), np.asarray(b))


def matching_vehicle(labels: ClipLabels, box: Box, t: float) -> Vehicle | None:
    best, best_overlap = None, MATCH_OVERLAP
    for v in labels.vehicles:
        if not (v.present[0] - TIME_SLACK_S <= t <= v.present[1] + TIME_SLACK_S):
            continue
        ov = overlap_min(box, v.box)
        if ov >= best_overlap:
            best, best_overlap = v, ov
    return best


def expected_parked(labels: ClipLabels) -> list[Vehicle]:
    out = []
    for z in labels.zones:
        if z.kind != "parking":
            continue
        poly = Polygon(z.points)
        for v in labels.vehicles:
            stays = min(v.present[1], labels.duration_s) - max(v.present[0], 0.0)
            if (v.state == "parked" and not v.ambiguous and poly.covers(Point(v.bottom_center()))
                    and stays > z.dwell_s + RECALL_MARGIN_S and v not in out):
                out.append(v)
    return out


def score_case(labels: ClipLabels, result: CaseResult, media_dir: Path) -> CaseScore:
    score = CaseScore(result.clip, result.variant, result.detect_fps, result.frames,
                      round(result.cpu_per_frame * 1000, 1), dropped=result.dropped)
    kinds = {z.name: z.kind for z in labels.zones}
    expected = expected_parked(labels)
    score.parking_expected = [v.id for v in expected]
    matched: dict[str, int] = {}
    for p in result.incidents:
        if p["event"] != "opened":
            continue
        zone = p["zone"]["name"]
        t = clip_time(p["emitted_at"])
        box = tuple(p["subject"]["box"]) if p.get("subject") else (0.0, 0.0, 1.0, 1.0)
        brief = {"zone": zone, "t": round(t, 1), "class": (p.get("subject") or {}).get("class"), "box": box,
                 "track_ids": (p.get("subject") or {}).get("track_ids")}
        if p["type"] == "illegal_parking":
            kind = kinds.get(zone)
            vehicle = matching_vehicle(labels, box, t)
            if kind == "negative":
                score.negative_false += 1
                score.false_incidents.append(brief)
            elif kind == "parking":
                score.parking_incidents += 1
                if vehicle is None:
                    score.parking_false += 1
                    score.false_incidents.append(brief)
                else:
                    matched[vehicle.id] = matched.get(vehicle.id, 0) + 1
                    if matched[vehicle.id] > 1:
                        score.parking_duplicates += 1
        elif p["type"] == "street_vending":
            score.vending_incidents += 1
            if not any(g.vending and overlap_min(box, g.box) >= MATCH_OVERLAP for g in labels.groups):
                score.vending_false += 1
                score.false_incidents.append(brief)
    score.parking_found = [v.id for v in expected if v.id in matched]
    hours = labels.duration_s / 3600.0
    score.negative_false_per_hour = round(score.negative_false / hours, 1) if hours else 0.0
    score.counts = _count_samples(labels, result, media_dir)
    return score


def _count_samples(labels: ClipLabels, result: CaseResult, media_dir: Path) -> list[CountSample]:
    period = 1.0 / result.detect_fps
    by_zone: dict[str, list[dict[str, Any]]] = {}
    for f in result.crowd:
        by_zone.setdefault(f["zone"], []).append(f)
    out = []
    for c in labels.counts(media_dir):
        figures = by_zone.get(f"count-{c.region}", [])
        if not figures:
            continue
        f = min(figures, key=lambda f: abs(f["t"] - c.t))
        if abs(f["t"] - c.t) > period + 0.01:
            continue
        est = float(f.get("estimate", f["count"]))
        out.append(CountSample(c.t, c.region, c.count, est, f.get("raw_count"), est - c.count))
    return out
