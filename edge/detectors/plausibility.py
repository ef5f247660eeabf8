"""The per-camera junk-box filter between detector and tracker (``FrontEnd``), with its size model.

A fixed camera sees every object class at a size that depends on where it stands: a person at the
bottom of the frame is taller than one near the horizon, and no person is taller than half a street
scene. COCO detectors on street footage emit boxes that break this (a "car 0.85" over the whole road,
a "person" box around a group), and every rule downstream would count or time them. So each camera
keeps a ``PerspectiveSizeModel``: for each class family, the expected box height as a straight line in
the box's bottom row (a flat ground seen by a pinhole camera gives exactly that), fitted robustly from
the camera's own confident, isolated, unclipped detections. Until it has enough samples, class-family
fallback limits apply. What is dropped, and why, is counted per reason (``FrontEnd.drops``).
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from edge.config import PlausibilityConfig
from edge.detections import Detections
from edge.detectors.postprocess import box_iou
from edge.labels import class_family

SAMPLE_CAP = 400  # samples kept per family (newest): the model follows slow changes, memory stays bounded
REFIT_EVERY = 20  # new samples between refits
MIN_ROW_SPAN = 0.15  # rows must spread over this much of the frame before a slope is fitted
EDGE_MARGIN = 0.01  # a box this close to the frame edge may be cut off: it teaches nothing about size
ISOLATED_IOU = 0.05  # a sample must overlap no other box more than this (occluded boxes are smaller)


class SizeLine:
    """Expected normalized box height as a function of the normalized bottom row: h(y) = a + b·y."""

    def __init__(self, a: float, b: float, floor: float):
        self.a, self.b, self.floor = a, b, floor

    def __call__(self, y: np.ndarray | float) -> np.ndarray:
        return np.maximum(self.a + self.b * np.asarray(y, dtype=np.float64), self.floor)

    @classmethod
    def fit(cls, rows: np.ndarray, heights: np.ndarray) -> SizeLine:
        """Least squares with two rounds of trimming at 2.5 robust sigmas (outliers: junk, partial boxes)."""
        keep = np.ones(len(rows), dtype=bool)
        a, b = float(np.median(heights)), 0.0
        slope = np.ptp(rows) >= MIN_ROW_SPAN
        for _ in range(3):
            if slope and keep.sum() >= 5:
                b, a = np.polyfit(rows[keep], heights[keep], 1)
                b = max(float(b), 0.0)  # things never grow towards the horizon
                a = float(a) if b > 0 else float(np.median(heights[keep]))
            else:
                a, b = float(np.median(heights[keep])), 0.0
            resid = heights - (a + b * rows)
            mad = float(np.median(np.abs(resid[keep]))) * 1.4826 + 1e-6
            keep = np.abs(resid) <= 2.5 * max(mad, 0.1 * float(np.median(heights)))
        return cls(a, b, floor=float(np.percentile(heights[keep], 5)) * 0.5 if keep.any() else 0.0)

    @classmethod
    def through(cls, points: list[tuple[float, float]]) -> SizeLine:
        """A line through configured (row, height) points (least squares when more than two)."""
        pts = np.asarray(points, dtype=np.float64)
        b, a = np.polyfit(pts[:, 0], pts[:, 1], 1)
        return cls(float(a), float(b), floor=float(pts[:, 1].min()) * 0.5)


class PerspectiveSizeModel:
    """Per class family: samples of (bottom row, height) and the line fitted through them."""

    def __init__(self, cfg: PlausibilityConfig):
        self.cfg = cfg
        self.samples: dict[str, deque[tuple[float, float]]] = {}
        self.lines: dict[str, SizeLine] = {f: SizeLine.through(p) for f, p in (cfg.heights or {}).items()}
        self._fixed = set(self.lines)
        self._since_fit: Counter = Counter()

    def line(self, family: str) -> SizeLine | None:
        return self.lines.get(family)

    def expected_height(self, family: str, rows: np.ndarray | float) -> np.ndarray | None:
        """Expected normalized box height at these bottom rows, or None while the family is not learned yet."""
        line = self.lines.get(family)
        return None if line is None else line(rows)

    def learn(self, dets: Detections, frame_size: tuple[int, int]) -> None:
        if not self.cfg.perspective or not len(dets):
            return
        w, h = frame_size
        box = dets.xyxy / np.array([w, h, w, h], dtype=np.float32)
        unclipped = ((box[:, 0] > EDGE_MARGIN) & (box[:, 1] > EDGE_MARGIN)
                     & (box[:, 2] < 1 - EDGE_MARGIN) & (box[:, 3] < 1 - EDGE_MARGIN))
        iou = box_iou(dets.xyxy, dets.xyxy)
        np.fill_diagonal(iou, 0.0)
        isolated = iou.max(axis=1, initial=0.0) <= ISOLATED_IOU
        ok = np.flatnonzero((dets.scores >= self.cfg.sample_min_score) & unclipped & isolated)
        for i in ok:
            family = class_family(dets.class_names[i])
            if family in self._fixed:
                continue
            self.samples.setdefault(family, deque(maxlen=SAMPLE_CAP)).append(
                (float(box[i, 3]), float(box[i, 3] - box[i, 1]))
            )
            self._since_fit[family] += 1
        for family, n in list(self._since_fit.items()):
            samples = self.samples[family]
            if len(samples) >= self.cfg.min_samples and (n >= REFIT_EVERY or family not in self.lines):
                arr = np.asarray(samples, dtype=np.float64)
                self.lines[family] = SizeLine.fit(arr[:, 0], arr[:, 1])
                self._since_fit[family] = 0


class FrontEnd:
    """One camera's front end: ``process(dets, frame_size)`` → the detections the tracker may see."""

    def __init__(self, cfg: PlausibilityConfig):
        self.cfg = cfg
        self.sizes = PerspectiveSizeModel(cfg)
        self.drops: Counter = Counter()  # since start, by reason
        self.last_drops: Counter = Counter()  # in the last processed frame

    def process(self, dets: Detections, frame_size: tuple[int, int]) -> Detections:
        self.last_drops = Counter()
        if not self.cfg.enabled or not len(dets):
            return dets
        reasons = self.reasons(dets, frame_size)
        keep = np.array([r is None for r in reasons], dtype=bool)
        self.last_drops = Counter(f"{dets.class_names[i]}:{r}" for i, r in enumerate(reasons) if r is not None)
        self.drops.update(r for r in reasons if r is not None)
        kept = dets if keep.all() else dets[keep]
        self.sizes.learn(kept, frame_size)
        return kept

    def reasons(self, dets: Detections, frame_size: tuple[int, int]) -> list[str | None]:
        """Per box: None (plausible) or why it is dropped."""
        cfg = self.cfg
        w, h = frame_size
        box = dets.xyxy / np.array([w, h, w, h], dtype=np.float32)
        bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        families = np.array([class_family(n) for n in dets.class_names], dtype=object)
        out: list[str | None] = [None] * len(dets)
        for i in range(len(dets)):
            if bw[i] >= cfg.frame_box and bh[i] >= cfg.frame_box:
                out[i] = "frame_box"
            elif bh[i] > cfg.max_height.get(families[i], cfg.max_height.get("*", 1.0)):
                out[i] = "too_tall_for_class"
        if cfg.group_boxes:
            for i in np.flatnonzero(_contains_two_or_more(dets.xyxy, families)):
                out[i] = out[i] or "group_box"
        for family in set(families):
            expected = self.sizes.expected_height(family, box[families == family, 3])
            if expected is None:
                continue
            for k, i in enumerate(np.flatnonzero(families == family)):
                if out[i] is None and bh[i] > cfg.max_ratio * expected[k]:
                    out[i] = "too_large_for_row"
                elif out[i] is None and bh[i] < cfg.min_ratio * expected[k]:
                    out[i] = "too_small_for_row"
        return out


def _contains_two_or_more(xyxy: np.ndarray, families: np.ndarray) -> np.ndarray:
    """Per box: at least two other boxes of its family lie (80 %+ of their area) inside it."""
    n = len(xyxy)
    if n < 3:
        return np.zeros(n, dtype=bool)
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(xyxy[:, 2:] - xyxy[:, :2], 0, None), axis=1)
    inside = inter / np.maximum(area[None, :], 1e-9) >= 0.8  # [i, j]: box j is inside box i
    np.fill_diagonal(inside, False)
    inside &= families[:, None] == families[None, :]
    inside &= area[None, :] < area[:, None] * 0.7  # the contained boxes are clearly smaller
    return inside.sum(axis=1) >= 2
