"""Zone rules for one camera: ``RuleEngine.update(tracked detections, timestamp, frame size)``.

Each enabled zone gets its rule (no_parking → illegal_parking, no_vending → street_vending,
crowd → crowd_density, parking → parking_occupancy figures). The engine is driven purely by the
timestamps it is given (epoch seconds, the file's own clock in tests), so replays are deterministic
and schedules can be tested by choosing timestamps.

Shutdown policy (``flush``): every open incident is closed with ``close_reason: shutdown``, so the
central service never keeps an incident open that no running edge will ever close. A restarted worker
times vehicles again from when it first sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from edge.config import CameraConfig, SiteConfig, ZoneConfig, ZoneType
from edge.detections import Detections
from edge.incidents import EngineContext, IncidentEvent, IncidentFactory
from edge.rules.base import NO_SCENE, Scene, ZoneRule
from edge.rules.crowd import CrowdFigure, CrowdRule
from edge.rules.occupancy import OccupancyFigure, OccupancyRule
from edge.rules.parking import ParkingRule
from edge.rules.vending import VendingRule

__all__ = ["CrowdFigure", "IncidentEvent", "OccupancyFigure", "RuleEngine", "RuleOutput", "Scene"]

RULES: dict[ZoneType, type[ZoneRule]] = {
    ZoneType.no_parking: ParkingRule,
    ZoneType.no_vending: VendingRule,
    ZoneType.crowd: CrowdRule,
    ZoneType.parking: OccupancyRule,
}
DEFAULT_UPDATE_EVERY_S = 300.0


@dataclass(slots=True)
class RuleOutput:
    events: list[IncidentEvent] = field(default_factory=list)
    crowd: list[CrowdFigure] = field(default_factory=list)  # live figures of every active crowd zone
    occupancy: list[OccupancyFigure] = field(default_factory=list)  # parking zones whose reporting interval ended


class RuleEngine:
    """All zone rules of one camera."""

    def __init__(
        self,
        camera: CameraConfig,
        *,
        site: SiteConfig,
        edge_id: str,
        model_name: str,
        model_version: str,
        clock_tz: str | None = None,
        update_every_s: float | None = DEFAULT_UPDATE_EVERY_S,
    ):
        self.edge_id = edge_id
        self.model_name = model_name
        self.model_version = model_version
        self.tz = ZoneInfo(clock_tz or site.timezone)
        self.update_every_s = update_every_s
        self.rules: dict[tuple[str, str], ZoneRule] = {}
        self._pending: list[IncidentEvent] = []
        self.last_timestamp = 0.0
        self._configure(camera)
        for zone in camera.zones:
            self.rules[(zone.name, str(zone.type))] = self._new_rule(zone)

    def _configure(self, camera: CameraConfig) -> None:
        self.camera = camera
        ctx = EngineContext.build(camera, self.edge_id, self.model_name, self.model_version)
        if hasattr(self, "factory"):
            self.factory.context = ctx
            self.factory.camera_grid_cell = camera.location.grid_cell
        else:
            self.factory = IncidentFactory(ctx, camera.location.grid_cell)

    def _new_rule(self, zone: ZoneConfig) -> ZoneRule:
        return RULES[zone.type](zone, self.factory, self.tz, self.update_every_s)

    def update(
        self, detections: Detections, timestamp: float, frame_size: tuple[int, int], scene: Scene = NO_SCENE
    ) -> RuleOutput:
        """Run every zone on one frame's tracked detections. ``frame_size`` is (width, height); ``scene`` gives
        the frame itself and the camera's size model to rules that use them."""
        self.last_timestamp = timestamp
        out = RuleOutput(events=self._pending)
        self._pending = []
        for rule in self.rules.values():
            out.events += rule.step(detections, timestamp, frame_size, scene)
            if isinstance(rule, CrowdRule) and rule.active and rule.figure is not None:
                out.crowd.append(rule.figure)
            elif isinstance(rule, OccupancyRule) and (report := rule.take_report()) is not None:
                out.occupancy.append(report)
        return out

    def reconfigure(self, camera: CameraConfig) -> None:
        """Hot reload: zones whose name and type are unchanged keep their state (timers, open incidents);
        removed or retyped zones close their open incidents (``close_reason: zone_removed``, emitted with the
        next ``update``)."""
        self._configure(camera)
        new = {(z.name, str(z.type)): z for z in camera.zones}
        for key in list(self.rules):
            if key not in new:
                rule = self.rules.pop(key)
                self._pending += rule.close_all(self.last_timestamp, "zone_removed")
        for key, zone in new.items():
            if key in self.rules:
                self.rules[key].reconfigure(zone)
            else:
                self.rules[key] = self._new_rule(zone)

    def flush(self, timestamp: float, reason: str = "shutdown") -> list[IncidentEvent]:
        """We stop watching (shutdown, camera removed or reconfigured): the events still held from a zone change,
        then a ``closed`` event (``close_reason`` = ``reason``) for every open incident."""
        events, self._pending = self._pending, []
        for rule in self.rules.values():
            events += rule.close_all(timestamp, reason)
        return events

    def open_incident_count(self) -> int:
        return sum(len(r.open_incidents()) for r in self.rules.values())
