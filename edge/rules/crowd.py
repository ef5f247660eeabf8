"""crowd_density: persons per m² in a crowd zone, levels with hysteresis, cooldown and a trend forecast.

Per update, the zone's person estimate (``count_method``):
- ``detections``: person boxes of this frame whose anchor is in the zone;
- ``tracks``: the boxes fused over time with the tracker (edge.rules.crowd_fusion): a confirmed track
  missed by the detector still counts for ``track_hold_s`` at its predicted place, duplicates once;
- ``auto`` (default): tracks, plus the people the detector misses, estimated from foreground pixels
  divided by the pixel size of one person at that row (edge.rules.crowd_estimate), once the frame and a
  person size are there; held tracks whose predicted box shows no foreground are dropped.
Each figure carries the estimate, an 80 % interval (``count_low``..``count_high``), the method used, the
raw per-frame box count and how many counted persons have stood still for ``stationary_s``
(``stationary``). The estimate is averaged over the last ``smoothing_s`` seconds;
density = smoothed estimate / the zone's ground area (``area_m2``, or from its ``ground`` calibration);
levels and the forecast follow the density. With a ``ground`` calibration the zone is also cut into ground
cells of ``cell_m`` metres (edge.rules.crowd_cells): each counted person and each share of the foreground
residual goes to the cell where it stands, and the densest cell's smoothed density is published as
``peak_density`` with the cell (``peak_cell``); ``levels_from: peak`` makes the levels and the forecast
follow it instead of the zone average.

Levels (normal < elevated < high < critical): the level rises as soon as the density reaches a
threshold and falls only when the density is below ``threshold × (1 − hysteresis)``.

Incident lifecycle (one incident per crowding episode):
- ``opened`` when the level first rises above normal, or when the forecast gives an early warning;
- ``updated`` immediately on each further rise (each up-crossing is one event) and on a new early
  warning; a fall to a lower (non-normal) level is reported only once that level has held for
  ``cooldown_s`` — a dip that recovers within the cooldown produces no event at all;
- ``closed`` once the level has been normal (and no early warning) for ``cooldown_s``.
So one crossing gives one event, and nothing is emitted while the level holds.

Forecast: a least-squares line through the densities of the last ``forecast_window_s`` (at least 3
samples spanning a quarter of the window) extrapolated ``forecast_horizon_s`` ahead; an early warning
is raised when the level is below ``high`` and the prediction reaches ``high``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.config import Anchor
from edge.detections import Detections
from edge.incidents import Incident, IncidentEvent, rfc3339
from edge.labels import class_family
from edge.rules.base import Scene, ZoneRule
from edge.rules.crowd_cells import GroundCells, PeakCell
from edge.rules.crowd_estimate import ForegroundCounter, ForegroundEstimate
from edge.rules.crowd_fusion import FusedPersons, TrackFusion

LEVELS = ["normal", "elevated", "high", "critical"]
Z80 = 1.2816  # two-sided 80 % interval of a normal distribution
HELD_MIN_SUPPORT = 0.25  # a held track's predicted box must hold this many persons' worth of foreground
# The foreground may add at most this many persons per fused detected person (+1): a detector that finds
# fewer than 1 in 6 of the people is not what happens in a crowd, but undetected cars, a swaying tree or a
# camera in the rain would otherwise turn into dozens of "people".
RESIDUAL_MAX_RATIO = 5.0
VEHICLES = ["car", "truck", "bus", "motorcycle", "bicycle", "train", "boat"]  # moving foreground that is no person


@dataclass(slots=True)
class CrowdFigure:
    """Live figures of one crowd zone; published on gridwatch/v1/<edge_id>/crowd (rate-limited there)."""

    edge_id: str
    camera_id: str
    zone: str
    timestamp: float
    count: int  # the published estimate, rounded
    raw_count: int  # person boxes of this frame in the zone
    density: float  # persons per m², from the estimate averaged over smoothing_s
    level: str
    forecast: dict[str, Any] | None = None
    estimate: float | None = None  # None: same as count
    count_low: int | None = None  # 80 % interval of the estimate
    count_high: int | None = None
    count_method: str = "detections"  # detections | tracks | tracks+foreground
    stationary: int = 0  # counted persons standing still for at least stationary_s
    peak: PeakCell | None = None  # the densest ground cell (zones with a ground calibration)

    def counts(self) -> dict[str, Any]:
        """The count fields, shared by the live figure and the incident's ``crowd`` object."""
        return {
            "count": self.count,
            "estimate": round(float(self.count if self.estimate is None else self.estimate), 1),
            "count_low": self.count if self.count_low is None else self.count_low,
            "count_high": self.count if self.count_high is None else self.count_high,
            "count_method": self.count_method,
            "raw_count": self.raw_count,
            "stationary": self.stationary,
        }

    def cells(self) -> dict[str, Any]:
        """Density per part of the zone, when it has a ground calibration: the peak cell and where it is."""
        if self.peak is None:
            return {}
        return {"peak_density": round(self.peak.density, 4), "peak_cell": self.peak.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge_id": self.edge_id,
            "camera_id": self.camera_id,
            "zone": self.zone,
            "at": rfc3339(self.timestamp),
            **self.counts(),
            "density": round(self.density, 4),
            **self.cells(),
            "level": self.level,
            "forecast": dict(self.forecast) if self.forecast else None,
        }


