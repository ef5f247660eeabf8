"""illegal_parking: the same vehicle, at the same place, for longer than the zone's dwell.

Places come from edge.rules.common (a ``Spot`` is where a vehicle box was seen without moving). When the
rule has the frame (``scene.image``), each spot also carries the vehicle's *reference patch*, taken when
it was first seen, and that appearance decides identity and presence (edge/rules/appearance.py):

- **Identity.** A detection joins a spot only if the patch at the spot still looks like its reference, and
  a younger spot is folded into an older one only if their references look alike. A different car filling
  the same place, as in a busy lane, starts a timer of its own; a lane whose occupants keep changing
  never accumulates dwell, however dense the traffic.
- **Membership.** A vehicle joins the zone by its anchor (``zone.anchor``) inside the polygon. Once remembered,
  a box of it whose anchor slipped just outside still counts for it (box edges jump between samples); such a
  box never starts a spot.
- **Presence without detections.** At every sample the patch at the spot is compared with the reference
  even when the detector finds nothing there. While it matches, the vehicle is present (one or two
  detections start the timer; appearance keeps it). When it stops matching, the spot is no longer
  refreshed: if the patch matches again within ``grace_s`` (a pedestrian or a bus passed in front) the
  timer simply continues; if not, the vehicle has left and its incident closes ``grace_s`` after it was
  last seen.
- **Evidence of a vehicle.** With images, a spot opens an incident only when its reference patch is
  textured (not bare road from a junk box), it has been detected at least twice, in at least
  ``MIN_DETECTION_RATE`` of the samples since it was first seen, and its appearance has been confirmed at
  two or more later samples and in at least ``MIN_PRESENCE_RATE`` of them, at least twice in full
  (``FULL_MATCH``: a box over parked cars and a lane, taken while a car passed, keeps matching in part only).
  A box too small to tell two vehicles apart (``appearance.MIN_SIDE_PX``) gives no appearance evidence, so
  far-away dense traffic cannot look "stationary" because its cars all look alike.

Evidence: the opening event carries the arrival photograph (the frame of the spot's first appearance
confirmation, with the box there) besides the snapshot taken when the dwell was exceeded; the worker adds
a close-up crop of the vehicle (edge/snapshots.py).

Without images (replays of cached detections, constructed tests) the rule runs on detections alone.
One vehicle never has two open incidents: a spot whose box lies over a vehicle that has an open incident
and is present now does not open another.
"""

from __future__ import annotations

import numpy as np

from edge.detections import Detections
from edge.detectors.postprocess import box_iou, overlap_of_smaller
from edge.incidents import EvidenceFrame, Incident, IncidentEvent, Subject
from edge.labels import class_family
from edge.rules import appearance
from edge.rules.base import Scene, ZoneRule
from edge.rules.common import Spot, StationaryMemory

SAME_VEHICLE = 0.6  # patch similarity at or above which it is the same vehicle at the same place
# Similarity at or above which the whole reference matched (all blocks but one): an unoccluded parked vehicle
# does, sample after sample. A reference that only ever matches in part caught something that has gone (a
# passing car under a box that also covers parked ones): its still part is not one vehicle of its own.
FULL_MATCH = 0.85
FOLLOW_LIGHTING = 0.85  # similarity at or above which the reference follows the current patch a little
MIN_CONFIRMS = 2  # appearance matches after the reference before an incident may open
MIN_DETECTIONS = 2
# With images, detections at a spot per analysed sample since it was first seen: a parked car that SSD
# finds in one sample of three still passes; a junk box that flickers on road markings (zebra stripes are
# as textured as a car) once in ten samples does not, even though its patch "stays" perfectly.
MIN_DETECTION_RATE = 0.2
# With images, appearance matches per sample since the reference was taken: a parked car matches in nearly
# every sample (less while something passes in front); a lane of similar-looking cars matches now and then.
MIN_PRESENCE_RATE = 0.4
REJECT_AFTER = 2  # samples without a single appearance match after which a spot is passing traffic
RETAKE_IOU = 0.7  # a detection this much on the reference box may retake a reference that never matched in full
ONE_VEHICLE_OVERLAP = 0.5  # of the smaller box: two spots this much on top of each other are one vehicle


