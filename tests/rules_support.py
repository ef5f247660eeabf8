"""Test support for the rule tests on real footage: the edge worker's own detector and tracker over a clip.

``replay_clip`` samples a clip at a fixed rate of file time and runs each sample through exactly what
``edge.worker`` runs: ``build_detector(DetectorConfig).detect_batch(images, [camera tiling])`` then one
``ByteTracker(TrackerConfig)`` per clip. The rule tests cache the result per clip for the session
(detection is the slow part) and build fresh RuleEngines over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.config import TilingConfig, TrackerConfig
from edge.detections import Detections
from edge.detectors import ConfiguredDetector
from edge.tracking import ByteTracker

EPOCH = 1_763_780_400.0  # 2025-11-22 03:00 UTC: the replay's wall clock starts here


@dataclass
class Replay:
    frame_size: tuple[int, int]
    timestamps: list[float]  # file time in seconds
    detections: list[Detections]  # tracked: what the rules see (track_ids set)
    raw: list[Detections]  # the detector's output before tracking
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # sample index → BGR image, when kept


def replay_clip(path: Path, fps: float, detector: ConfiguredDetector, tiling: TilingConfig | None = None,
                tracker: TrackerConfig | None = None, keep_frames: bool = False) -> Replay:
    """Decode ``path``, take ``fps`` samples per second of file time, detect (with the camera's ``tiling``
    override) and track each sample. ``keep_frames`` keeps every sampled image (for snapshot tests)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open clip {path}")
    native = cap.get(cv2.CAP_PROP_FPS) or 25.0
    byte_tracker = ByteTracker(tracker or TrackerConfig())
    rep = Replay((0, 0), [], [], [])
    i, next_t = 0, 0.0
    try:
        while True:
            if not cap.grab():  # grab only: skipped frames are never converted to BGR
                break
            t = i / native
            i += 1
            if t + 1e-6 < next_t:
                continue
            next_t += 1 / fps
            ok, img = cap.retrieve()
            if not ok:
                break
            rep.frame_size = (img.shape[1], img.shape[0])
            raw = detector.detect_batch([img], [tiling])[0]
            if keep_frames:
                rep.frames[len(rep.timestamps)] = img
            rep.timestamps.append(t)
            rep.raw.append(raw)
            rep.detections.append(byte_tracker.update(raw, t))
    finally:
        cap.release()
    return rep
