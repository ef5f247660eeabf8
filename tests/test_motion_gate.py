"""Motion-gated detection (edge.motion) and the worker's batch scheduling, on constructed frames and real footage."""

from __future__ import annotations

import time
from collections import Counter

import cv2
import numpy as np
import pytest

from edge.config import CameraConfig, MotionGateConfig, parse_config
from edge.detections import Detections
from edge.motion import MotionGate
from edge.sources import Frame
from edge.worker import EdgeWorker

ZONE = {"name": "left", "type": "crowd", "points": [[0, 0], [0.4, 0], [0.4, 1], [0, 1]], "area_m2": 50}


def _scene(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (360, 640, 3), dtype=np.uint8)


def test_gate_skips_unchanged_zones_and_still_runs_at_the_minimum_rate():
    cam = CameraConfig(id="c", url="x.mp4", zones=[ZONE])
    gate = MotionGate(MotionGateConfig(enabled=True, min_rate_s=5), cam)
    img = _scene()
    assert gate.should_detect(img, 0.0)  # first frame: always
    noisy = np.clip(img.astype(np.int16) + np.random.default_rng(1).integers(-4, 5, img.shape), 0, 255).astype(
        np.uint8)  # sensor/compression noise is not a change
    assert not gate.should_detect(noisy, 1.0)
    outside = img.copy()
    outside[100:200, 500:600] = 255  # a bright object well outside the zone
    assert not gate.should_detect(outside, 2.0)
    inside = img.copy()
    inside[150:190, 100:130] = 255  # a person-sized change inside it
    assert gate.should_detect(inside, 3.0)
    assert not gate.should_detect(inside, 4.0)  # compared with the last analysed frame, which is `inside` now
    assert gate.should_detect(inside, 8.0)  # 5 s since the detector last ran
    assert gate.skipped == 3


def test_gate_without_zones_watches_the_whole_frame():
    gate = MotionGate(MotionGateConfig(enabled=True), CameraConfig(id="c", url="x.mp4"))
    img = _scene()
    assert gate.should_detect(img, 0.0)
    moved = img.copy()
    moved[10:60, 580:630] = 0
    assert gate.should_detect(moved, 0.5)


class CountingDetector:
    """Returns three persons in the zone for every image and counts images."""

    name, version, class_names = "fake", "1", ["person"]

    def __init__(self) -> None:
        self.images = 0
        self.last_timings: dict[str, float] = {}

    def detect_batch(self, images, tilings=None, class_maps=None):
        self.images += len(images)
        boxes = np.array([[40, 100, 70, 180], [100, 120, 130, 200], [160, 110, 190, 190]], np.float32)
        return [Detections(boxes, np.full(3, 0.9), np.zeros(3), np.array(["person"] * 3, dtype=object))
                for _ in images]


def _worker(tmp_path, gate: dict | None) -> EdgeWorker:
    cam = {"id": "cam", "url": str(tmp_path / "none.mp4"), "zones": [ZONE]}
    if gate is not None:
        cam["motion_gate"] = gate
    cfg = parse_config({"edge_id": "e", "outbox": {"path": str(tmp_path / "o.sqlite")},
                        "snapshots": {"dir": str(tmp_path / "s")}, "cameras": [cam]})
    worker = EdgeWorker(cfg, detector=CountingDetector())
    worker._add_camera = lambda c: None  # no sources: frames are handed in directly
    from edge.detectors.plausibility import FrontEnd
    from edge.rules import RuleEngine
    from edge.tracking import ByteTracker
    from edge.worker import CameraPipeline

    c = cfg.cameras[0]
    worker.pipelines["cam"] = CameraPipeline(
        c, source=None, tracker=ByteTracker(cfg.tracker), front_end=FrontEnd(c.plausibility),
        engine=RuleEngine(c, site=cfg.site, edge_id=cfg.edge_id, model_name="fake", model_version="1"))
    return worker


@pytest.mark.parametrize("enabled", [True, False])
def test_gated_frames_reuse_the_last_detections_so_rules_never_see_an_empty_scene(tmp_path, enabled):
    worker = _worker(tmp_path, {"enabled": enabled, "min_rate_s": 10})
    p = worker.pipelines["cam"]
    img = _scene()
    counts = []
    for i in range(6):
        frame = Frame("cam", img, 1_700_000_000.0 + i, float(i), i, time.monotonic())
        worker._process([(p, frame)])
        counts.append(p.last_counts.copy())
    assert all(c == Counter(person=3) for c in counts)  # the crowd never drops to 0 on a skipped frame
    assert p.frames_analyzed == 6  # tracking and rules ran for every frame
    if enabled:
        assert worker.detector.images == 1 and worker.counters["detector_skipped"] == 5
    else:
        assert worker.detector.images == 6


class _Source:
    has_frame = True

    def read(self, timeout):
        return Frame("x", np.zeros((8, 8, 3), np.uint8), 0.0, 0.0, 0, time.monotonic())