class ParkingRule(ZoneRule):
    type = "illegal_parking"
    keep_arrival = True  # keep the frame of a spot's first appearance match (the arrival photograph)

    def _set_zone(self, zone) -> None:  # type: ignore[no-untyped-def]
        super()._set_zone(zone)
        if not hasattr(self, "memory"):
            self.memory = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
        else:
            self.memory.configure(zone.stationary_tolerance, zone.grace_s)

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        seen, forgotten = self.observe(detections, now, frame_size, scene)
        grey = scene.grey
        events: list[IncidentEvent] = []
        for spot in forgotten:
            inc: Incident | None = spot.data.pop("incident", None)
            if inc is not None and not inc.closed:
                events.append(self.factory.event(inc, "closed", now, frame_size, close_reason="left"))
        for spot in seen:
            inc = spot.data.get("incident")
            if inc is not None:
                inc.last_seen_at = now
                inc.subject = self._subject(spot, grey is not None)
                if self.due_update(inc, now):
                    events.append(self.factory.event(inc, "updated", now, frame_size))
            elif active and self._due(spot, now, grey is not None) and not self._another_incident_on(spot, seen):
                arrival = spot.data.pop("arrival", None)
                inc, ev = self.factory.open(
                    self.type, self.zone, self.dwell_start(spot.started_at), now, frame_size,
                    subject=self._subject(spot, grey is not None), evidence=(arrival,) if arrival else (),
                )
                spot.data["incident"] = inc
                spot.pinned = True
                events.append(ev)
        return events

    def observe(
        self, detections: Detections, now: float, frame_size: tuple[int, int], scene: Scene
    ) -> tuple[list[Spot], list[Spot]]:
        """Update the spots with this frame's vehicles in the zone and the appearance evidence.

        Returns (spots present now: detected or their patch still matching, spots forgotten now)."""
        grey = scene.grey
        in_zone, outside = self.geometry.membership(detections, frame_size)
        # With images, a box of a vehicle already remembered here still counts as a sighting of it when its anchor
        # has slipped just out of the polygon: a detector's box edge jumps by a tenth of its height between
        # samples (zoomed windows against the whole frame), and the vehicle has not moved. Identity (anchor
        # tolerance and appearance, below) decides whether it joins a spot; such a box never starts one.
        joinable = np.zeros(len(detections), dtype=bool)
        if grey is not None and self.memory.spots and outside.any():  # only boxes beside a remembered vehicle
            joinable[outside] = self.memory.near_a_spot(self.geometry.anchors(detections.xyxy[outside]))
        sel_mask = in_zone | joinable
        sel = detections[sel_mask]
        join_only = joinable[sel_mask]
        anchors = self.geometry.anchors(sel.xyxy)
        present = self._check_appearance(grey, scene.image, now) if grey is not None else set()

        def may_join(spot: Spot, det: int) -> bool:
            if grey is None:
                return True
            if spot.data.get("rejected"):
                return False
            if join_only[det]:  # only a vehicle whose own patch still shows it here
                return spot.data.get("ref") is not None and id(spot) in present
            return spot.data.get("ref") is None or id(spot) in present

        def may_merge(young: Spot, old: Spot) -> bool:
            a, b = young.data.get("ref"), old.data.get("ref")
            return a is None or b is None or appearance.similarity(b, a) >= SAME_VEHICLE

        seen, forgotten = self.memory.update(
            sel.xyxy, anchors, sel.class_names, sel.scores, sel.track_ids, now, may_join, may_merge, join_only
        )
        seen_ids = {id(s) for s in seen}
        seen += [s for s in self.memory.spots if id(s) in present and id(s) not in seen_ids]
        if grey is not None:
            for spot in seen:
                if "ref" not in spot.data:
                    self._take_reference(spot, grey)
                elif spot.detected_at == now and self._reference_only_partial(spot):
                    self._restart(spot, grey, now)
        return seen, forgotten

    @staticmethod
    def _reference_only_partial(spot: Spot) -> bool:
        """The spot was just detected as the same object as at its reference (same class family, the box on
        the reference box), and that reference has matched since, but never in full: it caught something that
        has gone, typically the driver getting out or a pedestrian in front of the car."""
        d = spot.data
        return (d.get("ref") is not None and d.get("incident") is None and d.get("full_matches", 0) == 0
                and d.get("confirms", 0) > 0 and d.get("ref_samples", 0) >= REJECT_AFTER
                and class_family(spot.cls) == class_family(d.get("ref_cls", ""))
                and float(box_iou(spot.box[None, :], d["ref_box"][None, :])[0, 0]) >= RETAKE_IOU)

    def _restart(self, spot: Spot, grey: np.ndarray, now: float) -> None:
        """A fresh reference from this frame, and the timer starts again from now: the car is timed from this
        sighting (its dwell under-reported by the wait, never over-reported). It needs ``MIN_DETECTIONS`` more
        detections after this one before an incident may open, so a junk box over parked cars and a lane (whose
        reference caught a passing car) does not gain a clean reference from one more stray sighting."""
        spot.started_at = now
        spot.data.pop("arrival", None)
        spot.data["hits_before_restart"] = spot.hits - 1
        self._take_reference(spot, grey)

    # ------------------------------------------------------------------ appearance evidence

    def _check_appearance(self, grey: np.ndarray, image: np.ndarray, now: float) -> set[int]:
        """Spots whose patch still shows their vehicle (touched: they stay remembered).

        At a spot's first confirmation its frame is kept (a reference, not a copy) as the arrival photograph:
        passing traffic rarely confirms, so few frames are held.
        """
        present: set[int] = set()
        for spot in self.memory.spots:
            spot.data["samples"] = spot.data.get("samples", 0) + 1  # since first seen: the detection rate
            spot.data["ref_samples"] = spot.data.get("ref_samples", 0) + 1  # since the reference: appearance
            ref = spot.data.get("ref")
            if ref is None:
                continue
            if spot.data.get("confirms", 0) == 0 and spot.data["ref_samples"] > REJECT_AFTER:
                # never looked the same since it was first seen: passing traffic. Stop checking it (it is not
                # joinable either; a later detection there starts a spot with a fresh reference).
                spot.data.update(ref=None, rejected=True)
                continue
            cur = appearance.patch(grey, spot.data["ref_box"])
            sim = appearance.similarity(ref, cur) if cur is not None else 0.0
            spot.data["appearance"] = sim
            if sim >= SAME_VEHICLE:
                present.add(id(spot))
                spot.data["confirms"] = spot.data.get("confirms", 0) + 1
                if sim >= FULL_MATCH:
                    spot.data["full_matches"] = spot.data.get("full_matches", 0) + 1
                if self.keep_arrival and "arrival" not in spot.data:
                    box = tuple(float(v) for v in spot.data["ref_box"])
                    spot.data["arrival"] = EvidenceFrame("arrival", now, image, box)  # type: ignore[arg-type]
                if sim >= FOLLOW_LIGHTING and cur is not None:
                    spot.data["ref"] = appearance.blend(ref, cur)
                self.memory.touch(spot, now)
        return present

    @staticmethod
    def _take_reference(spot: Spot, grey: np.ndarray) -> None:
        p = appearance.patch(grey, spot.box)
        spot.data["ref"] = p if p is not None and appearance.textured(p) else None
        spot.data["ref_box"] = spot.box.copy()
        spot.data["ref_cls"] = spot.cls
        spot.data["confirms"] = 0
        spot.data["full_matches"] = 0
        spot.data["ref_samples"] = 0

    def _due(self, spot: Spot, now: float, with_images: bool) -> bool:
        if (spot.hits - spot.data.get("hits_before_restart", 0) < MIN_DETECTIONS
                or now - self.dwell_start(spot.started_at) < self.zone.dwell_s):
            return False
        if with_images:  # the vehicle must have been seen to stay: a textured reference, confirmed since
            samples = spot.data.get("samples", 0) + 1
            ref_samples = spot.data.get("ref_samples", 0) + 1
            confirms = spot.data.get("confirms", 0)
            return (spot.data.get("ref") is not None and confirms >= MIN_CONFIRMS
                    and spot.data.get("full_matches", 0) >= MIN_CONFIRMS
                    and spot.hits / samples >= MIN_DETECTION_RATE and confirms / ref_samples >= MIN_PRESENCE_RATE)
        return True

    def _another_incident_on(self, spot: Spot, seen: list[Spot]) -> bool:
        return any(
            other is not spot and other.data.get("incident") is not None
            and overlap_of_smaller(spot.box, other.box) >= ONE_VEHICLE_OVERLAP
            for other in seen
        )

    def _subject(self, spot: Spot, with_images: bool) -> Subject:
        x1, y1, x2, y2 = (float(v) for v in spot.box)
        return Subject(
            cls=spot.cls,
            track_ids=list(spot.track_ids),
            confidence=spot.confidence,
            box_px=(x1, y1, x2, y2),
            position_px=(float(spot.ref[0]), float(spot.ref[1])),
            arrived_at=spot.started_at,
            evidence="appearance" if with_images and spot.data.get("ref") is not None else "detections",
            appearance=spot.data.get("appearance") if with_images else None,
        )

    # ------------------------------------------------------------------ lifecycle

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

