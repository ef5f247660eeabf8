"""The foreground crowd estimate (edge.rules.crowd_estimate) on constructed scenes, through the crowd rule.

A textured floor, people drawn as dark ellipses of the size the perspective model expects at their row,
walking at 30-60 px/s; the "detector" reports only every third person. The estimate must find the others
from pixels, keep growing with the crowd, carry an interval that holds the truth, ignore a detected car,
and stay cheap.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.config import PlausibilityConfig, parse_config
from edge.detections import Detections
from edge.detectors.plausibility import PerspectiveSizeModel
from edge.rules import RuleEngine, Scene
from edge.rules.crowd_estimate import temporal_median
from tests.test_rules_parking import T0

W, H = 640, 480
SIZES_CFG = PlausibilityConfig(heights={"person": [[0.2, 0.12], [1.0, 0.3]]})  # h(y) = 0.075 + 0.225 y


def expected_h(y: float) -> float:
    return 0.075 + 0.225 * y


class Scene_:
    """N walkers on a textured floor; ``frame(t)`` → (image, all boxes, detected boxes with ids)."""

    def __init__(self, n: int, seed: int = 1, detect_every: int = 3):
        rng = np.random.default_rng(seed)
        self.floor = np.clip(150 + rng.normal(0, 6, (H, W, 3)) + np.linspace(0, 40, W)[None, :, None], 0, 255)
        self.floor = cv2.GaussianBlur(self.floor.astype(np.uint8), (5, 5), 0)
        cols = int(np.ceil(np.sqrt(n * 1.6)))
        rows = int(np.ceil(n / cols))
        self.people = []
        for k in range(n):
            r, c = divmod(k, cols)
            yb = 0.3 + 0.65 * (r + 0.5) / rows + rng.uniform(-0.02, 0.02)
            x = (c + 0.5) / cols * W + rng.uniform(-8, 8)
            self.people.append([x, yb, rng.choice([-1, 1]) * rng.uniform(30, 60), k % detect_every == 0])

    def frame(self, t: float) -> tuple[np.ndarray, list[np.ndarray], Detections]:
        img = self.floor.copy()
        boxes, det_boxes, ids = [], [], []
        for k, (x0, yb, v, detected) in enumerate(self.people):
            span = W - 80
            x = 40 + abs(((x0 - 40 + v * t) % (2 * span)) - span)  # bounce between x = 40 and W - 40
            h = expected_h(yb) * H
            w = 0.4 * h
            cv2.ellipse(img, (int(x), int(yb * H - h / 2)), (int(w / 2), int(h / 2)), 0, 0, 360, (45, 40, 50), -1)
            box = np.array([x - w / 2, yb * H - h, x + w / 2, yb * H])
            boxes.append(box)
            if detected:
                det_boxes.append(box)
                ids.append(k + 1)
        n = len(det_boxes)
        dets = Detections(np.array(det_boxes).reshape(-1, 4), np.full(n, 0.8), np.zeros(n),
                          np.array(["person"] * n, dtype=object), np.array(ids))
        return img, boxes, dets


def engine(**zone) -> RuleEngine:
    z = {"name": "plaza", "type": "crowd", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "area_m2": 100,
         "smoothing_s": 0, "forecast_horizon_s": 0}
    z.update(zone)
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]})
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="m", model_version="1")


def run(scene: Scene_, seconds: int = 16, sizes: PerspectiveSizeModel | None = None, extra=None, eng=None,
        start: int = 0):
    eng = eng or engine()
    sizes = sizes if sizes is not None else PerspectiveSizeModel(SIZES_CFG)
    figures, ms = [], []
    for t in range(start, start + seconds):
        img, _, dets = scene.frame(float(t))
        if extra is not None:
            img, dets = extra(t, img, dets)
        t0 = time.process_time()
        out = eng.update(dets, T0 + t, (W, H), Scene(img, sizes))
        ms.append((time.process_time() - t0) * 1000)
        figures += out.crowd
    return figures, ms


@pytest.mark.parametrize("n", [12, 30, 45])
def test_estimate_finds_the_undetected_and_keeps_growing_with_the_crowd(n):
    figures, _ = run(Scene_(n))
    late = figures[6:]  # background from t=4, calibration from the detected walkers
    assert {f.count_method for f in late} == {"tracks+foreground"}
    raw = np.mean([f.raw_count for f in late])
    est = np.median([f.estimate for f in late])
    assert raw == pytest.approx(n / 3, abs=1)  # the detector sees a third
    assert est == pytest.approx(n, rel=0.2)  # the estimate sees them all (within 20 %)
    inside = np.mean([f.count_low <= n <= f.count_high for f in late])
    assert inside >= 0.8
    assert all(f.count_low <= f.count <= f.count_high for f in figures)
    assert [f.count_method for f in figures[:4]] == ["tracks"] * 4  # no background yet: detections alone


def test_without_an_image_or_a_person_size_the_rule_counts_tracks():
    scene = Scene_(12)
    eng = engine()
    for t in range(8):
        _, _, dets = scene.frame(float(t))
        out = eng.update(dets, T0 + t, (W, H), Scene(None, PerspectiveSizeModel(SIZES_CFG)))
        assert out.crowd[0].count_method == "tracks" and out.crowd[0].count == 4
    # an image but no learned size: the zone learns a provisional size from its own detections (>= 10)
    figures, _ = run(Scene_(12), sizes=PerspectiveSizeModel(PlausibilityConfig()))
    assert figures[2].count_method == "tracks"
    assert figures[-1].count_method == "tracks+foreground" and figures[-1].estimate == pytest.approx(12, rel=0.25)


def test_a_detected_car_is_no_crowd_and_a_light_change_restarts_the_background():
    def car(t, img, dets):
        x = 60 + 70 * t % 400
        cv2.rectangle(img, (int(x), 300), (int(x) + 150, 380), (30, 30, 160), -1)
        boxes = np.concatenate([dets.xyxy, [[x, 300, x + 150, 380]]])
        return img, Detections(boxes, np.append(dets.scores, 0.7), np.zeros(len(boxes)),
                               np.append(dets.class_names, "car"), np.append(dets.track_ids, 99))

    with_car, _ = run(Scene_(12), extra=car)
    assert np.median([f.estimate for f in with_car[6:]]) == pytest.approx(12, rel=0.2)

    def lights(t, img, dets):
        return (cv2.add(img, np.full_like(img, 60)) if t >= 9 else img), dets

    eng = engine()
    figures, _ = run(Scene_(12), seconds=20, extra=lights, eng=eng)
    rule = next(iter(eng.rules.values()))
    assert rule.foreground.scene_changes == 1
    assert figures[9].count_method == "tracks"  # the background is learned again
    assert max(f.estimate for f in figures) < 12 * 1.5


def test_cheap_enough_for_every_crowd_zone_at_1_fps():
    _, ms = run(Scene_(30), seconds=20)
    assert np.median(ms) < 25  # measured ~3-5 ms CPU on the edge box's cores


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9, 11])
def test_temporal_median_is_the_median_of_the_newest_odd_frames(n):
    rng = np.random.default_rng(n)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]
    odd = n if n % 2 else n - 1
    assert np.array_equal(temporal_median(frames), np.median(np.stack(frames[-odd:]), axis=0).astype(np.uint8))


def test_a_reloaded_zone_keeps_counting_and_detections_mode_publishes_the_raw_count():
    scene = Scene_(24)
    eng = engine()
    run(scene, seconds=8, eng=eng)
    left = {"name": "plaza", "type": "crowd", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "area_m2": 50,
            "smoothing_s": 0, "forecast_horizon_s": 0}
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [left]}]})
    eng.reconfigure(cfg.cameras[0])  # hot reload: a new polygon, the background is learned again for it
    figures, _ = run(scene, seconds=16, eng=eng, start=8)
    truth = [sum(1 for b in scene.frame(float(t))[1] if (b[0] + b[2]) / 2 <= W / 2) for t in range(8, 24)]
    assert figures[-1].count_method == "tracks+foreground"
    assert np.median([f.estimate for f in figures[8:]]) == pytest.approx(np.median(truth[8:]), rel=0.25)
    figures, _ = run(Scene_(24), seconds=6, eng=engine(count_method="detections"))
    assert {(f.count_method, f.count, f.raw_count, f.count_low, f.count_high) for f in figures} == {
        ("detections", 8, 8, 8, 8)}
