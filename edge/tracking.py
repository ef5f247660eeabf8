"""ByteTrack-style multi-object tracker for 1-5 fps sampling (our own; see docs/detectors.md for why).

Two association passes (high-score boxes first, then low-score boxes against still-unmatched tracks),
Hungarian assignment on class-aware IoU (see ``edge.labels.CLASS_FAMILIES``) against motion-predicted boxes, and a
constant-velocity model in seconds so irregular frame gaps are handled. Returns every input detection, in
input order, with ``track_ids`` set for those that belong to a track (-1 otherwise); boxes are the
detector's, not smoothed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.config import TrackerConfig
from edge.detections import Detections
from edge.detectors.postprocess import box_iou
from edge.labels import class_family

VELOCITY_GAIN = 0.5  # alpha-beta style: how much of a new velocity measurement is trusted
VELOCITY_DECAY_S = 2.0  # a lost track's velocity fades with this time constant so it does not drift away



@dataclass
class Track:
    track_id: int
    family: str  # class_family() of the class it was started with
    box: np.ndarray  # xyxy at last_seen
    velocity: np.ndarray  # xyxy units per second
    last_seen: float
    hits: int = 1

    def predict(self, timestamp: float) -> np.ndarray:
        dt = max(0.0, timestamp - self.last_seen)
        tau = VELOCITY_DECAY_S
        travel = tau * (1 - math.exp(-dt / tau))  # integral of the decaying velocity
        return self.box + self.velocity * travel

    def update(self, box: np.ndarray, timestamp: float) -> None:
        dt = timestamp - self.last_seen
        if dt > 0:
            measured = (box - self.box) / dt
            self.velocity = self.velocity + VELOCITY_GAIN * (measured - self.velocity)
        self.box = box.astype(np.float32)
        self.last_seen = timestamp
        self.hits += 1


class ByteTracker:
    """One tracker per camera. ``update`` must be called with non-decreasing timestamps (seconds)."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 1

    def _associate(
        self, tracks: list[Track], dets: Detections, idx: np.ndarray, timestamp: float
    ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        """Matches (track index, detection index), unmatched track indices, unmatched detection indices."""
        if not tracks or not len(idx):
            return [], list(range(len(tracks))), list(idx)
        pred = np.stack([t.predict(timestamp) for t in tracks])
        iou = box_iou(pred, dets.xyxy[idx])
        det_families = np.array([class_family(n) for n in dets.class_names[idx]], dtype=object)
        same_class = np.array([t.family for t in tracks], dtype=object)[:, None] == det_families[None, :]
        iou = np.where(same_class, iou, 0.0)
        rows, cols = linear_sum_assignment(1.0 - iou)
        matches = [(r, int(idx[c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.cfg.match_iou]
        mt = {r for r, _ in matches}
        md = {d for _, d in matches}
        return matches, [i for i in range(len(tracks)) if i not in mt], [int(d) for d in idx if int(d) not in md]

    def update(self, detections: Detections, timestamp: float) -> Detections:
        cfg = self.cfg
        dets = detections[np.arange(len(detections))]  # copy; never mutate the caller's arrays
        dets.track_ids[:] = -1
        high = np.flatnonzero(dets.scores >= cfg.high_score)
        low = np.flatnonzero((dets.scores >= cfg.low_score) & (dets.scores < cfg.high_score))

        # pass 1: high-score boxes against every live track
        matches, rest, unmatched_high = self._associate(self.tracks, dets, high, timestamp)
        # pass 2: low-score boxes against tracks that are still unmatched (occluded / blurred objects)
        rest_tracks = [self.tracks[i] for i in rest]
        matches2, still, _ = self._associate(rest_tracks, dets, low, timestamp)
        for ti, di in matches:
            self._assign(self.tracks[ti], dets, di, timestamp)
        for ti, di in matches2:
            self._assign(rest_tracks[ti], dets, di, timestamp)

        # unmatched tracks: drop one-frame tentatives at once, others after max_age_s
        unmatched = [rest_tracks[i] for i in still]
        gone = {id(t) for t in unmatched if t.hits < 2 or timestamp - t.last_seen > cfg.max_age_s}
        self.tracks = [t for t in self.tracks if id(t) not in gone]

        for di in unmatched_high:
            if dets.scores[di] >= cfg.new_track_score:
                t = Track(self._next_id, class_family(dets.class_names[di]), dets.xyxy[di].copy(),
                          np.zeros(4, dtype=np.float32), timestamp)
                self._next_id += 1
                self.tracks.append(t)
                dets.track_ids[di] = t.track_id
        return dets

    @staticmethod
    def _assign(track: Track, dets: Detections, di: int, timestamp: float) -> None:
        track.update(dets.xyxy[di], timestamp)
        dets.track_ids[di] = track.track_id
