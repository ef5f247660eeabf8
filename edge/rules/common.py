"""Memory of stationary objects, keyed by place rather than by tracker id.

Frigate restarts a dwell timer whenever the tracker swaps an id or loses a parked car for a few frames.
Here a remembered object (``Spot``) is a place where an object of the watched classes has been seen
without moving: each frame, detections are matched to spots by anchor distance relative to the spot's
own size (``tolerance`` × sqrt(box area)), greedily, nearest first. A spot keeps its ``started_at``
through missed detections and id switches for up to ``memory_s`` without a sighting.

Passing traffic must not keep refreshing an old spot: a detection may join a spot only if it is
untracked, carries a track id the spot already has, or its track was already at this place at its
previous sighting (a car that drives through is somewhere else one frame earlier). An untracked
detection may not join a spot whose tracks have all been seen leaving it (the car drove off; a low-score
box of the next car passing by is not the parked car coming back). When the
tracker hands a parked car a new or transferred id, the car first gets a fresh spot; once that spot
has been seen twice at the same place it is merged into the older spot there, which keeps its
``started_at``, so the dwell timer continues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np

MAX_SIZE_RATIO = 1.6  # a box this much larger or smaller (sqrt area) is not the same object
MEAN_CAP = 5  # the reference anchor is the mean of the first sightings, then frozen (so it cannot follow a walker)


@dataclass(slots=True)
class Spot:
    key: int
    ref: np.ndarray  # (2,) reference anchor, pixels
    size: float  # sqrt(box area) at the reference, pixels
    box: np.ndarray  # (4,) last box seen
    cls: str
    started_at: float
    last_seen: float
    confidence: float
    hits: int = 1
    track_ids: list[int] = field(default_factory=list)
    pinned: bool = False  # an open incident refers to this spot: never drop it early
    detected_at: float = float("-inf")  # last detection that placed it (not a join-only sighting)
    data: dict[str, Any] = field(default_factory=dict)  # rule-specific state

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def stationary_for(self, now: float) -> float:
        return now - self.started_at


@dataclass(slots=True)
class _TrackLast:
    anchor: np.ndarray
    size: float
    last_seen: float


class StationaryMemory:
    """Spots of one object group (e.g. vehicles of a no_parking zone)."""

    def __init__(self, tolerance: float, memory_s: float):
        self.tolerance = float(tolerance)
        self.memory_s = float(memory_s)
        self.spots: list[Spot] = []
        self._last: dict[int, _TrackLast] = {}
        self._keys = count(1)

    def configure(self, tolerance: float, memory_s: float) -> None:
        self.tolerance = float(tolerance)
        self.memory_s = float(memory_s)

    def update(
        self,
        xyxy: np.ndarray,
        anchors: np.ndarray,
        classes: np.ndarray,
        scores: np.ndarray,
        track_ids: np.ndarray,
        now: float,
        may_join: Callable[[Spot, int], bool] | None = None,
        may_merge: Callable[[Spot, Spot], bool] | None = None,
        join_only: np.ndarray | None = None,
    ) -> tuple[list[Spot], list[Spot]]:
        """Match this frame's detections to spots. Returns (spots seen now, spots forgotten now).

        ``may_join(spot, detection index)`` and ``may_merge(young, old)`` let a rule veto a match with its
        own evidence (parking: the patch at the spot no longer shows the same vehicle). A detection flagged in
        ``join_only`` counts as a sighting of an existing spot (hits, last seen) but never starts one and never
        moves its box, anchor, class or track ids: it may be another object just beside it.
        """
        n = len(xyxy)
        sizes = np.sqrt(np.clip(xyxy[:, 2] - xyxy[:, 0], 1, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 1, None))
        local = self._track_is_local(anchors, sizes, track_ids, now)
        assigned = np.full(n, -1, dtype=np.int64)
        seen: list[Spot] = []
        if self.spots and n:
            spot_sizes = np.array([s.size for s in self.spots])
            dist = self._anchor_distances(anchors)
            ratio = sizes[None, :] / spot_sizes[:, None]
            allowed = (dist <= self.tolerance) & (ratio >= 1 / MAX_SIZE_RATIO) & (ratio <= MAX_SIZE_RATIO)
            free = (track_ids < 0) | local  # may join any spot; others only a spot that already has their id
            untracked = track_ids < 0
            if untracked.any():
                for i, spot in enumerate(self.spots):
                    if self._departed(spot):
                        allowed[i, untracked] = False
            for i, di in np.argwhere(allowed & ~free[None, :]):
                if int(track_ids[di]) not in self.spots[i].track_ids:
                    allowed[i, di] = False
            if may_join is not None:
                for i, di in np.argwhere(allowed):
                    allowed[i, di] = may_join(self.spots[i], int(di))
            pairs = np.argwhere(allowed)
            if len(pairs):
                order = np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")
                used_spots: set[int] = set()
                for si, di in pairs[order]:
                    if si in used_spots or assigned[di] >= 0:
                        continue
                    used_spots.add(int(si))
                    assigned[di] = si
                    spot = self.spots[si]
                    if join_only is not None and join_only[di]:  # a sighting, not a new position or identity
                        spot.last_seen = now
                        spot.hits += 1
                    else:
                        self._refresh(spot, xyxy[di], anchors[di], classes[di], scores[di], track_ids[di], now)
                    seen.append(spot)
        moved_tracks = set()
        for di in np.flatnonzero(assigned < 0):
            if join_only is not None and join_only[di]:
                continue
            spot = Spot(
                key=next(self._keys),
                ref=anchors[di].astype(np.float64).copy(),
                size=float(sizes[di]),
                box=xyxy[di].astype(np.float64).copy(),
                cls=str(classes[di]),
                started_at=now,
                last_seen=now,
                detected_at=now,
                confidence=float(scores[di]),
                track_ids=[int(track_ids[di])] if track_ids[di] >= 0 else [],
            )
            self.spots.append(spot)
            seen.append(spot)
            if track_ids[di] >= 0:
                moved_tracks.add(int(track_ids[di]))
        seen_ids = {id(s) for s in seen}
        seen = self._merge_duplicates(now, seen, seen_ids, may_merge)
        forgotten = self._forget(now, moved_tracks, {id(s) for s in seen})
        return seen, forgotten

    def _merge_duplicates(
        self, now: float, seen: list[Spot], seen_ids: set[int], may_merge: Callable[[Spot, Spot], bool] | None
    ) -> list[Spot]:
        """Fold a younger spot (seen twice) into an older one at the same place that is not visible right now."""
        spots = self.spots
        if len(spots) < 2:
            return seen
        young_ok = np.array([s.hits >= 2 and not s.pinned for s in spots])
        if not young_ok.any():
            return seen
        refs = np.stack([s.ref for s in spots])
        sizes = np.array([s.size for s in spots])
        started = np.array([s.started_at for s in spots])
        visible = np.array([id(s) in seen_ids for s in spots])
        # candidate (young i, old j): i seen twice, j older, same place and size, not both visible now
        dist = np.linalg.norm(refs[:, None, :] - refs[None, :, :], axis=2)
        ratio = sizes[:, None] / sizes[None, :]
        cand = (
            young_ok[:, None]
            & (started[None, :] < started[:, None])
            & (dist <= self.tolerance * np.minimum(sizes[:, None], sizes[None, :]))
            & (ratio >= 1 / MAX_SIZE_RATIO) & (ratio <= MAX_SIZE_RATIO)
            & ~(visible[:, None] & visible[None, :])
        )
        # a spot of untracked sightings never continues a spot whose car was seen driving away
        departed = np.array([self._departed(s) for s in spots])
        untracked = np.array([not s.track_ids for s in spots])
        cand &= ~(untracked[:, None] & departed[None, :])
        if not cand.any():
            return seen
        merged: set[int] = set()
        for i in np.argsort(-started):  # youngest first
            if i in merged or not cand[i].any():
                continue
            olds = [j for j in np.flatnonzero(cand[i])
                    if j not in merged and (may_merge is None or may_merge(spots[i], spots[j]))]
            if not olds:
                continue
            j = min(olds, key=lambda k: started[k])  # the oldest spot at that place keeps the timer
            young, old = spots[i], spots[j]
            old.box, old.cls, old.confidence = young.box, young.cls, young.confidence
            old.last_seen = max(old.last_seen, young.last_seen)
            old.hits += young.hits
            old.track_ids.extend(t for t in young.track_ids if t not in old.track_ids)
            merged.add(int(i))
            if visible[i]:
                seen_ids.add(id(old))
        if not merged:
            return seen
        self.spots = [s for k, s in enumerate(spots) if k not in merged]
        return [s for s in self.spots if id(s) in seen_ids]

    def near_a_spot(self, anchors: np.ndarray) -> np.ndarray:
        """Per anchor: within ``tolerance`` (of the spot's size) of some spot's reference anchor."""
        if not self.spots or not len(anchors):
            return np.zeros(len(anchors), dtype=bool)
        return (self._anchor_distances(anchors) <= self.tolerance).any(axis=0)

    def _anchor_distances(self, anchors: np.ndarray) -> np.ndarray:
        """[spot, anchor]: distance from the spot's reference anchor, in units of the spot's size."""
        refs = np.stack([s.ref for s in self.spots])
        sizes = np.array([s.size for s in self.spots])
        return np.linalg.norm(refs[:, None, :] - anchors[None, :, :], axis=2) / sizes[:, None]

    def touch(self, spot: Spot, now: float) -> None:
        """The object was seen at its place by other evidence (appearance) though no detection matched it."""
        spot.last_seen = now

    def _refresh(
        self, s: Spot, box: np.ndarray, anchor: np.ndarray, cls: Any, score: float, track_id: int, now: float
    ) -> None:
        if s.hits < MEAN_CAP:
            s.ref = (s.ref * s.hits + anchor) / (s.hits + 1)
        s.box = box.astype(np.float64).copy()
        s.cls = str(cls)
        s.confidence = float(score)
        s.last_seen = now
        s.detected_at = now
        s.hits += 1
        if track_id >= 0 and int(track_id) not in s.track_ids:
            s.track_ids.append(int(track_id))

    def _departed(self, spot: Spot) -> bool:
        """Every track the spot has known was last seen away from it: the object has left."""
        last = [self._last[t] for t in spot.track_ids if t in self._last]
        return bool(last) and all(
            np.linalg.norm(o.anchor - spot.ref) > self.tolerance * spot.size for o in last
        )

    def _track_is_local(self, anchors: np.ndarray, sizes: np.ndarray, track_ids: np.ndarray, now: float) -> np.ndarray:
        """Per detection: was its track already here (within tolerance) at its previous sighting?

        A brand-new track is not local: it first gets its own spot, which is merged into an older spot at
        the same place once it has been seen there twice (see ``_merge_duplicates``).
        """
        local = np.ones(len(anchors), dtype=bool)
        for i, tid in enumerate(track_ids):
            tid = int(tid)
            if tid < 0:
                continue
            last = self._last.get(tid)
            if last is None or np.linalg.norm(anchors[i] - last.anchor) > self.tolerance * last.size:
                local[i] = False
            self._last[tid] = _TrackLast(anchors[i].copy(), float(sizes[i]), now)
        return local

    def _forget(self, now: float, moved_tracks: set[int], seen_ids: set[int]) -> list[Spot]:
        """Drop spots unseen for memory_s, and unpinned spots whose only track has moved on."""
        keep, gone = [], []
        for s in self.spots:
            expired = now - s.last_seen > self.memory_s
            moved_on = (
                not s.pinned
                and id(s) not in seen_ids
                and s.last_seen < now  # touched by other evidence this frame (appearance): still there
                and len(s.track_ids) == 1
                and s.track_ids[0] in moved_tracks
            )
            (gone if expired or moved_on else keep).append(s)
        self.spots = keep
        if len(self._last) > 256:
            horizon = max(self.memory_s, 10.0) * 2
            self._last = {t: o for t, o in self._last.items() if now - o.last_seen <= horizon}
        return gone

    def clear(self) -> list[Spot]:
        gone, self.spots = self.spots, []
        self._last.clear()
        return gone
