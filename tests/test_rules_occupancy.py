"""parking zones (legal bays): occupancy counted from constructed detections and frames, held through missed
detections, published as one figure per reporting interval; configuration errors name the zone and the cause."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, parse_config
from edge.detections import Detections
from edge.rules import RuleEngine, Scene
from tests.test_parking_appearance import frame_with, road
from tests.test_rules_parking import FRAME, T0, dets

LOT = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]  # the lower half of the frame
# three cars parked side by side (bottom centres inside the lot), 120 x 80 px each
CARS = [(20, 300, 140, 380), (200, 300, 320, 380), (380, 300, 500, 380)]
# three bays under them; the middle bay stays free in the bay tests
BAYS = [
    [[0.02, 0.68], [0.23, 0.68], [0.23, 0.82], [0.02, 0.82]],
    [[0.30, 0.68], [0.51, 0.68], [0.51, 0.82], [0.30, 0.82]],
    [[0.58, 0.68], [0.79, 0.68], [0.79, 0.82], [0.58, 0.82]],
]


def engine(**zone) -> RuleEngine:
    z = {"name": "lot", "type": "parking", "points": LOT, "capacity": 3, "report_every_s": 60, "grace_s": 5, **zone}
    cfg = parse_config(
        {
            "edge_id": "edge-t",
            "cameras": [{"id": "cam-1", "url": "x.mp4", "location": {"grid_cell": "330102-003-04-01"}, "zones": [z]}],
        }
    )
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="ssd", model_version="1")


def cars(*idx: int, first_track: int = 1) -> Detections:
    return dets(*[(*CARS[i], "car", first_track + i) for i in idx])


def occupied(eng: RuleEngine) -> tuple[int, int, list[int] | None]:
    (rule,) = eng.rules.values()
    return rule.current  # type: ignore[attr-defined]


def test_counts_confirmed_cars_and_publishes_one_figure_per_interval() -> None:
    eng = engine()
    figures = []
    for i in range(130):  # 1 sample per second for 130 s: car 0 throughout, car 1 from 30 s, car 2 never
        d = cars(0, 1) if i >= 30 else cars(0)
        out = eng.update(d, T0 + i, FRAME)
        figures += out.occupancy
        assert out.events == []  # occupancy is a figure, never an incident
        if i == 0:
            assert occupied(eng)[0] == 0  # one sighting is not yet a parked car
        if i == 1:
            assert occupied(eng)[0] == 1
    assert [f.timestamp - T0 for f in figures] == [60, 120]
    first, second = (f.to_dict() for f in figures)
    # samples 0..60: car 0 counts from sample 1 (60 samples), car 1 from sample 31 (30 samples) -> 90 / 61
    assert (first["occupied"], first["capacity"], first["samples"], first["vehicles"]) == (2, 3, 61, 2)
    assert first["occupied_mean"] == pytest.approx(90 / 61, abs=1e-3)
    assert (second["occupied"], second["samples"], second["occupied_mean"]) == (2, 60, 2.0)
    assert first["zone"] == "lot" and first["camera_id"] == "cam-1" and first["grid_cell"] == "330102-003-04-01"
    assert first["method"] == "count" and first["bays_occupied"] is None and first["at"].endswith("Z")


def test_a_car_the_detector_misses_keeps_counting_for_grace_s_without_frames() -> None:
    eng = engine(grace_s=5)
    seen = []
    for i in range(20):  # car 0 detected in samples 0-5 and 12-19 only; car 1 detected in every second sample
        d = [
            c
            for c in ((*CARS[0], "car", 1) if i < 6 or i >= 12 else None, (*CARS[1], "car", 2) if i % 2 == 0 else None)
            if c
        ]
        eng.update(dets(*d), T0 + i, FRAME)
        seen.append(occupied(eng)[0])
    # car 1 holds through every miss; car 0 holds 5 s (grace) after its last detection at 5 s, then is gone,
    # and counts again from its second sighting after it came back
    assert seen == [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2]


def test_capacity_caps_occupied_and_vehicles_tell_the_overflow() -> None:
    eng = engine(capacity=2)
    for i in range(3):
        eng.update(cars(0, 1, 2), T0 + i, FRAME)
    assert occupied(eng)[:2] == (2, 3)


def test_passing_traffic_never_counts() -> None:
    eng = engine()
    for i in range(30):  # a car drives along the lot, 60 px per sample (half its width), one track
        x = 10 + 60 * i % 500
        eng.update(dets((x, 300, x + 120, 380, "car", 7)), T0 + i, FRAME)
        assert occupied(eng)[0] == 0


def test_bays_count_the_bays_taken() -> None:
    eng = engine(capacity=None, bays=BAYS)
    for i in range(3):  # cars over bays 0 and 2; a third car between the bays takes none
        eng.update(dets((*CARS[0], "car", 1), (*CARS[2], "car", 3), (250, 420, 330, 470, "car", 4)), T0 + i, FRAME)
    n, vehicles, bays = occupied(eng)
    assert (n, vehicles, bays) == (2, 3, [0, 2])
    (rule,) = eng.rules.values()
    assert rule.capacity == 3  # type: ignore[attr-defined]


def test_with_frames_a_parked_car_holds_while_its_patch_matches_and_drops_when_it_leaves() -> None:
    base = road()
    parked = frame_with((1, CARS[0]), base=base)
    eng = engine(grace_s=30)
    counts = []
    for i in range(40):
        here = i < 30
        detected = here and i % 3 == 0  # a weak detector: one sample in three
        img = parked if here else base
        eng.update(dets((*CARS[0], "car", -1, 0.3)) if detected else dets(), T0 + i, FRAME, Scene(img))
        counts.append(occupied(eng)[0])
    assert counts[0] == 0 and all(c == 1 for c in counts[1:30])  # detected once, then held by its appearance
    assert all(c == 0 for c in counts[30:])  # the kerb shows road again: gone at once, not after grace_s


def test_outside_the_schedule_no_figure() -> None:
    # T0 is 11:00 Asia/Shanghai: a night-time bay (19:00-07:00) is not a legal space now
    eng = engine(report_every_s=10, schedule=[{"days": "mon-sun", "start": "19:00", "end": "07:00"}])
    figures = [f for i in range(30) for f in eng.update(cars(0), T0 + i, FRAME).occupancy]
    assert figures == [] and occupied(eng)[0] == 1  # it keeps counting, it just does not report


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ({"capacity": None}, "a parking zone needs capacity (its spaces) or bays"),
        ({"capacity": 4, "bays": BAYS}, "capacity 4 differs from the 3 bays drawn"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": None, "bays": [BAYS[0], [[0.1, 0.1], [0.2, 0.2]]]}, "bay 1: a polygon needs at least 3 points"),
        (
            {"capacity": None, "bays": [[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]]},
            "bay 0: point 1 (1.2, 0.1) is outside 0..1",
        ),
    ],
)
def test_bad_parking_zones_are_refused_naming_the_zone(zone: dict, message: str) -> None:
    z = {"name": "lot", "type": "parking", "points": LOT, "capacity": 3, **zone}
    with pytest.raises(ConfigError) as e:
        parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]})
    assert "cameras[0].zones[0]" in str(e.value) and message in str(e.value), str(e.value)
