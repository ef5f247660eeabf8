"""street_vending: one incident per stall cluster in a no_vending zone.

Stationary persons (the zone's ``classes``, default person; a custom model may say ``vendor``) and
stationary vending evidence (``evidence_classes``: umbrella, dining table, …, or ``stall``/``cart``)
are remembered by place (edge.rules.common). Confirmed stationary objects are clustered: two belong
together when closer than ``cluster_radius`` person-heights. A cluster is a stall when it holds
evidence, or — with ``stall_min_persons`` set — at least that many stationary persons (COCO cannot see
most goods, so a group standing still around a vendor is the visible sign). Stalls are remembered
across frames by shared members or centre distance; each stall opens one incident once it has
persisted ``dwell_s`` and closes ``grace_s`` after its last member was seen.

A stall is timed from when its defining condition started to hold: the later of its earliest person
and earliest evidence sighting, or for a group, when its k-th person (k = stall_min_persons) arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import numpy as np

from edge.detections import Detections
from edge.incidents import Incident, IncidentEvent, Subject
from edge.rules.base import Scene, ZoneRule
from edge.rules.common import Spot, StationaryMemory

CONFIRM_S = 2.0  # an object counts as stationary after this long at one place (capped at dwell_s / 4)


@dataclass(slots=True)
class Stall:
    key: int
    members: set[int]
    center: np.ndarray
    radius: float
    started_at: float
    last_seen: float
    subject: Subject
    incident: Incident | None = None
    history: list[int] = field(default_factory=list)


class VendingRule(ZoneRule):
    type = "street_vending"

    def _set_zone(self, zone) -> None:  # type: ignore[no-untyped-def]
        super()._set_zone(zone)
        self.person_classes = np.array(zone.watched_classes(), dtype=object)
        self.evidence_classes = np.array(
            [c for c in zone.vending_evidence() if c not in set(zone.watched_classes())], dtype=object
        )
        if not hasattr(self, "persons"):
            self.persons = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
            self.evidence = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
            self.stalls: list[Stall] = []
            self._keys = count(1)
        else:
            self.persons.configure(zone.stationary_tolerance, zone.grace_s)
            self.evidence.configure(zone.stationary_tolerance, zone.grace_s)

    def _observe(self, memory: StationaryMemory, dets: Detections, classes: np.ndarray, now: float,
                 frame_size: tuple[int, int]) -> None:
        sel = dets[self.geometry.member_mask(dets, frame_size, classes)]
        memory.update(sel.xyxy, self.geometry.anchors(sel.xyxy), sel.class_names, sel.scores, sel.track_ids, now)

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        self._observe(self.persons, detections, self.person_classes, now, frame_size)
        if len(self.evidence_classes):
            self._observe(self.evidence, detections, self.evidence_classes, now, frame_size)
        confirm = min(CONFIRM_S, self.zone.dwell_s / 4)
        persons = [s for s in self.persons.spots if s.hits >= 2 and now - s.started_at >= confirm]
        evidence = [s for s in self.evidence.spots if s.hits >= 2 and now - s.started_at >= confirm]
        clusters = self._clusters(persons, evidence)
        events = self._match_stalls(clusters, now, frame_size, active)
        return events

    # ------------------------------------------------------------------ clustering

    def _clusters(self, persons: list[Spot], evidence: list[Spot]) -> list[tuple[list[Spot], list[Spot], float]]:
        """Single-linkage groups of confirmed objects that qualify as stalls: (persons, evidence, started_at)."""
        spots = persons + evidence
        if not spots:
            return []
        n_p = len(persons)
        person_h = float(np.median([s.height for s in persons])) if persons else None
        heights = np.array([s.height if i < n_p or person_h is None else person_h for i, s in enumerate(spots)])
        pos = np.stack([s.ref for s in spots])
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
        linked = d <= self.zone.cluster_radius * np.maximum(heights[:, None], heights[None, :])
        parent = list(range(len(spots)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in np.argwhere(np.triu(linked, 1)):
            parent[find(int(i))] = find(int(j))
        groups: dict[int, list[int]] = {}
        for i in range(len(spots)):
            groups.setdefault(find(i), []).append(i)
        out = []
        k = self.zone.stall_min_persons
        for idx in groups.values():
            ps = [spots[i] for i in idx if i < n_p]
            ev = [spots[i] for i in idx if i >= n_p]
            if ev:
                ev_start = min(s.started_at for s in ev)
                started = max(ev_start, min(s.started_at for s in ps)) if ps else ev_start
            elif k and len(ps) >= k:
                started = sorted(s.started_at for s in ps)[k - 1]
            else:
                continue
            out.append((ps, ev, started))
        return out

    # ------------------------------------------------------------------ stalls and incidents

    def _match_stalls(
        self, clusters: list[tuple[list[Spot], list[Spot], float]], now: float, frame_size: tuple[int, int],
        active: bool,
    ) -> list[IncidentEvent]:
        events: list[IncidentEvent] = []
        taken: set[int] = set()
        for ps, ev, started in sorted(clusters, key=lambda c: -(len(c[0]) + len(c[1]))):
            members = ps + ev
            keys = {s.key for s in members}
            subject, center, radius = _cluster_subject(ps, ev, self.zone.cluster_radius)
            stall = self._find_stall(keys, center, radius, taken)
            last_seen = max(s.last_seen for s in members)
            if stall is None:
                stall = Stall(next(self._keys), keys, center, radius, started, last_seen, subject)
                self.stalls.append(stall)
            else:
                stall.members, stall.center, stall.radius = keys, center, radius
                stall.last_seen = max(stall.last_seen, last_seen)
                stall.subject = subject
            taken.add(stall.key)
            seen_now = stall.last_seen >= now
            inc = stall.incident
            if inc is not None:
                if seen_now:
                    inc.last_seen_at = now
                    inc.subject = subject
                    if self.due_update(inc, now):
                        events.append(self.factory.event(inc, "updated", now, frame_size))
            elif active and seen_now and now - self.dwell_start(stall.started_at) >= self.zone.dwell_s:
                stall.incident, opened = self.factory.open(
                    self.type, self.zone, self.dwell_start(stall.started_at), now, frame_size, subject=subject
                )
                for s in members:
                    s.pinned = True
                events.append(opened)
        keep = []
        for stall in self.stalls:
            if stall.key not in taken and now - stall.last_seen > self.zone.grace_s:
                if stall.incident is not None and not stall.incident.closed:
                    events.append(self.factory.event(stall.incident, "closed", now, frame_size, close_reason="left"))
                continue
            keep.append(stall)
        self.stalls = keep
        return events

    def _find_stall(self, keys: set[int], center: np.ndarray, radius: float, taken: set[int]) -> Stall | None:
        best, best_overlap = None, 0
        for stall in self.stalls:
            if stall.key in taken:
                continue
            overlap = len(stall.members & keys)
            if overlap > best_overlap:
                best, best_overlap = stall, overlap
        if best is not None:
            return best
        near = [
            (float(np.linalg.norm(s.center - center)), s) for s in self.stalls
            if s.key not in taken and np.linalg.norm(s.center - center) <= max(s.radius, radius)
        ]
        return min(near, key=lambda t: t[0])[1] if near else None

    def open_incidents(self) -> list[Incident]:
        return [s.incident for s in self.stalls if s.incident is not None and not s.incident.closed]

    def close_all(self, now: float, reason: str) -> list[IncidentEvent]:
        events = []
        size = self.last_frame_size or (1, 1)
        for stall in self.stalls:
            if stall.incident is not None and not stall.incident.closed:
                events.append(self.factory.event(stall.incident, "closed", now, size, close_reason=reason))
            stall.incident = None
        for s in self.persons.spots + self.evidence.spots:
            s.pinned = False
        return events


def _cluster_subject(ps: list[Spot], ev: list[Spot], cluster_radius: float) -> tuple[Subject, np.ndarray, float]:
    members = ps + ev
    boxes = np.stack([s.box for s in members])
    box = (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))
    center = np.mean([s.ref for s in members], axis=0)
    h = float(np.median([s.height for s in (ps or ev)]))
    track_ids = sorted({t for s in members for t in s.track_ids})
    cls = ev[0].cls if ev else ps[0].cls
    subject = Subject(
        cls=cls,
        track_ids=track_ids,
        confidence=float(max(s.confidence for s in members)),
        box_px=box,
        position_px=(float(center[0]), float(center[1])),
        members=len(members),
    )
    return subject, center, cluster_radius * h
