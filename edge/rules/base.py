"""What every zone rule shares: geometry, schedule, the incident factory and schedule transitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from edge.config import ZoneConfig
from edge.detections import Detections
from edge.detectors.plausibility import PerspectiveSizeModel
from edge.incidents import Incident, IncidentEvent, IncidentFactory
from edge.schedule import Schedule
from edge.zones import ZoneGeometry


@dataclass(slots=True)
class Scene:
    """What a rule may look at besides the detections: the frame they came from and the camera's size model.

    Rules must work without either (constructed tests, replays of cached detections): ``image`` None means
    no appearance evidence, ``sizes`` None means no perspective model yet. ``grey`` is computed once per
    frame for every zone that needs it.
    """

    image: np.ndarray | None = None  # BGR, the analysed frame
    sizes: PerspectiveSizeModel | None = None
    _grey: np.ndarray | None = field(default=None, repr=False)

    @property
    def grey(self) -> np.ndarray | None:
        if self._grey is None and self.image is not None:
            self._grey = self.image if self.image.ndim == 2 else cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)
        return self._grey


NO_SCENE = Scene()


class ZoneRule:
    """One zone's rule. Subclasses implement ``evaluate`` and ``open_incidents``.

    Schedule policy: while the schedule is inactive no incident opens; when an active window ends,
    open incidents are closed with ``close_reason: schedule_ended``. Objects keep being watched while
    inactive, but dwell only counts from the moment the window (re)opens.
    """

    type: str = ""

    def __init__(self, zone: ZoneConfig, factory: IncidentFactory, tz: ZoneInfo, update_every_s: float | None):
        self.factory = factory
        self.tz = tz
        self.update_every_s = update_every_s
        self.active = False
        self.active_since: float | None = None
        self.last_frame_size: tuple[int, int] | None = None
        self._set_zone(zone)

    def _set_zone(self, zone: ZoneConfig) -> None:
        self.zone = zone
        self.geometry = ZoneGeometry(zone)
        self.schedule = Schedule(zone.schedule, self.tz)

    def reconfigure(self, zone: ZoneConfig) -> None:
        """Same name and type, new settings: keep the remembered objects and open incidents."""
        self._set_zone(zone)
        for inc in self.open_incidents():
            inc.zone = zone

    def step(
        self, detections: Detections, now: float, frame_size: tuple[int, int], scene: Scene = NO_SCENE
    ) -> list[IncidentEvent]:
        self.last_frame_size = frame_size
        events: list[IncidentEvent] = []
        if not self.zone.enabled:  # a disabled zone is not evaluated at all; its open incidents close
            events = self.close_all(now, "zone_removed") if self.open_incidents() else []
            self.active = False
            return events
        active = self.schedule.is_active(now)
        if active and not self.active:
            self.active_since = now
        elif self.active and not active:
            events += self.close_all(now, "schedule_ended")
        self.active = active
        events += self.evaluate(detections, now, frame_size, active, scene)
        return events

    def dwell_start(self, started_at: float) -> float:
        """Dwell counts from first sighting, but never from before the current active window."""
        return max(started_at, self.active_since if self.active_since is not None else started_at)

    def due_update(self, inc: Incident, now: float) -> bool:
        return bool(self.update_every_s) and now - inc.last_event_at >= float(self.update_every_s)

    # ------------------------------------------------------------------ subclass hooks

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        raise NotImplementedError

    def open_incidents(self) -> list[Incident]:
        raise NotImplementedError

    def close_all(self, now: float, reason: str) -> list[IncidentEvent]:
        """Close every open incident (schedule end, zone removed, shutdown)."""
        raise NotImplementedError