def test_batches_are_capped_by_estimated_inference_time_oldest_first(tmp_path):
    worker = _worker(tmp_path, None)
    template = worker.pipelines.pop("cam")
    from dataclasses import replace

    for i in range(16):
        worker.pipelines[f"c{i}"] = replace(template, source=_Source(), last_served=float(16 - i))
    worker.config.detector.batch_time_s = 0.3
    for _ in range(5):
        worker.stats.add("detect_per_image", 100.0)  # 100 ms per image: 3 frames per batch
    first = worker._gather_frames()
    assert [p.last_served for p, _ in first] != []
    assert len(first) == 3
    served_first = {id(p) for p, _ in first}
    assert {id(worker.pipelines[f"c{i}"]) for i in (15, 14, 13)} == served_first  # longest waiting first
    second = worker._gather_frames()
    assert not served_first & {id(p) for p, _ in second}  # and then the next ones


@pytest.mark.slow
def test_gate_skips_most_frames_of_a_static_scene_and_none_of_a_busy_one(media_dir):
    """Real footage: the plaza is always busy; the residential street's near kerb mostly holds parked cars."""
    skipped = {}
    for clip, zone in (("crowd_plaza_1.mp4", [[0, 0], [1, 0], [1, 1], [0, 1]]),
                       ("street_parking_residential_1.mp4", [[0.55, 0.55], [1, 0.55], [1, 1], [0.55, 1]])):
        cam = CameraConfig(id="c", url="x", zones=[{"name": "z", "type": "no_parking", "points": zone}])
        gate = MotionGate(MotionGateConfig(enabled=True, min_rate_s=30), cam)
        cap = cv2.VideoCapture(str(media_dir / clip))
        fps = cap.get(cv2.CAP_PROP_FPS)
        i = n = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if i % round(fps) == 0:  # 1 fps
                gate.should_detect(img, i / fps)
                n += 1
            i += 1
        skipped[clip] = gate.skipped / n
    assert skipped["crowd_plaza_1.mp4"] < 0.2
    assert skipped["street_parking_residential_1.mp4"] > 0.2


class _StillSource:
    """A camera whose waiting frame can be looked at (peek) before it is taken (read), like CameraSource."""

    has_frame = True

    def __init__(self, image: np.ndarray, t: float) -> None:
        self.frame = Frame("x", image, t, t, 0, time.monotonic())

    def peek(self):
        return self.frame

    def read(self, timeout):
        return self.frame


def test_gated_cameras_bypass_the_batch_budget_only_when_their_gate_will_skip(tmp_path):
    """The budget (detector.batch_time_s) holds for gated cameras too: only frames the gate will skip, which cost
    no inference, are served beyond it. Before, a camera with the gate on was never held back, so with the gate on
    every camera each batch took every waiting camera and the budget was void."""
    worker = _worker(tmp_path, {"enabled": True, "min_rate_s": 60})
    template = worker.pipelines.pop("cam")
    from dataclasses import replace

    still, moving = _scene(0), _scene(0).copy()
    moving[150:190, 100:130] = 255  # a change inside the zone
    for i in range(16):
        p = replace(template, source=_StillSource(still, 10.0), last_served=float(16 - i))
        p.gate = MotionGate(p.camera.motion_gate, p.camera)
        p.gate.should_detect(still, 0.0)  # the detector saw the still scene: the gate's reference
        p.gate_dets = Detections.empty()
        worker.pipelines[f"c{i}"] = p
    worker.config.detector.batch_time_s = 0.3
    for _ in range(5):
        worker.stats.add("detect_per_image", 100.0)  # 100 ms per image: 3 frames fit the budget

    assert len(worker._gather_frames()) == 16  # nothing changed anywhere: every camera, no inference needed
    for p in worker.pipelines.values():
        p.source = _StillSource(moving, 11.0)
    served = worker._gather_frames()
    assert len(served) == 3  # every zone changed: the budget applies as without the gate
    detect, gated = worker._split_gated(served)
    assert len(detect) == 3 and not gated
    assert all(p.gate.skipped == 0 for p in worker.pipelines.values())  # looking (would_detect) recorded nothing


def test_would_detect_answers_like_should_detect_without_recording():
    cam = CameraConfig(id="c", url="x.mp4", zones=[ZONE])
    gate = MotionGate(MotionGateConfig(enabled=True, min_rate_s=5), cam)
    img = _scene()
    assert gate.would_detect(img, 0.0) and gate.should_detect(img, 0.0)
    inside = img.copy()
    inside[150:190, 100:130] = 255
    for _ in range(2):  # asking twice changes nothing
        assert not gate.would_detect(img, 1.0) and gate.would_detect(inside, 1.0)
    assert gate.skipped == 0
    assert not gate.should_detect(img, 1.0) and gate.skipped == 1
