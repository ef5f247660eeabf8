"""illegal_parking with constructed detections: id switches, missed frames, passing traffic, grace, reload."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.config import parse_config
from edge.detections import Detections
from edge.rules import RuleEngine

FRAME = (640, 480)
T0 = 1_763_780_400.0  # 2025-11-22 03:00 UTC = 11:00 Asia/Shanghai, a Saturday
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "edge/schemas/incident.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

KERB = [[0.0, 0.5], [0.3, 0.5], [0.3, 0.9], [0.0, 0.9]]


def dets(*objs: tuple) -> Detections:
    """objs: (x1, y1, x2, y2, class, track_id[, score])."""
    if not objs:
        return Detections.empty()
    return Detections(
        [o[:4] for o in objs], [o[6] if len(o) > 6 else 0.8 for o in objs], np.zeros(len(objs)),
        [o[4] for o in objs], [o[5] for o in objs],
    )


def engine(zone_overrides: dict | None = None, *, zones: list[dict] | None = None, **kw) -> RuleEngine:
    zone = {"name": "kerb", "type": "no_parking", "points": KERB, "dwell_s": 10, "grace_s": 5}
    zone.update(zone_overrides or {})
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": zones or [zone]}]})
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="ssd", model_version="1", **kw)


def run(eng: RuleEngine, frames: list[tuple[float, Detections]]) -> list:
    events = []
    for t, d in frames:
        for ev in eng.update(d, T0 + t, FRAME).events:
            VALIDATOR.validate(ev.payload(None))
            events.append((t, ev))
    return events


PARKED = (20, 300, 120, 380, "car")  # bottom centre (70, 380) is inside the kerb zone


def test_parked_car_opens_once_after_dwell_and_closes_after_grace():
    frames = [(t * 0.5, dets((*PARKED, 1))) for t in range(0, 41)]  # 0..20 s present
    frames += [(20 + t * 0.5, dets()) for t in range(1, 16)]  # gone for 7.5 s
    events = run(engine(), frames)
    kinds = [(t, ev.event) for t, ev in events]
    assert kinds == [(10.0, "opened"), (25.5, "closed")]
    opened, closed = events[0][1].payload(None), events[1][1].payload(None)
    assert opened["incident_id"] == closed["incident_id"] and (opened["seq"], closed["seq"]) == (1, 2)
    assert opened["dwell_s"] == 10.0 and opened["subject"]["track_ids"] == [1]
    assert opened["subject"]["box"] == [0.0312, 0.625, 0.1875, 0.7917]
    assert closed["ended_at"] == "2025-11-22T03:00:20.000Z" and closed["close_reason"] == "left"
    assert closed["dwell_s"] == 20.0
    assert events[0][1].needs_snapshot and not events[1][1].needs_snapshot


def test_dwell_timer_survives_id_switches_and_missed_detections():
    """Same car: id 1 → 2 (switch) → gap of 3 s → id 3 → 4 with a 0.5 s gap, jittering a few pixels."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(0, 27):  # 0..13 s at 2 fps
        t = i * 0.5
        tid = 1 if t < 3 else 2 if t < 5 else 3 if t < 9 else 4
        if 5 <= t < 8 or t == 10.0:
            frames.append((t, dets()))  # occluded / missed
            continue
        shift = 0 if tid == 1 else 8  # boxes after the switch sit 8 px off: the new id's own spot is nearer
        jitter = rng.uniform(-2, 2, 4) + [shift, 0, shift, 0]
        frames.append((t, dets((*(np.array(PARKED[:4]) + jitter), "car", tid))))
    events = run(engine(), frames)
    assert [(t, ev.event) for t, ev in events] == [(10.5, "opened")]  # timed from t=0; 10.0 was missed
    payload = events[0][1].payload(None)
    assert payload["dwell_s"] == 10.5
    assert payload["subject"]["track_ids"] == [1, 2, 3, 4]


def test_class_flip_car_truck_keeps_the_timer():
    frames = [(t * 0.5, dets((*PARKED[:4], "car" if t % 3 else "truck", 5))) for t in range(0, 25)]
    assert [(t, ev.event) for t, ev in run(engine(), frames)] == [(10.0, "opened")]