class CrowdLevelTracker:
    """Level state with hysteresis (pure; easy to test with constructed density sequences)."""

    def __init__(self, thresholds: tuple[float, float, float], hysteresis: float):
        self.thresholds = thresholds
        self.hysteresis = hysteresis
        self.level = 0

    def update(self, density: float) -> int:
        up = sum(1 for t in self.thresholds if density >= t)
        if up > self.level:
            self.level = up
        else:
            while self.level > 0 and density < self.thresholds[self.level - 1] * (1 - self.hysteresis):
                self.level -= 1
        return self.level

    def level_of(self, density: float) -> int:
        return sum(1 for t in self.thresholds if density >= t)


def linear_forecast(samples: list[tuple[float, float]], now: float, horizon_s: float) -> float | None:
    """Least-squares line through (t, value) samples, evaluated at now + horizon_s."""
    if len(samples) < 3:
        return None
    t = np.array([s[0] - now for s in samples])
    v = np.array([s[1] for s in samples])
    if np.ptp(t) <= 0:
        return None
    slope, intercept = np.polyfit(t, v, 1)
    return max(0.0, float(intercept + slope * horizon_s))


class CrowdRule(ZoneRule):
    type = "crowd_density"

    def _set_zone(self, zone) -> None:  # type: ignore[no-untyped-def]
        super()._set_zone(zone)
        self.area_m2 = zone.ground_area_m2()  # computed once per (re)configuration
        thresholds = (zone.levels.elevated, zone.levels.high, zone.levels.critical)
        if not hasattr(self, "levels"):
            self.levels = CrowdLevelTracker(thresholds, zone.hysteresis)
            self.counts: deque[tuple[float, float]] = deque()
            self.densities: deque[tuple[float, float]] = deque()
            self.incident: Incident | None = None
            self.reported_level = 0
            self.reported_warning = False
            self.lower_since: float | None = None
            self.figure: CrowdFigure | None = None
            self.fusion = TrackFusion(zone.track_hold_s, zone.stationary_s)
            self.others = TrackFusion(zone.track_hold_s, zone.stationary_s)  # vehicles: their pixels are no people
            self.foreground = ForegroundCounter(self._size_family(zone))
        else:
            self.levels.thresholds, self.levels.hysteresis = thresholds, zone.hysteresis
            self.fusion.configure(zone.track_hold_s, zone.stationary_s)
            self.others.configure(zone.track_hold_s, zone.stationary_s)
            self.foreground.family = self._size_family(zone)
        self.watched = np.array(zone.watched_classes(), dtype=object)
        self.cells = GroundCells(zone) if zone.ground is not None else None  # a new zone starts its cells afresh
        self.cell_counts = np.zeros(self.cells.n if self.cells is not None else 0)  # this update's, per cell

    @staticmethod
    def _size_family(zone) -> str:  # type: ignore[no-untyped-def]
        """The size-model family for one person: 'person' when watched, else the first watched class's."""
        classes = zone.watched_classes()
        return "person" if "person" in classes else class_family(classes[0])

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        z = self.zone
        estimate, low, high, raw, method, stationary = self._estimate(detections, now, frame_size, scene)
        self.counts.append((now, estimate))
        while self.counts and self.counts[0][0] < now - z.smoothing_s:
            self.counts.popleft()
        smoothed = float(np.mean([c for _, c in self.counts]))
        density = smoothed / self.area_m2
        peak = self.cells.update(now, self.cell_counts, z.smoothing_s) if self.cells is not None else None
        followed = peak.density if peak is not None and z.levels_from == "peak" else density
        self.densities.append((now, followed))
        while self.densities and self.densities[0][0] < now - z.forecast_window_s:
            self.densities.popleft()
        level = self.levels.update(followed)
        forecast = self._forecast(now, level)
        self.figure = CrowdFigure(
            edge_id=self.factory.context.edge_id,
            camera_id=self.factory.context.camera["id"],
            zone=z.name,
            timestamp=now,
            count=int(round(estimate)),
            raw_count=raw,
            density=density,
            level=LEVELS[level],
            forecast=forecast,
            estimate=estimate,
            count_low=int(np.floor(low + 1e-9)),
            count_high=int(np.ceil(high - 1e-9)),
            count_method=method,
            stationary=stationary,
            peak=peak,
        )
        if not active:
            return []
        return self._lifecycle(now, frame_size, level, forecast)

    def _estimate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], scene: Scene
    ) -> tuple[float, float, float, int, str, int]:
        """(estimate, low, high, raw box count, method, stationary) for this update."""
        z = self.zone
        persons = detections[np.isin(detections.class_names, self.watched)] if len(detections) else detections
        fused = self.fusion.update(persons, now, frame_size, lambda xyxy: self._member(xyxy, frame_size))
        if z.count_method == "detections":
            n = float(fused.raw)
            if self.cells is not None:
                in_zone = persons.xyxy[self._member(persons.xyxy, frame_size)] if len(persons) else fused.boxes
                self.cell_counts = self._per_cell(in_zone, None, None, frame_size)
            return n, n, n, fused.raw, "detections", fused.stationary
        fg = None
        if z.count_method == "auto":
            ready = self.foreground.observe(
                scene.image, now, self.geometry.points_px(frame_size).astype(np.float64), frame_size, scene.sizes,
                fused.frame_boxes, fused.frame_scores, fused.moving,
            )
            if ready and fused.held:
                fused = fused.without_held(self.foreground.support(fused.boxes[fused.held_mask]) < HELD_MIN_SUPPORT)
            others = detections[np.isin(detections.class_names, VEHICLES)] if len(detections) else detections
            other = self.others.update(others, now, frame_size, lambda xyxy: np.ones(len(xyxy), dtype=bool))
            fg = self.foreground.estimate(fused.boxes, other.boxes)
        if self.cells is not None:
            self.cell_counts = self._per_cell(fused.boxes, fused, fg, frame_size)
        return self._combine(fused, fg)

    def _per_cell(self, boxes: np.ndarray, fused: FusedPersons | None, fg: ForegroundEstimate | None,
                  frame_size: tuple[int, int]) -> np.ndarray:
        """This update's persons per ground cell: the counted ``boxes`` at their anchors, plus the (capped)
        foreground residual pixel by pixel where its persons would stand. Sums to the update's estimate."""
        assert self.cells is not None
        scale = np.array(frame_size, dtype=np.float64)
        counts = self.cells.count(self.geometry.anchors(boxes) / scale) if len(boxes) else np.zeros(self.cells.n)
        if fused is not None and fg is not None and fg.residual > 0:
            residual, _ = _capped(fused, fg)
            points, weights = self.foreground.residual_points(feet=self.zone.anchor != Anchor.center)
            counts += self.cells.count(points / scale, weights * (residual / fg.residual))
        return counts

    @staticmethod
    def _combine(fused: FusedPersons, fg) -> tuple[float, float, float, int, str, int]:  # type: ignore[no-untyped-def]
        """Fused boxes plus the foreground residual. Low end: this frame's boxes and the residual's lower 80 %
        bound (a held track may have left); high end: every fused person and the residual's upper bound."""
        count = float(fused.count)
        if fg is None:
            return count, float(fused.current), count, fused.raw, "tracks", fused.stationary
        residual, sigma = _capped(fused, fg)
        estimate = count + residual
        low = fused.current + max(0.0, residual - Z80 * sigma)
        high = estimate + Z80 * sigma
        return estimate, low, high, fused.raw, "tracks+foreground", fused.stationary

    def _member(self, xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        n = len(xyxy)
        if n == 0:
            return np.zeros(0, dtype=bool)
        boxes = Detections(xyxy, np.ones(n), np.zeros(n), np.full(n, self.watched[0], dtype=object))
        return self.geometry.member_mask(boxes, frame_size)

    def _forecast(self, now: float, level: int) -> dict[str, Any] | None:
        z = self.zone
        if z.forecast_horizon_s <= 0 or len(self.densities) < 3:
            return None
        if self.densities[-1][0] - self.densities[0][0] < z.forecast_window_s / 4:
            return None
        predicted = linear_forecast(list(self.densities), now, z.forecast_horizon_s)
        if predicted is None:
            return None
        return {
            "predicted_density": round(predicted, 4),
            "horizon_s": float(z.forecast_horizon_s),
            "predicted_level": LEVELS[self.levels.level_of(predicted)],
            "early_warning": bool(level < 2 and predicted >= z.levels.high),
        }

    def _crowd(self, level: int, previous: int | None, forecast: dict[str, Any] | None) -> dict[str, Any]:
        f = self.figure
        assert f is not None
        return {
            **f.counts(),
            "density": round(f.density, 4),
            **f.cells(),
            "level": LEVELS[level],
            "previous_level": LEVELS[previous] if previous is not None else None,
            "forecast": dict(forecast) if forecast else None,
        }

    def _lifecycle(
        self, now: float, frame_size: tuple[int, int], level: int, forecast: dict[str, Any] | None
    ) -> list[IncidentEvent]:
        warning = bool(forecast and forecast["early_warning"])
        inc = self.incident
        if inc is None:
            if level == 0 and not warning:
                return []
            self.incident, ev = self.factory.open(
                self.type, self.zone, now, now, frame_size, crowd=self._crowd(level, 0, forecast)
            )
            self.reported_level, self.reported_warning, self.lower_since = level, warning, None
            return [ev]
        inc.last_seen_at = now
        # a warning is news only while the reported level is below high: after a fall from high that has not
        # held for the cooldown yet, it would report that fall early and the fall would be reported again
        new_warning = (warning and not self.reported_warning and self.reported_level < 2
                       and now - inc.last_event_at >= self.zone.cooldown_s)
        if level > self.reported_level or new_warning:
            previous = self.reported_level
            self.reported_level = max(level, self.reported_level)
            self.reported_warning = self.reported_warning or warning
            self.lower_since = None
            inc.crowd = self._crowd(level, previous, forecast)
            return [self.factory.event(inc, "updated", now, frame_size)]
        if not warning:
            self.reported_warning = False
        if level < self.reported_level or (level == 0 and not warning):
            if self.lower_since is None:
                self.lower_since = now
            if now - self.lower_since >= self.zone.cooldown_s:
                previous = self.reported_level
                inc.crowd = self._crowd(level, previous, forecast)
                self.reported_level, self.lower_since = level, None
                if level == 0 and not warning:
                    self.incident = None
                    return [self.factory.event(inc, "closed", now, frame_size, close_reason="normal")]
                return [self.factory.event(inc, "updated", now, frame_size)]
        else:
            self.lower_since = None
        return []

    def open_incidents(self) -> list[Incident]:
        return [self.incident] if self.incident is not None else []

    def close_all(self, now: float, reason: str) -> list[IncidentEvent]:
        if self.incident is None:
            return []
        inc, self.incident = self.incident, None
        self.reported_level, self.reported_warning, self.lower_since = 0, False, None
        return [self.factory.event(inc, "closed", now, self.last_frame_size or (1, 1), close_reason=reason)]


def _capped(fused: FusedPersons, fg: ForegroundEstimate) -> tuple[float, float]:
    """The foreground residual and its sigma, at most RESIDUAL_MAX_RATIO persons per fused person (+1)."""
    cap = RESIDUAL_MAX_RATIO * (fused.count + 1)
    return (fg.residual, fg.sigma) if fg.residual <= cap else (cap, fg.sigma * cap / fg.residual)
