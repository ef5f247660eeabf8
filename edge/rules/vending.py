"""street_vending: one incident per stall in a no_vending zone.

A stall needs goods or equipment. Stationary persons (the zone's ``classes``, default person) and
stationary vending evidence (``evidence_classes``; by default COCO's umbrella, dining table, chair, bench,
suitcase, bicycle, … plus the classes of a vending model: ``stall``, ``umbrella_stall``, ``cart``,
``vendor``) are remembered by place (edge.rules.common). Evidence is only what stands by itself:

- an evidence box lying mostly (``CARRIED_INSIDE``) inside a person box of the same frame is carried
  (a backpack, a handbag, a held umbrella) and is ignored;
- once the camera's person size model is learned (``scene.sizes``), an evidence box taller than
  ``EVIDENCE_MAX_HEIGHT`` expected person heights at its bottom row is no table or parasol (a junk box
  over half the floor) and is ignored;
- an evidence spot detected in fewer than ``EVIDENCE_MIN_SEEN`` of the frames since it appeared is a
  recurring junk box (a "chair" the detector sees in the pattern of a kiosk now and then), not equipment.

Confirmed evidence objects are clustered (single linkage, closer than ``cluster_radius`` person-heights);
a person joins the cluster of the nearest evidence object within that distance — persons never link
persons, so a crowd standing around cannot chain a stall across the zone. A cluster is a stall when at
least one stationary person stays at its evidence, or when it holds a vending model's own class
(``STANDALONE_CLASSES``: the model has seen the stall itself). Persons alone are a stall only when the
zone sets ``stall_min_persons`` (off by default): then a group of at least that many stationary persons
(linked person to person) not at any evidence counts too. Stalls are remembered across frames by shared
members or centre distance; each stall opens one incident once it has persisted ``dwell_s`` and closes
``grace_s`` after its last member was seen.

A stall is timed from when its defining condition started to hold: the later of its earliest person
and earliest evidence sighting (evidence alone for a standalone class), or for a group, when its k-th
person (k = stall_min_persons) arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import numpy as np

from edge.detections import Detections
from edge.incidents import Incident, IncidentEvent, Subject, SubjectPart
from edge.rules.base import Scene, ZoneRule
from edge.rules.common import Spot, StationaryMemory

CONFIRM_S = 2.0  # an object counts as stationary after this long at one place (capped at dwell_s / 4)
VENDING_MODEL_CLASSES = ["stall", "umbrella_stall", "cart", "vendor"]  # added to the default evidence list
STANDALONE_CLASSES = frozenset(VENDING_MODEL_CLASSES)  # a stall by themselves, no person needed
CARRIED_INSIDE = 0.6  # evidence with this fraction of its box inside a person box is carried by that person
EVIDENCE_MAX_HEIGHT = 1.5  # evidence taller than this many expected person heights at its row is a junk box
EVIDENCE_MIN_SEEN = 0.25  # equipment is seen in at least this fraction of the frames since it appeared


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
        evidence = zone.vending_evidence() + ([] if zone.evidence_classes else VENDING_MODEL_CLASSES)
        self.evidence_classes = np.array(
            [c for c in dict.fromkeys(evidence) if c not in set(zone.watched_classes())], dtype=object
        )
        if not hasattr(self, "persons"):
            self.persons = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
            self.evidence = StationaryMemory(zone.stationary_tolerance, zone.grace_s)
            self.stalls: list[Stall] = []
            self._keys = count(1)
            self._frames = 0  # updates seen, to tell how often an evidence spot was actually detected
        else:
            self.persons.configure(zone.stationary_tolerance, zone.grace_s)
            self.evidence.configure(zone.stationary_tolerance, zone.grace_s)

    def _observe(self, memory: StationaryMemory, sel: Detections, now: float) -> None:
        memory.update(sel.xyxy, self.geometry.anchors(sel.xyxy), sel.class_names, sel.scores, sel.track_ids, now)

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        persons = detections[self.geometry.member_mask(detections, frame_size, self.person_classes)]
        self._observe(self.persons, persons, now)
        if len(self.evidence_classes):
            evidence = detections[self.geometry.member_mask(detections, frame_size, self.evidence_classes)]
            self._observe(self.evidence, evidence[self._standing_evidence(evidence, detections, frame_size, scene)],
                          now)
        confirm = min(CONFIRM_S, self.zone.dwell_s / 4)
        persons = [s for s in self.persons.spots if s.hits >= 2 and now - s.started_at >= confirm]
        self._frames += 1
        for spot in self.evidence.spots:
            spot.data.setdefault("first_frame", self._frames)
        evidence = [s for s in self.evidence.spots if s.hits >= 2 and now - s.started_at >= confirm
                    and s.hits >= EVIDENCE_MIN_SEEN * (self._frames - s.data["first_frame"] + 1)]
        clusters = self._clusters(persons, evidence)
        events = self._match_stalls(clusters, now, frame_size, active)
        return events

    def _standing_evidence(self, evidence: Detections, detections: Detections, frame_size: tuple[int, int],
                           scene: Scene) -> np.ndarray:
        """Mask of evidence boxes that stand by themselves: not carried by a person, plausible in size."""
        keep = np.ones(len(evidence), dtype=bool)
        if not len(evidence):
            return keep
        people = detections.xyxy[np.isin(detections.class_names, self.person_classes)]
        if len(people):
            ev = evidence.xyxy
            lt = np.maximum(ev[:, None, :2], people[None, :, :2])
            rb = np.minimum(ev[:, None, 2:], people[None, :, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
            inside = inter / np.maximum(evidence.areas[:, None], 1e-9)
            keep &= ~((inside >= CARRIED_INSIDE).any(axis=1) & ~np.isin(evidence.class_names, list(STANDALONE_CLASSES)))
        if scene.sizes is not None:
            _, h = frame_size
            expected = scene.sizes.expected_height("person", evidence.xyxy[:, 3] / float(h))
            if expected is not None:
                keep &= (evidence.xyxy[:, 3] - evidence.xyxy[:, 1]) / float(h) <= EVIDENCE_MAX_HEIGHT * expected
        return keep

    # ------------------------------------------------------------------ clustering

    def _clusters(self, persons: list[Spot], evidence: list[Spot]) -> list[tuple[list[Spot], list[Spot], float]]:
        """Stalls among the confirmed objects: (persons, evidence, started_at) per stall."""
        out = []
        person_h = float(np.median([s.height for s in persons])) if persons else None
        at_evidence: set[int] = set()
        if evidence:
            pos = np.stack([s.ref for s in evidence])
            h = np.array([person_h or s.height for s in evidence])
            d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
            groups = _single_linkage(d <= self.zone.cluster_radius * np.maximum(h[:, None], h[None, :]))
            members: dict[int, list[Spot]] = {g: [] for g in set(groups)}
            for k, p in enumerate(persons):  # each person joins the nearest evidence object within reach
                dist = np.linalg.norm(pos - p.ref, axis=1)
                reach = self.zone.cluster_radius * np.maximum(h, p.height)
                near = np.flatnonzero(dist <= reach)
                if len(near):
                    members[groups[int(near[np.argmin(dist[near])])]].append(p)
                    at_evidence.add(k)
            for g, ps in members.items():
                ev = [evidence[i] for i in range(len(evidence)) if groups[i] == g]
                standalone = [s for s in ev if s.cls in STANDALONE_CLASSES]
                if ps:
                    started = max(min(s.started_at for s in ev), min(s.started_at for s in ps))
                    if standalone:
                        started = min(started, min(s.started_at for s in standalone))
                elif standalone:
                    started = min(s.started_at for s in standalone)
                else:
                    continue  # goods without anyone staying at them
                out.append((ps, ev, started))
        k = self.zone.stall_min_persons
        alone = [p for i, p in enumerate(persons) if i not in at_evidence]
        if k and len(alone) >= k:
            pos = np.stack([s.ref for s in alone])
            h = np.array([s.height for s in alone])
            d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
            groups = _single_linkage(d <= self.zone.cluster_radius * np.maximum(h[:, None], h[None, :]))
            for g in set(groups):
                ps = [alone[i] for i in range(len(alone)) if groups[i] == g]
                if len(ps) >= k:
                    out.append((ps, [], sorted(s.started_at for s in ps)[k - 1]))
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
    parts = tuple(
        SubjectPart(s.cls, role, (float(s.box[0]), float(s.box[1]), float(s.box[2]), float(s.box[3])),
                    float(s.confidence), s.track_ids[-1] if s.track_ids else -1)
        for role, spots in (("goods", ev), ("person", ps)) for s in spots
    )
    subject = Subject(
        cls=cls,
        track_ids=track_ids,
        confidence=float(max(s.confidence for s in members)),
        box_px=box,
        position_px=(float(center[0]), float(center[1])),
        members=len(members),
        parts=parts,
    )
    return subject, center, cluster_radius * h


def _single_linkage(linked: np.ndarray) -> list[int]:
    """Group label per item from a symmetric boolean adjacency matrix (union-find)."""
    parent = list(range(len(linked)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.argwhere(np.triu(linked, 1)):
        parent[find(int(i))] = find(int(j))
    return [find(i) for i in range(len(linked))]