def test_moving_traffic_and_short_queue_never_fire():
    frames = []
    for i in range(0, 80):  # 40 s: a car every 4 s drives through the kerb zone at 60 px per frame
        t = i * 0.5
        objs = []
        for k in range(10):
            x = -100 + (t - 4 * k) * 120
            if t - 4 * k >= 0 and x < 640:
                objs.append((x, 300, x + 100, 380, "car", 100 + k))
        if 30 <= t < 38:  # one queues 8 s at the light, less than the 10 s dwell
            objs.append((150, 320, 250, 400, "car", 900))
        frames.append((t, dets(*objs)))
    assert run(engine(), frames) == []


def test_passing_cars_do_not_refresh_a_departed_cars_spot():
    """A car parks 8 s then leaves; new cars (new ids, driving) cross that exact spot: no incident."""
    frames = [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 17)]  # 0..8 s parked
    for i in range(17, 60):
        t = i * 0.5
        x = -100 + ((t * 240) % 800)  # a fresh car driving through every ~3.3 s
        frames.append((t, dets((x, 300, x + 100, 380, "car", 1000 + int(t * 240 // 800)))))
    assert run(engine(), frames) == []


def test_untracked_boxes_of_passing_traffic_do_not_hold_open_a_departed_cars_incident():
    """As on the intersection clip: the parked car is seen driving off (its track leaves the spot), then the
    next car passes the kerb with low-score boxes the tracker leaves untracked (-1). The incident still closes
    grace_s after the car was last at its spot."""
    frames = [(i * 0.5, dets((*PARKED, 7))) for i in range(0, 31)]  # parked 0..15 s → opened at 10 s
    frames += [(15.5, dets((40, 290, 140, 370, "car", 7))), (16.0, dets((90, 270, 190, 345, "car", 7)))]
    frames += [(16.5 + i * 0.5, dets()) for i in range(4)]  # gone (out of the zone)
    frames += [(18.5, dets((25, 300, 125, 380, "car", -1, 0.25))), (19.0, dets((60, 295, 160, 370, "car", -1, 0.3)))]
    frames += [(19.5 + i * 0.5, dets()) for i in range(10)]
    events = run(engine(), frames)
    assert [(t, ev.event) for t, ev in events] == [(10.0, "opened"), (21.0, "closed")]  # last at the spot 15.5 s


def test_new_car_parking_on_a_departed_spot_is_timed_from_its_own_arrival():
    parked_a = [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 13)]  # A: 0..6 s
    gone = [(6.5 + i * 0.5, dets()) for i in range(0, 20)]  # 10 s empty (> grace 5 s)
    parked_b = [(16.5 + i * 0.5, dets((*PARKED, 2))) for i in range(0, 30)]  # B from 16.5 s
    events = run(engine(), parked_a + gone + parked_b)
    assert [(t, ev.event) for t, ev in events] == [(26.5, "opened")]


def test_size_range_and_box_anchor():
    tiny = (60, 370, 70, 380, "car", 1)  # 10 px tall: 0.02 of the frame
    frames = [(i * 0.5, dets(tiny)) for i in range(0, 25)]
    assert run(engine({"size": {"min_top": 0.05, "min_bottom": 0.1}}), frames) == []
    assert len(run(engine(), frames)) == 1
    # box anchor: a car whose bottom centre is inside but most of the box is above the zone
    tall = (100, 60, 180, 250, "car", 1)  # zone starts at y=240
    frames = [(i * 0.5, dets(tall)) for i in range(0, 25)]
    zone = {"points": [[0.0, 0.5], [0.4, 0.5], [0.4, 0.9], [0.0, 0.9]]}
    assert len(run(engine(zone), frames)) == 1
    assert run(engine({**zone, "anchor": "box", "min_inside": 0.5}), frames) == []


def test_schedule_same_input_inside_and_outside_the_window():
    # T0 is Saturday 11:00 in Asia/Shanghai
    frames = [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 41)]
    weekend = {"schedule": [{"days": "sat,sun", "start": "10:00", "end": "12:00"}]}
    weekdays = {"schedule": [{"days": "mon-fri", "start": "00:00", "end": "24:00"}]}
    evening = {"schedule": [{"days": "sat", "start": "18:00", "end": "02:00"}]}
    assert [ev.event for _, ev in run(engine(weekend), frames)] == ["opened"]
    assert run(engine(weekdays), frames) == []
    assert run(engine(evening), frames) == []
    # the same window seen from a site in UTC (03:00 Saturday) is inactive
    assert run(engine(weekend, clock_tz="UTC"), frames) == []


def test_open_incident_closes_when_the_window_ends_and_dwell_restarts_at_the_next_window():
    # windows Sat 11:00-11:01 and 11:02-11:03 Shanghai; the car stays parked from 11:00:00 to 11:03:00
    zone = {"schedule": [
        {"days": "sat", "start": "11:00", "end": "11:01"}, {"days": "sat", "start": "11:02", "end": "11:03"},
    ]}
    frames = [(i * 1.0, dets((*PARKED, 1))) for i in range(0, 181)]
    events = run(engine(zone), frames)
    assert [(t, ev.event, ev.close_reason) for t, ev in events] == [
        (10.0, "opened", None), (60.0, "closed", "schedule_ended"),
        (130.0, "opened", None), (180.0, "closed", "schedule_ended"),
    ]
    assert events[2][1].incident_id != events[0][1].incident_id
    assert events[2][1].started_at == T0 + 120  # dwell counts from the window's start, not from first sight


def test_hot_reload_keeps_state_of_unchanged_zones_and_closes_removed_ones():
    eng = engine(zones=[
        {"name": "kerb", "type": "no_parking", "points": KERB, "dwell_s": 10, "grace_s": 5},
        {"name": "other", "type": "no_parking", "points": KERB, "dwell_s": 4, "grace_s": 5},
    ])
    events = run(eng, [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 13)])  # 0..6 s
    assert [(t, ev.zone_name, ev.event) for t, ev in events] == [(4.0, "other", "opened")]
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [
        {"name": "kerb", "type": "no_parking", "points": [[0.0, 0.45], [0.35, 0.45], [0.35, 0.9], [0.0, 0.9]],
         "dwell_s": 8, "grace_s": 5},
    ]}]})
    eng.reconfigure(cfg.cameras[0])
    events = run(eng, [(6.5 + i * 0.5, dets((*PARKED, 1))) for i in range(0, 10)])
    # the removed zone's incident closes at the next update; kerb keeps its timer (from 0 s) with the new dwell 8 s
    assert [(t, ev.zone_name, ev.event) for t, ev in events] == [(6.5, "other", "closed"), (8.0, "kerb", "opened")]
    assert events[0][1].close_reason == "zone_removed"


