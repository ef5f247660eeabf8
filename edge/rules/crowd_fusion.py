"""Count people, not boxes: person detections fused over time with the tracker's ids.

A detector at 1 fps misses a given person in many frames (occluded, blurred, turned away), so a per-frame
box count flickers well below the truth. ``TrackFusion`` remembers every person track it has seen and,
in each update, counts:

- the person boxes of this frame, once each: a box that overlaps another of this frame by IoU ≥
  ``DUPLICATE_IOU`` (a box on a box, a tile-seam duplicate) is the same person;
- plus every *held* track: confirmed (seen at least twice), not in this frame, last seen at most
  ``hold_s`` ago, whose position predicted with its own velocity is still inside the frame and whose
  predicted box does not overlap a box of this frame (then that box is the same person under a new id).

Membership in the zone uses the zone's own anchor rule on the (predicted) boxes, exactly like a box of
the current frame. The fusion also keeps, per track, where it has been standing since when, so it can
report how many of the counted persons have been stationary for at least ``stationary_s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.detections import Detections
from edge.detectors.postprocess import box_iou

DUPLICATE_IOU = 0.6  # two person boxes of one frame overlapping this much are one person (NMS keeps < 0.45)
SAME_PERSON_IOU = 0.3  # a held track's predicted box overlapping a current box this much is that box's person
SAME_PERSON_DIST = 0.35  # ... or with its bottom centre this close (in box heights) at a similar size
VELOCITY_GAIN = 0.5  # as the tracker: how much of a new velocity measurement is trusted
VELOCITY_DECAY_S = 2.0  # a held track's velocity fades with this time constant (people stop, turn)
FORGET_S = 30.0  # tracks unseen this long are dropped from memory
STATIONARY_DRIFT = 0.5  # a person has not moved while the anchor stays within this many box widths


@dataclass(slots=True)
class _Track:
    box: np.ndarray  # xyxy at last_seen
    velocity: np.ndarray  # xyxy per second
    last_seen: float
    hits: int
    still_ref: np.ndarray  # (2,) bottom centre where the current stationary period began
    still_since: float

    def predict(self, now: float) -> np.ndarray:
        dt = max(0.0, now - self.last_seen)
        travel = VELOCITY_DECAY_S * (1 - math.exp(-dt / VELOCITY_DECAY_S))
        return self.box + self.velocity * travel


@dataclass(frozen=True, slots=True)
class FusedPersons:
    """One update's fused persons in the zone: this frame's boxes (deduplicated), then the held tracks."""

    boxes: np.ndarray  # (N, 4) xyxy pixels, current boxes first
    held_mask: np.ndarray  # (N,) bool: a held track, not a box of this frame
    still: np.ndarray  # (N,) bool: standing still for at least stationary_s
    raw: int  # person boxes of this frame in the zone, before deduplication
    frame_boxes: np.ndarray  # (M, 4) this frame's person boxes of the whole frame (deduplicated)
    frame_scores: np.ndarray  # (M,)
    moving: np.ndarray  # (M,) bool: that box's track moved since its previous sighting

    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def current(self) -> int:
        return int((~self.held_mask).sum())

    @property
    def held(self) -> int:
        return int(self.held_mask.sum())

    @property
    def stationary(self) -> int:
        return int(self.still.sum())

    def without_held(self, drop: np.ndarray) -> FusedPersons:
        """The same persons minus the held tracks flagged in ``drop`` (a bool mask over the held ones)."""
        keep = np.ones(len(self.boxes), dtype=bool)
        keep[np.flatnonzero(self.held_mask)[np.asarray(drop, dtype=bool)]] = False
        return FusedPersons(self.boxes[keep], self.held_mask[keep], self.still[keep], self.raw, self.frame_boxes,
                            self.frame_scores, self.moving)


class TrackFusion:
    """Per crowd zone: memory of person tracks and the fused count."""

    def __init__(self, hold_s: float, stationary_s: float):
        self.hold_s = float(hold_s)
        self.stationary_s = float(stationary_s)
        self.tracks: dict[int, _Track] = {}

    def configure(self, hold_s: float, stationary_s: float) -> None:
        self.hold_s, self.stationary_s = float(hold_s), float(stationary_s)

    def update(
        self, persons: Detections, now: float, frame_size: tuple[int, int], member: Callable[[np.ndarray], np.ndarray]
    ) -> FusedPersons:
        """``persons``: this frame's boxes of the watched classes (whole frame, tracked); ``member(xyxy)`` → bool
        mask of the boxes that belong to the zone."""
        keep = _dedupe(persons.xyxy, persons.scores)
        boxes, scores, tids = persons.xyxy[keep], persons.scores[keep], persons.track_ids[keep]
        raw = int(member(persons.xyxy).sum()) if len(persons) else 0
        moving = np.zeros(len(boxes), dtype=bool)
        current_ids: set[int] = set()
        for i, (box, tid) in enumerate(zip(boxes, tids, strict=True)):
            if tid >= 0:
                current_ids.add(int(tid))
                moving[i] = self._observe(int(tid), box, now)
        held_boxes, held_ids = [], []
        w, h = frame_size
        for tid, tr in list(self.tracks.items()):
            age = now - tr.last_seen
            if age > FORGET_S:
                del self.tracks[tid]
                continue
            if tid in current_ids or tr.hits < 2 or age > self.hold_s:
                continue
            pred = tr.predict(now)
            if not (0 <= (pred[0] + pred[2]) / 2 <= w and 0 <= pred[3] <= h * 1.02):
                continue  # walked out of the picture
            held_boxes.append(pred)
            held_ids.append(tid)
        held = np.asarray(held_boxes, dtype=np.float32).reshape(-1, 4)
        if len(held) and len(boxes):
            same = _same_person(held, boxes)
            held = held[~same]
            held_ids = [t for t, s in zip(held_ids, same, strict=True) if not s]
        in_cur = member(boxes) if len(boxes) else np.zeros(0, dtype=bool)
        in_held = member(held) if len(held) else np.zeros(0, dtype=bool)
        ids = [int(t) for t in tids[in_cur]] + [t for t, m in zip(held_ids, in_held, strict=True) if m]
        still = np.array([t >= 0 and now - self.tracks[t].still_since >= self.stationary_s for t in ids], dtype=bool)
        return FusedPersons(
            boxes=np.concatenate([boxes[in_cur], held[in_held]]).astype(np.float32).reshape(-1, 4),
            held_mask=np.concatenate([np.zeros(int(in_cur.sum()), bool), np.ones(int(in_held.sum()), bool)]),
            still=still.reshape(-1),
            raw=raw,
            frame_boxes=boxes,
            frame_scores=scores,
            moving=moving,
        )

    def _observe(self, tid: int, box: np.ndarray, now: float) -> bool:
        """Update one track with this frame's box. Returns whether it moved (≥ a quarter of its height)."""
        box = box.astype(np.float64)
        foot = np.array([(box[0] + box[2]) / 2, box[3]])
        width = max(float(box[2] - box[0]), 1.0)
        tr = self.tracks.get(tid)
        if tr is None:
            self.tracks[tid] = _Track(box, np.zeros(4), now, 1, foot, now)
            return False
        dt = now - tr.last_seen
        step = float(np.linalg.norm(((box - tr.box)[:2] + (box - tr.box)[2:]) / 2))
        if dt > 0:
            tr.velocity = tr.velocity + VELOCITY_GAIN * ((box - tr.box) / dt - tr.velocity)
        if np.linalg.norm(foot - tr.still_ref) > STATIONARY_DRIFT * width:
            tr.still_ref, tr.still_since = foot, now
        moved = step >= 0.25 * max(float(box[3] - box[1]), 1.0)
        tr.box, tr.last_seen, tr.hits = box, now, tr.hits + 1
        return moved


