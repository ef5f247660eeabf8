"""crowd_density with constructed person counts: levels, hysteresis, cooldown, forecast, live figures.

These tests drive the levels with exact per-frame counts, so their zones count ``detections``; counting
itself (track fusion, the foreground estimate) is tested in tests/test_crowd_*.py."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import parse_config
from edge.detections import Detections
from edge.rules import RuleEngine
from edge.rules.crowd import CrowdLevelTracker, linear_forecast
from tests.test_rules_parking import FRAME, T0, VALIDATOR


def persons(n: int) -> Detections:
    xs = (np.arange(n) % 20) * 30.0
    ys = 100 + (np.arange(n) // 20) * 90.0
    boxes = np.stack([xs, ys, xs + 20, ys + 60], axis=1) if n else np.zeros((0, 4))
    return Detections(boxes, np.full(n, 0.9), np.zeros(n), np.array(["person"] * n, dtype=object), np.arange(n))


def engine(**zone) -> RuleEngine:
    z = {"name": "plaza", "type": "crowd", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "area_m2": 100,
         "levels": {"elevated": 0.2, "high": 0.4, "critical": 0.8}, "smoothing_s": 0, "hysteresis": 0.1,
         "cooldown_s": 5, "forecast_horizon_s": 0, "count_method": "detections"}
    z.update(zone)
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]})
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="m", model_version="1")


def run(eng: RuleEngine, counts: list[int], dt: float = 1.0):
    events, figures = [], []
    for i, n in enumerate(counts):
        out = eng.update(persons(n), T0 + i * dt, FRAME)
        figures += out.crowd
        for ev in out.events:
            p = ev.payload(None)
            VALIDATOR.validate(p)
            events.append((i, p["event"], p["crowd"]["level"], p["crowd"]["previous_level"]))
    return events, figures


def test_levels_with_hysteresis_and_one_event_per_crossing():
    counts = [10] * 5 + [25] * 10 + [19] * 3 + [21] * 4 + [45] * 3 + [39] * 10 + [5] * 10
    # 25 → elevated; 19 and 21 stay elevated (19 ≥ 18 = 20 × 0.9); 45 → high; 39 ≥ 36 stays high; 5 → normal
    events, figures = run(engine(), counts)
    assert events == [
        (5, "opened", "elevated", "normal"),
        (22, "updated", "high", "elevated"),
        (40, "closed", "normal", "high"),  # normal since 35, held for the 5 s cooldown
    ]
    assert len(figures) == len(counts)  # a live figure every update
    assert [f.level for f in figures[33:36]] == ["high", "high", "normal"]
    assert figures[20].to_dict()["count"] == 21 and figures[20].to_dict()["density"] == 0.21


def test_cooldown_swallows_a_short_dip_and_reports_a_held_drop_once():
    # high, a 3 s dip to elevated (shorter than the 5 s cooldown), high again, then elevated for good
    counts = [50] * 5 + [30] * 3 + [50] * 5 + [30] * 10
    events, _ = run(engine(), counts)
    assert events == [(0, "opened", "high", "normal"), (18, "updated", "elevated", "high")]


def test_smoothing_averages_counts_over_the_window():
    # alternating 0 / 50 persons: raw counts flap between normal and high, the 4 s average (20..30) stays elevated
    counts = [0, 50] * 10
    _, raw = run(engine(smoothing_s=0), counts)
    assert {f.level for f in raw} == {"normal", "high"}
    events, figures = run(engine(smoothing_s=4), counts)
    assert [e[1:] for e in events] == [("opened", "elevated", "normal")]
    assert {f.level for f in figures[3:]} == {"elevated"}  # from the 4th sample on the window holds 0 and 50


def test_forecast_early_warning_before_high_is_reached():
    # steady rise of 1 person/s from 10: after 5 s (15 persons, normal) the 30 s trend reaches high (40)
    counts = list(range(10, 45))
    events, figures = run(engine(forecast_horizon_s=30, forecast_window_s=20), counts)
    assert events == [
        (5, "opened", "normal", "normal"),  # early warning while still normal
        (10, "updated", "elevated", "normal"),
        (30, "updated", "high", "elevated"),
    ]
    warn = figures[5].forecast
    assert warn == {"predicted_density": 0.45, "horizon_s": 30.0, "predicted_level": "high", "early_warning": True}
    assert figures[4].forecast is None  # 4 s of history < a quarter of the 20 s window
    # no early warning without a trend
    events, figures = run(engine(forecast_horizon_s=20, forecast_window_s=20), [15] * 20)
    assert events == [] and figures[-1].forecast == {
        "predicted_density": 0.15, "horizon_s": 20.0, "predicted_level": "normal", "early_warning": False,
    }


def test_level_tracker_and_forecast_units():
    lt = CrowdLevelTracker((0.2, 0.4, 0.8), 0.25)
    assert [lt.update(d) for d in (0.1, 0.2, 0.16, 0.14, 0.9, 0.61, 0.59, 0.0)] == [0, 1, 1, 0, 3, 3, 2, 0]
    assert linear_forecast([(0, 1.0), (1, 2.0), (2, 3.0)], now=2, horizon_s=3) == pytest.approx(6.0)
    assert linear_forecast([(0, 1.0), (1, 2.0)], now=1, horizon_s=3) is None


def test_inactive_schedule_still_publishes_figures_but_opens_nothing():
    events, figures = run(engine(schedule=[{"days": "mon", "start": "00:00", "end": "01:00"}]), [90] * 5)
    assert events == [] and figures == []


def test_early_warning_during_a_short_dip_from_high_is_no_event():
    # rising past high, a one-sample dip to elevated while the trend still points up, then high again:
    # the dip recovers within the cooldown, so it is not reported (not even as an early warning)
    counts = [30, 33, 36, 40, 43, 46, 49, 52, 55, 58, 34, 60, 62, 62]
    events, figures = run(engine(forecast_horizon_s=10, forecast_window_s=8, cooldown_s=5), counts)
    assert figures[10].level == "elevated" and figures[10].forecast["early_warning"]
    assert events == [(0, "opened", "elevated", "normal"), (3, "updated", "high", "elevated")]


def test_ground_calibration_gives_the_zone_area_through_perspective():
    """A 10 m x 20 m square seen in perspective (a trapezoid in the image): the zone over it is 200 m², and a
    zone over its near half (the lower, larger part of the picture) is 100 m², not the image-area share."""
    from edge.config import ZoneConfig

    ground = {"image_points": [[0.3, 0.2], [0.7, 0.2], [0.9, 0.9], [0.1, 0.9]],
              "ground_m": [[0, 20], [10, 20], [10, 0], [0, 0]]}
    whole = ZoneConfig(name="sq", type="crowd", points=ground["image_points"], ground=ground)
    assert whole.ground_area_m2() == pytest.approx(200.0, rel=1e-4)
    # the ground line y = 10 m maps to an image row between 0.2 and 0.9; the zone below it is the near half
    cal = whole.ground
    import cv2
    import numpy as np

    inv = np.linalg.inv(cal.homography())
    left, right = cv2.perspectiveTransform(np.float32([[[0, 10]], [[10, 10]]]), inv).reshape(-1, 2).tolist()
    near_points = [tuple(left), tuple(right), (0.9, 0.9), (0.1, 0.9)]
    near = ZoneConfig(name="near", type="crowd", points=near_points, ground=ground)
    assert near.ground_area_m2() == pytest.approx(100.0, rel=1e-3)
    from shapely.geometry import Polygon

    image_share = Polygon(near_points).area / Polygon(ground["image_points"]).area
    assert image_share > 0.6  # in the image the near half is most of the trapezoid: area_m2 × share would be wrong
    with pytest.raises(ValueError, match="collinear"):
        ZoneConfig(name="bad", type="crowd", points=ground["image_points"],
                   ground={"image_points": [[0, 0], [0.5, 0.5], [1, 1], [0.2, 0.2]], "ground_m": ground["ground_m"]})
