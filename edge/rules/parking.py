"""illegal_parking: a vehicle stationary inside a no_parking zone for the zone's dwell time.

Each remembered spot (edge.rules.common) is one subject. The incident opens once the spot has been
stationary for ``dwell_s`` while the schedule is active, and closes ``grace_s`` after the vehicle was
last seen there (it drove off, or stayed hidden that long).
"""

from __future__ import annotations

from edge.detections import Detections
from edge.incidents import Incident, IncidentEvent, Subject
from edge.rules.base import Scene, ZoneRule
from edge.rules.common import Spot, StationaryMemory


class ParkingRule(ZoneRule):
    type = "illegal_parking"

    def _set_zone(self, zone) -> None:  # type: ignore[no-untyped-def]
        super()._set_zone(zone)
        if not hasattr(self, "memory"):
            self.memory = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
        else:
            self.memory.configure(zone.stationary_tolerance, zone.grace_s)

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        sel = detections[self.geometry.member_mask(detections, frame_size)]
        anchors = self.geometry.anchors(sel.xyxy)
        seen, forgotten = self.memory.update(sel.xyxy, anchors, sel.class_names, sel.scores, sel.track_ids, now)
        events: list[IncidentEvent] = []
        for spot in forgotten:
            inc: Incident | None = spot.data.pop("incident", None)
            if inc is not None and not inc.closed:
                events.append(self.factory.event(inc, "closed", now, frame_size, close_reason="left"))
        for spot in seen:
            inc = spot.data.get("incident")
            if inc is not None:
                inc.last_seen_at = now
                inc.subject = _subject(spot)
                if self.due_update(inc, now):
                    events.append(self.factory.event(inc, "updated", now, frame_size))
            elif active and spot.hits >= 2 and now - self.dwell_start(spot.started_at) >= self.zone.dwell_s:
                inc, ev = self.factory.open(
                    self.type, self.zone, self.dwell_start(spot.started_at), now, frame_size, subject=_subject(spot)
                )
                spot.data["incident"] = inc
                spot.pinned = True
                events.append(ev)
        return events

    def open_incidents(self) -> list[Incident]:
        return [s.data["incident"] for s in self.memory.spots if s.data.get("incident") is not None]

    def close_all(self, now: float, reason: str) -> list[IncidentEvent]:
        events = []
        size = self.last_frame_size or (1, 1)
        for spot in self.memory.spots:
            inc = spot.data.pop("incident", None)
            spot.pinned = False
            if inc is not None and not inc.closed:
                events.append(self.factory.event(inc, "closed", now, size, close_reason=reason))
        return events


def _subject(spot: Spot) -> Subject:
    x1, y1, x2, y2 = (float(v) for v in spot.box)
    return Subject(
        cls=spot.cls,
        track_ids=list(spot.track_ids),
        confidence=spot.confidence,
        box_px=(x1, y1, x2, y2),
        position_px=(float(spot.ref[0]), float(spot.ref[1])),
    )
