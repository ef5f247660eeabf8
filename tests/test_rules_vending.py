"""street_vending with constructed detections: one incident per stall, goods needed, custom classes, walkers ignored."""

from __future__ import annotations

import pytest

from edge.config import PlausibilityConfig, parse_config
from edge.detectors.plausibility import PerspectiveSizeModel
from edge.rules import RuleEngine, Scene
from edge.rules.base import NO_SCENE
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


def run(eng: RuleEngine, frames, scene: Scene = NO_SCENE) -> list:
    out = []
    for t, d in frames:
        for ev in eng.update(d, T0 + t, FRAME, scene).events:
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


def test_goods_need_a_person_staying_at_them_and_the_stall_closes_after_grace():
    # an umbrella left alone is no stall; with the vendor beside it, it is, and it closes grace_s after both left
    alone = [(i * 0.5, dets((*UMBRELLA, 2))) for i in range(0, 30)]
    assert run(engine(), alone) == []
    frames = [(i * 0.5, dets((*VENDOR, 1), (*UMBRELLA, 2))) for i in range(0, 30)]
    frames += [(15 + i * 0.5, dets()) for i in range(1, 14)]
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


def test_a_group_standing_still_is_no_stall_by_default_even_with_their_bags():
    # four people standing together for a minute; one wears a backpack, one carries a handbag (COCO evidence
    # classes, but carried: their boxes lie inside the persons' boxes)
    group = [(200 + k * 25, 200 + (k % 2) * 10, 228 + k * 25, 280 + (k % 2) * 10, "person", 10 + k) for k in range(4)]
    bags = [(204, 215, 222, 245, "backpack", 20), (255, 240, 270, 262, "handbag", 21)]
    frames = [(i * 1.0, dets(*group, *bags, walker(i * 1.0, 99))) for i in range(0, 60)]
    assert run(engine({"dwell_s": 30}), frames) == []
    # the same bag put down next to them is goods on the ground: with people staying at it, a stall
    ground = (310, 260, 340, 285, "suitcase", 22)
    events = run(engine({"dwell_s": 30}), [(t, dets(*group, ground)) for t, _ in frames])
    assert [ev.event for _, ev in events] == ["opened"]


def test_a_stall_is_its_goods_and_the_people_at_them_not_the_whole_crowd_around():
    # a table with its vendor, and a queue of people standing in a line leading away from it: the stall holds
    # the table and the person at it; people are never linked to people, so the queue does not join
    queue = [(560 - k * 35, 200, 588 - k * 35, 280, "person", 30 + k) for k in range(1, 8)]
    frames = [(i * 0.5, dets((*VENDOR2, 4), (*TABLE, 5), *queue)) for i in range(0, 30)]
    events = run(engine(), frames)
    assert [ev.event for _, ev in events] == ["opened"]
    subject = events[0][1].payload(None)["subject"]
    assert subject["class"] == "dining table"
    # those within cluster_radius (1.5 person heights) of the table are at the stall; the rest of the line is not
    assert 4 in subject["track_ids"] and 31 in subject["track_ids"]
    assert not {35, 36, 37} & set(subject["track_ids"])


def test_junk_boxes_are_no_goods():
    # a "dining table" box over half the floor (taller than 1.5 expected person heights at its row) next to a
    # standing person is no stall once the camera's person size is known; a chair the detector sees in one
    # frame of five is no equipment either
    sizes = PerspectiveSizeModel(PlausibilityConfig(heights={"person": [[0.3, 0.1], [0.9, 0.2]]}))
    huge = (60, 60, 330, 290, "dining table", 5)
    frames = [(i * 0.5, dets((*VENDOR, 1), huge)) for i in range(0, 30)]
    assert len(run(engine(), frames)) == 1  # without a size model it cannot tell
    assert run(engine(), frames, Scene(None, sizes)) == []
    rare = [(i * 0.5, dets((*VENDOR, 1), *([CHAIR + (3,)] if i % 5 == 0 else []))) for i in range(0, 40)]
    assert run(engine(), rare) == []


def test_a_vending_model_stall_class_is_a_stall_by_itself_and_names_validate():
    detector = {"kind": "onnx_yolo", "model_path": "m.onnx",
                "class_names": ["person", "vendor", "stall", "cart", "umbrella_stall"]}
    frames = [(i * 0.5, dets((*TABLE[:4], "umbrella_stall", 7))) for i in range(0, 30)]
    # default evidence: COCO's list plus the vending model's classes; a stall class needs nobody beside it
    events = run(engine({"evidence_classes": None}, {**detector, "class_names": [*detector["class_names"]]}), frames)
    assert [ev.payload(None)["subject"]["class"] for _, ev in events] == ["umbrella_stall"]
    zone = {"classes": ["person", "vendor"], "evidence_classes": ["stall", "cart", "umbrella_stall"]}
    cfg = parse_config({"edge_id": "e", "detector": detector, "cameras": [{
        "id": "c", "url": "x.mp4", "class_map": {"umbrella_stall": "stall"},
        "zones": [{"name": "m", "type": "no_vending", "points": SQUARE, **zone}]}]})
    assert cfg.cameras[0].zones[0].vending_evidence() == ["stall", "cart", "umbrella_stall"]
    with pytest.raises(Exception, match=r"cameras\[0\]\.zones\[0\]\.evidence_classes\[1\]"):
        engine({"evidence_classes": ["stall", "market_stall"]}, detector)
