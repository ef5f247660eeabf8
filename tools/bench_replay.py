"""Detect and track a labelled clip's first camera once, for the rule benchmarks that replay the result
(tools/bench_crowd.py, tools/bench_appearance.py): the product's detector, plausibility front end and tracker over
frames sampled at ``fps`` of file time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import EdgeConfig
from edge.detections import Detections
from edge.detectors import build_detector
from edge.detectors.plausibility import FrontEnd
from edge.tracking import ByteTracker


@dataclass
class TrackedClip:
    samples: list[tuple[float, Detections, np.ndarray]]  # (file time s, tracked detections, frame)
    front_end: FrontEnd  # its ``sizes`` feed the rules' Scene
    detect_s: float  # thread CPU in detection and the front end, summed over the samples


def detect_and_track(cfg: EdgeConfig, fps: float) -> TrackedClip:
    """Sample ``cfg.cameras[0]``'s clip at ``fps``; detect, filter and track every sample."""
    cam = cfg.cameras[0]
    detector, front_end = build_detector(cfg.detector), FrontEnd(cam.plausibility)
    tracker = ByteTracker(cfg.tracker)
    cap = cv2.VideoCapture(cam.url)
    samples, due, detect_s = [], 0.0, 0.0
    while cap.grab():
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if t < due:
            continue
        due = t + 1.0 / fps
        _, img = cap.retrieve()
        h, w = img.shape[:2]
        t0 = time.thread_time()
        dets = front_end.process(detector.detect(img), (w, h))
        detect_s += time.thread_time() - t0
        samples.append((t, tracker.update(dets, t), img))
    cap.release()
    return TrackedClip(samples, front_end, detect_s)