def _dedupe(xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of boxes to keep: of two boxes overlapping by IoU ≥ DUPLICATE_IOU the higher score stays."""
    n = len(xyxy)
    if n < 2:
        return np.arange(n)
    iou = box_iou(xyxy, xyxy)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if all(iou[i, j] < DUPLICATE_IOU for j in keep):
            keep.append(int(i))
    return np.array(sorted(keep), dtype=np.int64)


def _same_person(held: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per held (predicted) box: does a box of this frame show the same person under another id? Overlap by
    IoU ≥ SAME_PERSON_IOU, or a bottom centre within SAME_PERSON_DIST of the box height at a similar height."""
    iou = box_iou(held, boxes)
    fh = np.array([(held[:, 0] + held[:, 2]) / 2, held[:, 3]]).T
    fb = np.array([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]]).T
    hh = np.maximum(held[:, 3] - held[:, 1], 1.0)
    hb = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    dist = np.linalg.norm(fh[:, None, :] - fb[None, :, :], axis=2) / np.maximum(hh[:, None], hb[None, :])
    ratio = hh[:, None] / hb[None, :]
    near = (dist <= SAME_PERSON_DIST) & (ratio >= 1 / 1.5) & (ratio <= 1.5)
    return ((iou >= SAME_PERSON_IOU) | near).any(axis=1)
