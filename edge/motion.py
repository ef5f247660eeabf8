"""Motion gate: skip the detector for a camera whose zones did not change since its last analysed frame.

A parked car, an empty plaza at night, a kerb with nothing on it: most frames of most street cameras show the
same scene as the frame before. The gate compares a small grey copy of each sampled frame (``width`` pixels wide,
blurred) with the copy of the last frame the detector analysed, inside the camera's zones (dilated by
``margin``, so an object about to enter counts); when fewer than ``min_changed`` of those pixels changed by more
than ``pixel_delta`` grey levels, the detector is skipped for that frame. It still runs at least every
``min_rate_s`` seconds, and always on the first frame.

A skipped frame is not "nothing there": the worker hands the tracker and the rules the camera's last detections
again with the new frame and time (edge.worker), so crowd counts hold, dwell timers advance and the rules'
appearance checks see the current frame. Cost: about 0.2 ms per frame at 160 pixels wide.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import CameraConfig, MotionGateConfig


class MotionGate:
    def __init__(self, cfg: MotionGateConfig, camera: CameraConfig) -> None:
        self.cfg = cfg
        self.camera = camera
        self._ref: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._mask_key: tuple[int, int] | None = None
        self._last_run: float | None = None
        self.last_changed: float = 1.0  # fraction of zone pixels changed at the last check
        self.skipped = 0

    def _small(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        sw = min(self.cfg.width, w)
        sh = max(8, round(h * sw / w))
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(small, (3, 3), 0)

    def _zone_mask(self, shape: tuple[int, int]) -> np.ndarray:
        if self._mask is not None and self._mask_key == shape:
            return self._mask
        h, w = shape
        zones = [z for z in self.camera.zones if z.enabled]
        if not zones:
            mask = np.full((h, w), 255, np.uint8)  # no zones: the whole frame matters
        else:
            mask = np.zeros((h, w), np.uint8)
            for z in zones:
                pts = np.round(np.array(z.points, dtype=np.float64) * [w - 1, h - 1]).astype(np.int32)
                cv2.fillPoly(mask, [pts], 255)
            grow = max(1, round(self.cfg.margin * w))
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * grow + 1, 2 * grow + 1)))
        self._mask, self._mask_key = mask, shape
        return mask

    def _decide(self, image: np.ndarray, timestamp: float) -> tuple[bool, np.ndarray, float]:
        """(run the detector?, the frame's small grey copy, share of zone pixels changed), changing nothing."""
        small = self._small(image)
        due = self._last_run is None or timestamp - self._last_run >= self.cfg.min_rate_s or timestamp < self._last_run
        if self._ref is None or self._ref.shape != small.shape:
            return True, small, 1.0
        mask = self._zone_mask(small.shape)
        diff = cv2.absdiff(small, self._ref)
        changed = cv2.countNonZero(
            cv2.bitwise_and(cv2.threshold(diff, self.cfg.pixel_delta, 255, cv2.THRESH_BINARY)[1], mask)
        ) / max(1, cv2.countNonZero(mask))
        return due or changed >= self.cfg.min_changed, small, changed

    def would_detect(self, image: np.ndarray, timestamp: float) -> bool:
        """What ``should_detect`` would answer for this frame, without recording anything (for the scheduler)."""
        return self._decide(image, timestamp)[0]

    def should_detect(self, image: np.ndarray, timestamp: float) -> bool:
        """True: run the detector on this frame (and remember it as the reference). False: reuse."""
        detect, small, self.last_changed = self._decide(image, timestamp)
        if detect:
            self._ref = small
            self._last_run = timestamp
            return True
        self.skipped += 1
        return False
