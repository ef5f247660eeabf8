"""Counting people, not boxes: person detections fused over time (edge.rules.crowd_fusion), constructed."""

from __future__ import annotations

import numpy as np

from edge.config import parse_config
from edge.rules import RuleEngine
from edge.rules.crowd_fusion import TrackFusion
from tests.test_rules_parking import FRAME, T0, VALIDATOR, dets

EVERYWHERE = lambda xyxy: np.ones(len(xyxy), dtype=bool)  # noqa: E731


def person(x: float, y: float, tid: int, h: float = 80, score: float = 0.8) -> tuple:
    return (x, y, x + h * 0.4, y + h, "person", tid, score)


def crowd_engine(**zone) -> RuleEngine:
    z = {"name": "plaza", "type": "crowd", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "area_m2": 100,
         "smoothing_s": 0, "forecast_horizon_s": 0, "count_method": "tracks"}
    z.update(zone)
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]})
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="m", model_version="1")


def test_a_missed_person_still_counts_for_hold_s_at_the_predicted_place():
    fusion = TrackFusion(hold_s=2.0, stationary_s=5.0)
    walker = [person(100 + 20 * t, 200, 1) for t in range(6)]  # 20 px/s to the right
    other = [person(400, 100, 2) for _ in range(6)]
    counts, boxes = [], []
    for t in range(6):
        seen = [other[t]] + ([walker[t]] if t in (0, 1, 5) else [])  # the detector misses the walker at t=2..4
        f = fusion.update(dets(*seen), float(t), FRAME, EVERYWHERE)
        counts.append((f.count, f.current, f.held, f.raw))
        boxes.append(f.boxes)
    # t=2, 3: held (last seen at t=1, ≤ 2 s ago); t=4: 3 s ago, no longer counted; t=5: seen again
    assert counts == [(2, 2, 0, 2), (2, 2, 0, 2), (2, 1, 1, 1), (2, 1, 1, 1), (1, 1, 0, 1), (2, 2, 0, 2)]
    held_x = boxes[2][1][0]
    assert 100 + 20 * 1 < held_x <= 100 + 20 * 2 + 1  # moved on along its track (velocity decays a little)


def test_one_sighting_is_not_held_and_a_person_who_left_the_picture_is_not():
    fusion = TrackFusion(hold_s=3.0, stationary_s=5.0)
    fusion.update(dets(person(300, 200, 7)), 0.0, FRAME, EVERYWHERE)  # a single (maybe false) sighting
    assert fusion.update(dets(), 1.0, FRAME, EVERYWHERE).count == 0
    # a walker heading out at the right edge: 150 px/s, last seen at x=560..592 of 640
    fusion.update(dets(person(410, 200, 8)), 2.0, FRAME, EVERYWHERE)
    fusion.update(dets(person(560, 200, 8)), 3.0, FRAME, EVERYWHERE)
    assert fusion.update(dets(), 3.5, FRAME, EVERYWHERE).count == 1  # still in the picture
    assert fusion.update(dets(), 5.0, FRAME, EVERYWHERE).count == 0  # predicted beyond x = 640


def test_a_box_on_a_box_and_a_new_id_for_a_held_person_count_once():
    fusion = TrackFusion(hold_s=2.0, stationary_s=5.0)
    # two boxes of one person (a tile seam duplicate, IoU 0.8): once
    f = fusion.update(dets(person(100, 100, 1), (102, 102, 134, 181, "person", 2, 0.6)), 0.0, FRAME, EVERYWHERE)
    assert (f.raw, f.count) == (2, 1)
    fusion.update(dets(person(100, 100, 1)), 1.0, FRAME, EVERYWHERE)
    # the tracker lost id 1 and gives the same person id 9 a little further on: not two people
    f = fusion.update(dets(person(112, 104, 9)), 2.0, FRAME, EVERYWHERE)
    assert (f.count, f.held) == (1, 0)
    # two people side by side (IoU 0) are two
    assert fusion.update(dets(person(112, 104, 9), person(150, 104, 10)), 3.0, FRAME, EVERYWHERE).count == 2


def test_stationary_persons_are_reported_after_stationary_s():
    fusion = TrackFusion(hold_s=2.0, stationary_s=4.0)
    got = []
    for t in range(8):
        jitter = 2 * (t % 2)
        stand = [person(200 + 60 * k + jitter, 300, k) for k in (1, 2)] + [person(400, 300 - jitter, 3)]
        f = fusion.update(dets(*stand, person(20 + 40 * t, 100, 4)), float(t), FRAME, EVERYWHERE)
        got.append(f.stationary)
    assert got == [0, 0, 0, 0, 3, 3, 3, 3]  # the three standing people from t=4, never the walker


def test_zone_membership_uses_the_predicted_place():
    # a crowd zone on the left half: a walker held after leaving it is not counted there
    zone = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    eng = crowd_engine(points=zone)
    counts = []
    for t in range(5):
        seen = [person(200 + 80 * t, 200, 1)] if t < 2 else []  # 80 px/s to the right, missed from t=2
        out = eng.update(dets(*seen), T0 + t, FRAME)
        counts.append(out.crowd[0].count)
    # t=0: anchor x 216 < 320, in; t=1: 296, in; t=2: predicted ~327 (damped velocity 40 px/s), out
    assert counts == [1, 1, 0, 0, 0]


def test_figures_and_incident_carry_method_interval_raw_and_stationary():
    eng = crowd_engine(levels={"elevated": 0.02, "high": 0.5, "critical": 0.8})
    events, figures = [], []
    for t in range(6):
        seen = [person(50 + 50 * k, 300, k + 1) for k in range(3) if not (k == 2 and t == 3)]  # one missed at t=3
        out = eng.update(dets(*seen), T0 + t, FRAME)
        figures += out.crowd
        for ev in out.events:
            p = ev.payload(None)
            VALIDATOR.validate(p)
            events.append(p)
    f = figures[3].to_dict()
    assert (f["count"], f["estimate"], f["raw_count"], f["count_low"], f["count_high"]) == (3, 3.0, 2, 2, 3)
    assert f["count_method"] == "tracks" and f["forecast"] is None
    assert figures[5].to_dict()["stationary"] == 3  # standing since t=0, stationary_s 5
    crowd = events[0]["crowd"]
    assert {"count", "estimate", "count_low", "count_high", "count_method", "raw_count", "stationary"} <= set(crowd)
    assert crowd["count_method"] == "tracks"
