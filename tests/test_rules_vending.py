"""street_vending with constructed detections: one incident per stall cluster, custom classes, walkers ignored."""

from __future__ import annotations

import pytest

from edge.config import parse_config
from edge.rules import RuleEngine
from tests.test_rules_parking import FRAME, T0, VALIDATOR, dets

SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def engine(zone: dict | None = None, detector: dict | None = None) -> RuleEngine:
    z = {"name": "market", "type": "no_vending", "points": SQUARE, "dwell_s": 10, "grace_s": 5}
    z.update(zone or {})
    doc = {"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]}
    if detector:
        doc["detector"] = detector
    cfg = parse_config(doc)
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="m", model_version="1")


def run(eng: RuleEngine, frames) -> list:
    out = []
    for t, d in frames:
        for ev in eng.update(d, T0 + t, FRAME).events:
            VALIDATOR.validate(ev.payload(None))
            out.append((t, ev))
    return out


VENDOR = (100, 200, 130, 280, "person")  # 80 px tall
UMBRELLA = (140, 190, 200, 240, "umbrella")  # next to the vendor
CHAIR = (90, 250, 115, 285, "chair")
VENDOR2 = (450, 200, 480, 280, "person")
TABLE = (485, 240, 560, 285, "dining table")


def walker(t: float, tid: int, y: int = 350) -> tuple:
    x = 20 + t * 60  # 1.5 person-heights per second
    return (x, y, x + 30, y + 80, "person", tid)


def test_two_stalls_give_two_incidents_and_each_groups_its_objects():
    frames = [
        (i * 0.5, dets((*VENDOR, 1), (*UMBRELLA, 2), (*CHAIR, 3), (*VENDOR2, 4), (*TABLE, 5), walker(i * 0.5, 9)))
        for i in range(0, 40)
    ]
    events = run(engine(), frames)
    assert [(t, ev.event) for t, ev in events] == [(10.0, "opened"), (10.0, "opened")]
    subjects = sorted((ev.payload(None)["subject"] for _, ev in events), key=lambda s: s["box"][0])
    assert [s["members"] for s in subjects] == [3, 2]
    assert [s["track_ids"] for s in subjects] == [[1, 2, 3], [4, 5]]
    assert [s["class"] for s in subjects] == ["umbrella", "dining table"]
    assert 9 not in subjects[0]["track_ids"] + subjects[1]["track_ids"]


def test_stationary_person_alone_or_walkers_are_not_a_stall():
    frames = [(i * 0.5, dets((*VENDOR, 1), walker(i * 0.5, 2), walker(i * 0.5 - 2, 3, 120))) for i in range(0, 40)]
    assert run(engine(), frames) == []


def test_evidence_alone_is_a_stall_and_closes_after_grace():
    frames = [(i * 0.5, dets((*UMBRELLA, 2))) for i in range(0, 30)] + [(15 + i * 0.5, dets()) for i in range(1, 14)]
    events = run(engine(), frames)
    assert [(t, ev.event) for t, ev in events] == [(10.0, "opened"), (20.0, "closed")]  # last seen 14.5 s + 5 s


def test_stall_is_timed_from_when_person_and_goods_are_both_there():
    frames = [(i * 0.5, dets((*VENDOR, 1))) for i in range(0, 20)]  # vendor waits 10 s first
    frames += [(10 + i * 0.5, dets((*VENDOR, 1), (*UMBRELLA, 2))) for i in range(0, 30)]  # opens the umbrella
    events = run(engine({"evidence_classes": ["umbrella"], "stall_min_persons": None}), frames)
    assert [t for t, _ in events] == [20.0]


def test_group_of_persons_counts_when_stall_min_persons_is_set():
    group = [(200 + k * 25, 200 + (k % 2) * 10, 228 + k * 25, 280 + (k % 2) * 10, "person", 10 + k) for k in range(4)]
    frames = [(i * 0.5, dets(*group, walker(i * 0.5, 99))) for i in range(0, 30)]
    assert run(engine(), frames) == []
    events = run(engine({"stall_min_persons": 3}), frames)
    assert [(t, ev.event) for t, ev in events] == [(10.0, "opened")]
    assert events[0][1].payload(None)["subject"]["members"] == 4
    assert run(engine({"stall_min_persons": 5}), frames) == []


def test_custom_model_classes_vendor_and_cart():
    detector = {"kind": "onnx_yolo", "model_path": "m.onnx", "class_names": ["vendor", "cart", "stall", "car"]}
    zone = {"classes": ["vendor"], "evidence_classes": ["cart", "stall"]}
    frames = [(i * 0.5, dets((*VENDOR[:4], "vendor", 1), (*UMBRELLA[:4], "cart", 2))) for i in range(0, 25)]
    events = run(engine(zone, detector), frames)
    assert [ev.payload(None)["subject"]["class"] for _, ev in events] == ["cart"]
    # COCO names are unknown to that model: rejected at config time, naming the path
    with pytest.raises(Exception, match=r"cameras\[0\]\.zones\[0\]\.evidence_classes\[0\]"):
        engine({"evidence_classes": ["umbrella"]}, detector)
