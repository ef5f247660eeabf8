"""Detections as plain arrays: the one type that flows detector → tracker → rules.

Boxes are ``xyxy`` in source-image pixels (float32, shape (N, 4)). ``class_names`` is
parallel to the other arrays so a consumer never needs the detector's label map.
``track_ids`` is -1 until a tracker assigns ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32, detector's own ids
    class_names: np.ndarray  # (N,) object (str)
    track_ids: np.ndarray = field(default=None)  # (N,) int64, -1 = untracked

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(n)
        self.class_names = np.asarray(self.class_names, dtype=object).reshape(n)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        else:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        """Select rows with a boolean mask, an index array or a slice."""
        return Detections(
            self.xyxy[index],
            self.scores[index],
            self.class_ids[index],
            self.class_names[index],
            self.track_ids[index],
        )

    @staticmethod
    def concatenate(parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections.empty()
        return Detections(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            np.concatenate([p.class_names for p in parts]),
            np.concatenate([p.track_ids for p in parts]),
        )

    @property
    def areas(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def anchors(self, kind: str = "bottom_center") -> np.ndarray:
        """(N, 2) anchor points: ``bottom_center`` (where a vehicle or person touches the ground) or ``center``."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        y = self.xyxy[:, 3] if kind == "bottom_center" else (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2
        return np.stack([x, y], axis=1)
