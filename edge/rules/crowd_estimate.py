"""A crowd estimate that does not saturate: foreground pixels divided by the pixel size of one person.

When people occlude each other a detector stops finding them, but they still cover floor. So, per crowd
zone, at low resolution (``WORK_WIDTH`` px across the frame):

1. **Background**: the per-pixel median (a selection network, ``temporal_median``) of a ring of ``RING``
   frames taken every ``RING_STEP_S`` seconds (a person must stand still for about half the ring's span,
   ~10 s, to fade into it). Pixels inside the boxes of persons counted this update are not learned: where
   the detector or tracker sees a person, the background keeps what it had. The first background exists
   once ``MIN_RING`` frames are in (after 4 s at the defaults); in those first frames each frame's person
   boxes are filled from another of them that shows the floor there, so people who were detected leave
   no ghosts.
2. **Foreground**: pixels differing from the background by more than ``DIFF_THRESHOLD`` grey levels in
   any channel, opened with a 2×2 kernel, inside the zone polygon. More than ``SCENE_CHANGE`` of the zone
   at once is a change of the whole picture (lights, a moved camera): the background starts again.
3. **Person size per row**: the expected person box height at each image row from the camera's
   perspective size model (``scene.sizes``; until that is learned, a provisional line fitted the same way
   from this zone's own confident isolated person boxes), times the median width/height ratio of those
   boxes. A foreground pixel at row y belongs to a person whose box centre is at y, i.e. whose bottom
   ``yb`` solves ``yb = y + h(yb)/2``; its weight is 1 / (that person's box area in pixels).
4. **Calibration**: a person does not fill its box. The weighted foreground inside the box of a
   confident, isolated, unclipped person who is walking (a standing one fades into the background) is
   one person's worth; the running median of those samples (``fill``) converts weighted foreground into
   persons. Until ``MIN_FILL_SAMPLES`` samples exist the prior ``PRIOR_FILL`` applies.

Everything is learned by the running system from its own detections; nothing is fitted to ground truth.
The rule blends this with the fused detection count: the *residual* is the weighted foreground outside
the (slightly enlarged) boxes of the persons already counted from detections and of detected vehicles,
so a detected person is counted once, by its box, and only what the detector misses is added from pixels.

Limits: people who have stood still since before the background was learned, or for longer than ~10 s
without being detected, are background; anything else that moves and is not detected (an undetected car,
a flag, a screen, an on-screen clock) looks like people, so a crowd zone should cover walking areas only
(the rule caps the residual relative to the detections, see edge.rules.crowd).

Uncertainty of the residual R (one standard deviation): Poisson-like variation of how many persons the
pixels hold, the spread of one person's fill (coefficient of variation ``cv``), the calibration's own
standard error, and a systematic ``SYSTEMATIC_REL`` for what the model ignores (occlusion between
undetected people, shadows, moved objects):  σ² = R·(1 + cv²) + (R·se)² + (R·SYSTEMATIC_REL)².
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge.detectors.plausibility import PerspectiveSizeModel, SizeLine
from edge.detectors.postprocess import box_iou

WORK_WIDTH = 320  # analysis width of the whole frame, pixels
RING = 9  # background frames kept
RING_STEP_S = 2.0  # seconds between background frames
MIN_RING = 3  # frames before a background exists
DIFF_THRESHOLD = 25  # grey levels (max over B, G, R) after a 3x3 blur
BOX_MARGIN = 0.1  # counted persons' boxes are enlarged by this fraction of their size on each side
SAMPLE_MIN_SCORE = 0.6  # person boxes this confident teach size, aspect and fill
ISOLATED_IOU = 0.05
EDGE_MARGIN = 0.01
MIN_PROVISIONAL = 10  # person size samples before the provisional size line is used
MIN_ASPECT_SAMPLES = 10
PRIOR_ASPECT = 0.4  # width / height of a person box before it is learned
MIN_FILL_SAMPLES = 5
PRIOR_FILL = 0.6
PRIOR_CV = 0.5
SAMPLE_CAP = 200
SYSTEMATIC_REL = 0.25  # from the interval coverage on the mall footage and the constructed crowds
SCENE_CHANGE = 0.5  # foreground over this fraction of the zone: the whole picture changed, start again


@dataclass(frozen=True, slots=True)
class ForegroundEstimate:
    residual: float  # persons the foreground holds outside the counted boxes
    sigma: float  # one standard deviation of ``residual``
    total: float  # persons the whole zone's foreground holds (diagnostics)
    fill: float  # the calibration in use
    calibrated: bool  # fill learned from own samples (else the prior)


class ForegroundCounter:
    """One crowd zone's background model and calibration."""

    def __init__(self, family: str = "person"):
        self.family = family
        self._now = 0.0
        self.scene_changes = 0
        self._reset(None)
        self.last_foreground: np.ndarray | None = None  # this update's foreground mask (small, uint8 0/1)
        self._small: np.ndarray | None = None  # this update's blurred small crop
        self._weighted: np.ndarray | None = None  # foreground x 1 / person area, or None when not ready
        self._residual: np.ndarray | None = None  # persons' worth per small pixel outside the counted boxes
        self._centre_dy = np.zeros(0)  # per small row: frame pixels from a person's centre down to their feet
        self.aspects: deque[float] = deque(maxlen=4 * SAMPLE_CAP)
        self.fills: deque[float] = deque(maxlen=SAMPLE_CAP)
        self.size_samples: deque[tuple[float, float]] = deque(maxlen=4 * SAMPLE_CAP)
        self._provisional: SizeLine | None = None
        self._new_size_samples = 0
        self._fill_version = self._aspect_version = 0  # sample counters: medians are recomputed only on news
        self._fill_cache: tuple[int, float, float] = (-1, PRIOR_FILL, PRIOR_CV)
        self._aspect_cache: tuple[int, float] = (-1, PRIOR_ASPECT)

    def _reset(self, key: tuple | None) -> None:
        self._key = key
        self.ring: deque[np.ndarray] = deque(maxlen=RING)
        self.bg: np.ndarray | None = None
        self.last_added = -1e18
        self._mask: np.ndarray | None = None
        self._young: list[tuple[np.ndarray, np.ndarray]] = []  # first frames with their person masks

    # ------------------------------------------------------------------ per update

    def observe(
        self,
        image: np.ndarray | None,
        now: float,
        polygon_px: np.ndarray,
        frame_size: tuple[int, int],
        sizes: PerspectiveSizeModel | None,
        frame_boxes: np.ndarray,
        frame_scores: np.ndarray,
        moving: np.ndarray,
    ) -> bool:
        """Take one frame: learn person shapes from this frame's person boxes (whole frame: ``frame_boxes``,
        ``frame_scores``, ``moving`` = its track moved since its last sighting), compute the zone's foreground
        and the per-row weights. ``polygon_px``: the zone's vertices in pixels. Returns whether ``support`` and
        ``estimate`` can be used for this frame (an image, a background and a person size are there).
        ``estimate`` must follow (it also teaches the background)."""
        w, h = frame_size
        self._now = now
        self._small = None
        self._weighted = None
        self._residual = None
        sample_ok = self._learn_shapes(frame_boxes, frame_scores, frame_size)
        if image is None:
            return False
        scale = min(1.0, WORK_WIDTH / float(w))
        x0, y0 = np.floor(polygon_px.min(axis=0)).astype(int).clip(0)
        x1, y1 = np.ceil(polygon_px.max(axis=0)).astype(int)
        x1, y1 = min(int(x1), w), min(int(y1), h)
        sw, sh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        key = (frame_size, int(x0), int(y0), int(x1), int(y1))
        if key != self._key:
            self._reset(key)
        small = cv2.resize(image[y0:y1, x0:x1], (sw, sh), interpolation=cv2.INTER_AREA)
        self._small = cv2.GaussianBlur(small, (3, 3), 0)
        sx, sy = sw / max(x1 - x0, 1), sh / max(y1 - y0, 1)
        self._origin = np.array([x0, y0, x0, y0], dtype=np.float64)
        self._to_small = np.array([sx, sy, sx, sy])
        if self._mask is None:
            self._mask = np.zeros((sh, sw), dtype=np.uint8)
            pts = np.round((polygon_px - [x0, y0]) * [sx, sy]).astype(np.int32)
            cv2.fillPoly(self._mask, [pts], 1)
        self.last_foreground = None
        if self.bg is None and now - self.last_added >= RING_STEP_S - 0.01 and len(self.ring) + 1 >= MIN_RING:
            self._learn_background(self._small, now, frame_boxes)  # the first background includes this frame
        if self.bg is None:
            return False
        b, g, r = cv2.split(cv2.absdiff(self._small, self.bg))
        diff = cv2.max(cv2.max(b, g), r)
        fg = (diff > DIFF_THRESHOLD).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        fg &= self._mask
        if fg.sum() > SCENE_CHANGE * max(int(self._mask.sum()), 1):
            self.scene_changes += 1  # the picture changed as a whole (light, camera moved): learn it again
            self._reset(key)
            return False
        self.last_foreground = fg
        heights = self._row_heights(sizes, y0, sh, sy, h)
        if heights is None:
            return False
        aspect = self._aspect()
        box_h = heights * h * sy  # expected person box height per small row, small pixels
        weight = 1.0 / np.maximum(box_h * (aspect * heights * h * sx), 1.0)  # 1 / person box area
        weighted = fg.astype(np.float32) * weight[:, None].astype(np.float32)
        self._weighted = weighted
        self._centre_dy = heights * h / 2
        for i in np.flatnonzero(sample_ok & moving):
            bx = self._box_small(frame_boxes[i])
            if bx[0] < 0 or bx[1] < 0 or bx[2] > sw or bx[3] > sh:
                continue
            self.fills.append(float(weighted[bx[1]:bx[3], bx[0]:bx[2]].sum()))
            self._fill_version += 1
        return True

    @property
    def fill(self) -> float:
        """Weighted foreground of one walking person (the calibration), or the prior until it is learned."""
        return self._calibration()[0]

    def _calibration(self) -> tuple[float, float, float]:
        """(fill, coefficient of variation of one person's fill, relative standard error of the fill)."""
        if len(self.fills) < MIN_FILL_SAMPLES:
            return PRIOR_FILL, PRIOR_CV, PRIOR_CV
        if self._fill_cache[0] != self._fill_version:  # medians are recomputed only when samples came in
            fills = np.asarray(self.fills, dtype=np.float64)
            fill = max(float(np.median(fills)), 0.05)
            cv = float(np.median(np.abs(fills - fill))) * 1.4826 / fill
            self._fill_cache = (self._fill_version, fill, cv)
        _, fill, cv = self._fill_cache
        return fill, cv, 1.25 * cv / float(np.sqrt(len(self.fills)))

    def _aspect(self) -> float:
        if len(self.aspects) < MIN_ASPECT_SAMPLES:
            return PRIOR_ASPECT
        if self._aspect_cache[0] != self._aspect_version:
            self._aspect_cache = (self._aspect_version, float(np.median(np.asarray(self.aspects))))
        return self._aspect_cache[1]

    def support(self, boxes: np.ndarray) -> np.ndarray:
        """Persons' worth of foreground inside each box (1.0 ≈ one walking person); zeros before ``observe``."""
        out = np.zeros(len(boxes))
        if self._weighted is None:
            return out
        sh, sw = self._weighted.shape
        fill = self.fill
        for i, b in enumerate(boxes):
            bx = self._box_small(b)
            xa, ya, xb, yb = max(bx[0], 0), max(bx[1], 0), min(bx[2], sw), min(bx[3], sh)
            if xb > xa and yb > ya:
                out[i] = float(self._weighted[ya:yb, xa:xb].sum()) / fill
        return out

    def estimate(self, counted: np.ndarray, exclude: np.ndarray | None = None) -> ForegroundEstimate | None:
        """The residual outside ``counted`` (boxes of the persons already counted) and ``exclude`` (boxes of
        other detected objects: a passing car is foreground too), then learn the background from this frame
        with the counted persons left out. None when ``observe`` returned False."""
        weighted = self._weighted
        result = None
        if weighted is not None:
            sh, sw = weighted.shape
            fill, cv, se = self._calibration()
            outside = np.ones((sh, sw), dtype=bool)
            boxes = counted if exclude is None or not len(exclude) else np.concatenate([counted, exclude])
            for b in boxes:
                bw, bh = b[2] - b[0], b[3] - b[1]
                gx = self._box_small(np.array([b[0] - BOX_MARGIN * bw, b[1] - BOX_MARGIN * bh,
                                               b[2] + BOX_MARGIN * bw, b[3] + BOX_MARGIN * bh]))
                outside[max(gx[1], 0):max(gx[3], 0), max(gx[0], 0):max(gx[2], 0)] = False
            self._residual = np.where(outside, weighted, 0.0).astype(np.float32) / np.float32(fill)
            residual = float(weighted[outside].sum()) / fill
            var = residual * (1 + cv * cv) + (residual * se) ** 2 + (residual * SYSTEMATIC_REL) ** 2
            result = ForegroundEstimate(residual, float(np.sqrt(var)), float(weighted.sum()) / fill, fill,
                                        len(self.fills) >= MIN_FILL_SAMPLES)
        if self._small is not None:
            self._learn_background(self._small, self._now, counted)
        return result

    def residual_points(self, feet: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Where the last ``estimate``'s residual is: frame-pixel points (K, 2), one per foreground pixel outside
        the counted boxes, and the persons' worth of each (K,), summing to the residual. ``feet``: the point is
        where a person centred on that pixel stands (half the expected person height below it), else the pixel."""
        r = self._residual
        if r is None:
            return np.zeros((0, 2)), np.zeros(0)
        ys, xs = np.nonzero(r)
        x = self._origin[0] + (xs + 0.5) / self._to_small[0]
        y = self._origin[1] + (ys + 0.5) / self._to_small[1] + (self._centre_dy[ys] if feet else 0.0)
        return np.stack([x, y], axis=1), r[ys, xs].astype(np.float64)

    def _box_small(self, box: np.ndarray) -> np.ndarray:
        return np.round((np.asarray(box, dtype=np.float64) - self._origin) * self._to_small).astype(int)

    # ------------------------------------------------------------------ learning

    def _learn_background(self, small: np.ndarray, now: float, counted: np.ndarray) -> None:
        if now - self.last_added < RING_STEP_S - 0.01:
            return
        sh, sw = small.shape[:2]
        persons = np.zeros((sh, sw), dtype=bool)
        for b in counted:  # where a person is counted, the background must not learn the person
            bx = self._box_small(b)
            persons[max(bx[1], 0):max(min(bx[3], sh), 0), max(bx[0], 0):max(min(bx[2], sw), 0)] = True
        frame = small
        if self.bg is not None:
            if persons.any():
                frame = small.copy()
                frame[persons] = self.bg[persons]
            self.ring.append(frame)
        else:  # young ring: fill each frame's person pixels from another frame that shows the floor there
            self._young.append((small.copy(), persons))
            self.ring.append(small)
            if len(self._young) >= MIN_RING:
                frames = [f for f, _ in self._young]
                for i, (f, m) in enumerate(self._young):
                    todo = m.copy()
                    for j in sorted(range(len(frames)), key=lambda j: abs(j - i)):
                        if j == i or not todo.any():
                            continue
                        take = todo & ~self._young[j][1]
                        f[take] = frames[j][take]
                        todo &= ~take
                self.ring = deque(frames, maxlen=RING)
                self._young = []
        self.last_added = now
        if len(self.ring) >= MIN_RING:
            self.bg = temporal_median(list(self.ring))

    def _learn_shapes(self, boxes: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Aspect ratio and provisional size samples from confident, isolated, unclipped boxes; returns that mask."""
        n = len(boxes)
        if n == 0:
            return np.zeros(0, dtype=bool)
        w, h = frame_size
        nb = boxes / np.array([w, h, w, h], dtype=np.float32)
        unclipped = ((nb[:, 0] > EDGE_MARGIN) & (nb[:, 1] > EDGE_MARGIN)
                     & (nb[:, 2] < 1 - EDGE_MARGIN) & (nb[:, 3] < 1 - EDGE_MARGIN))
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        ok = (scores >= SAMPLE_MIN_SCORE) & unclipped & (iou.max(axis=1, initial=0.0) <= ISOLATED_IOU)
        for i in np.flatnonzero(ok):
            bw, bh = float(boxes[i, 2] - boxes[i, 0]), float(boxes[i, 3] - boxes[i, 1])
            if bh > 0:
                self.aspects.append(bw / bh)
                self._aspect_version += 1
                self.size_samples.append((float(nb[i, 3]), float(nb[i, 3] - nb[i, 1])))
                self._new_size_samples += 1
        if len(self.size_samples) >= MIN_PROVISIONAL and (self._provisional is None or self._new_size_samples >= 10):
            arr = np.asarray(self.size_samples, dtype=np.float64)
            self._provisional = SizeLine.fit(arr[:, 0], arr[:, 1])
            self._new_size_samples = 0
        return ok

    def _row_heights(self, sizes: PerspectiveSizeModel | None, y0: int, sh: int, sy: float,
                     frame_h: int) -> np.ndarray | None:
        """Expected normalized person box height for a person centred on each small row."""
        centre = (y0 + (np.arange(sh) + 0.5) / sy) / float(frame_h)

        def height(rows: np.ndarray) -> np.ndarray | None:
            if sizes is not None:
                got = sizes.expected_height(self.family, rows)
                if got is not None:
                    return np.asarray(got, dtype=np.float64)
            return None if self._provisional is None else self._provisional(rows)

        hh = height(centre)
        if hh is None:
            return None
        for _ in range(3):  # bottom row of a person centred at `centre`: yb = centre + h(yb) / 2
            hh = height(centre + hh / 2)
        return np.maximum(hh, 1e-3)


# Median selection networks (compare-exchange pairs; the median ends at index n // 2), from N. Devillard,
# "Fast median search: an ANSI C implementation" (opt_med3/5/7/9)
_NETWORKS = {
    3: [(0, 1), (1, 2), (0, 1)],
    5: [(0, 1), (3, 4), (0, 3), (1, 4), (1, 2), (2, 3), (1, 2)],
    7: [(0, 5), (0, 3), (1, 6), (2, 4), (0, 1), (3, 5), (2, 6), (2, 3), (3, 6), (4, 5), (1, 4), (1, 3), (3, 4)],
    9: [(1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7), (3, 6),
        (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2)],
}


def temporal_median(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of the newest odd number of equally shaped uint8 frames (an even count would average
    the middle two and leave half-ghosts). Up to nine frames go through a selection network of element-wise
    min/max: on a 320x240 colour frame ~0.3 ms for nine, against ~20 ms for ``np.median``."""
    n = len(frames) if len(frames) % 2 else len(frames) - 1
    frames = frames[-n:]
    if n not in _NETWORKS:
        return frames[0].copy() if n == 1 else np.partition(np.stack(frames), n // 2, axis=0)[n // 2]
    p = [f.copy() for f in frames]
    for i, j in _NETWORKS[n]:
        lo = np.minimum(p[i], p[j])
        np.maximum(p[i], p[j], out=p[j])
        p[i] = lo
    return p[n // 2]