def test_flush_closes_open_incidents_and_updates_are_rate_limited():
    eng = engine(update_every_s=5)
    events = run(eng, [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 45)])  # 0..22 s
    assert [(t, ev.event) for t, ev in events] == [(10.0, "opened"), (15.0, "updated"), (20.0, "updated")]
    assert [ev.seq for _, ev in events] == [1, 2, 3]
    closing = eng.flush(T0 + 23)
    assert [(ev.event, ev.seq, ev.close_reason) for ev in closing] == [("closed", 4, "shutdown")]
    assert eng.flush(T0 + 24) == []


@pytest.mark.parametrize("tolerance,expected", [(0.35, 1), (0.05, 0)])
def test_stationary_tolerance_is_relative_to_the_box(tolerance, expected):
    # the car creeps 0.4 px per frame: 12 px over 15 s, ~13% of its 89 px size
    frames = [(i * 0.5, dets((20 + i * 0.4, 300, 120 + i * 0.4, 380, "car", 1))) for i in range(0, 30)]
    assert len(run(engine({"stationary_tolerance": tolerance}), frames)) == expected


def test_disabling_a_zone_by_hot_reload_closes_its_incident_and_stops_it():
    eng = engine()
    events = run(eng, [(i * 0.5, dets((*PARKED, 1))) for i in range(0, 25)])
    assert [ev.event for _, ev in events] == ["opened"]
    cam = eng.camera.model_copy(deep=True)
    cam.zones[0].enabled = False
    eng.reconfigure(cam)
    events = run(eng, [(12.5 + i * 0.5, dets((*PARKED, 1))) for i in range(0, 40)])
    assert [(t, ev.event, ev.close_reason) for t, ev in events] == [(12.5, "closed", "zone_removed")]
