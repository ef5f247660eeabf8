"""crowd_density: persons per m² in a crowd zone, levels with hysteresis, cooldown and a trend forecast.

Per update: count persons whose anchor is in the zone; the count is averaged over the last
``smoothing_s`` seconds; density = smoothed count / ``area_m2``.

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

from edge.detections import Detections
from edge.incidents import Incident, IncidentEvent, rfc3339
from edge.rules.base import Scene, ZoneRule

LEVELS = ["normal", "elevated", "high", "critical"]


@dataclass(slots=True)
class CrowdFigure:
    """Live figures of one crowd zone; published on gridwatch/v1/<edge_id>/crowd (rate-limited there)."""

    edge_id: str
    camera_id: str
    zone: str
    timestamp: float
    count: int
    raw_count: int
    density: float
    level: str
    forecast: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge_id": self.edge_id,
            "camera_id": self.camera_id,
            "zone": self.zone,
            "at": rfc3339(self.timestamp),
            "count": self.count,
            "density": round(self.density, 4),
            "level": self.level,
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
        thresholds = (zone.levels.elevated, zone.levels.high, zone.levels.critical)
        if not hasattr(self, "levels"):
            self.levels = CrowdLevelTracker(thresholds, zone.hysteresis)
            self.counts: deque[tuple[float, int]] = deque()
            self.densities: deque[tuple[float, float]] = deque()
            self.incident: Incident | None = None
            self.reported_level = 0
            self.reported_warning = False
            self.lower_since: float | None = None
            self.figure: CrowdFigure | None = None
        else:
            self.levels.thresholds, self.levels.hysteresis = thresholds, zone.hysteresis

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        raw = int(self.geometry.member_mask(detections, frame_size).sum())
        z = self.zone
        self.counts.append((now, raw))
        while self.counts and self.counts[0][0] < now - z.smoothing_s:
            self.counts.popleft()
        smoothed = float(np.mean([c for _, c in self.counts]))
        density = smoothed / float(z.area_m2 or 1.0)
        self.densities.append((now, density))
        while self.densities and self.densities[0][0] < now - z.forecast_window_s:
            self.densities.popleft()
        level = self.levels.update(density)
        forecast = self._forecast(now, level)
        self.figure = CrowdFigure(
            edge_id=self.factory.context.edge_id,
            camera_id=self.factory.context.camera["id"],
            zone=z.name,
            timestamp=now,
            count=int(round(smoothed)),
            raw_count=raw,
            density=density,
            level=LEVELS[level],
            forecast=forecast,
        )
        if not active:
            return []
        return self._lifecycle(now, frame_size, level, forecast)

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
            "count": f.count,
            "density": round(f.density, 4),
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
