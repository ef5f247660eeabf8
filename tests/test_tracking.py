"""ByteTracker on constructed detections."""

from __future__ import annotations

from edge.config import TrackerConfig
from edge.detections import Detections
from edge.tracking import ByteTracker


def dets(*rows):
    """rows of (x, y, score, class_name)."""
    ids = {"car": 3, "person": 1, "truck": 8}
    return Detections([[x, y, x + 40, y + 40] for x, y, _, _ in rows], [r[2] for r in rows],
                      [ids[r[3]] for r in rows], [r[3] for r in rows])


def test_id_survives_a_two_frame_miss_and_low_score_recovery():
    t = ByteTracker(TrackerConfig())
    a = t.update(dets((0, 0, 0.9, "car")), 0.0).track_ids[0]
    assert t.update(dets((10, 0, 0.9, "car")), 0.5).track_ids[0] == a
    t.update(Detections.empty(), 1.0)
    t.update(Detections.empty(), 1.5)
    assert t.update(dets((40, 0, 0.3, "car")), 2.0).track_ids[0] == a  # low-score pass


def test_classes_never_match_and_crossing_objects_keep_ids():
    t = ByteTracker(TrackerConfig())
    out = t.update(dets((0, 0, 0.9, "car"), (100, 0, 0.9, "car")), 0.0)
    a, b = out.track_ids
    for i, ts in enumerate([0.5, 1.0, 1.5], start=1):
        out = t.update(dets((20 * i, 0, 0.9, "car"), (100 - 20 * i, 0, 0.9, "car")), ts)
        assert out.track_ids.tolist() == [a, b]
    p = t.update(dets((80, 0, 0.9, "person")), 2.0).track_ids[0]
    assert p not in (a, b)


def test_max_age_expiry():
    t = ByteTracker(TrackerConfig(max_age_s=2.0))
    a = t.update(dets((0, 0, 0.9, "car")), 0.0).track_ids[0]
    t.update(dets((0, 0, 0.9, "car")), 1.0)
    t.update(Detections.empty(), 3.5)
    assert t.update(dets((0, 0, 0.9, "car")), 4.0).track_ids[0] != a


def test_a_van_relabelled_car_to_truck_keeps_its_id():
    """SSD flips between car and truck on the same vehicle; the track must not restart (or dwell timers would)."""
    t = ByteTracker(TrackerConfig())
    ids = [t.update(dets((0, 0, 0.9, name)), ts).track_ids[0]
           for ts, name in [(0.0, "car"), (0.5, "truck"), (1.0, "car"), (1.5, "truck")]]
    assert ids[0] >= 0 and len(set(ids)) == 1, ids
