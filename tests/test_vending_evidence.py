"""A street-vending incident's evidence: its payload lists the stall's objects, and the snapshot boxes and labels
each of them (goods and the persons at them), the stall, the zone outline and the time. Constructed frames and
detections; colours are read back from the decoded JPEG at the box edges."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from edge.snapshots import GOODS_COLOR, PERSON_COLOR, render_evidence
from tests.test_rules_parking import FRAME, dets
from tests.test_rules_vending import engine, run

W, H = FRAME
ZONE = [[0.2, 0.3], [0.8, 0.3], [0.8, 0.7], [0.2, 0.7]]  # x 128..512, y 144..336 px
VENDOR = (300, 200, 330, 280, "person", 1)
UMBRELLA = (230, 200, 290, 250, "umbrella", 2)
CHAIR = (360, 250, 385, 285, "chair", 3)


def opened_event():
    frames = [(i * 0.5, dets(VENDOR, UMBRELLA, CHAIR)) for i in range(0, 25)]
    events = run(engine({"points": ZONE}), frames)
    assert [ev.event for _, ev in events] == ["opened"]
    return events[0][1]


def looks(pixel: np.ndarray, color: tuple[int, int, int]) -> bool:
    """A JPEG pixel of a line drawn in ``color`` (BGR) on grey: the channels the colour has are well above those
    it lacks (JPEG blurs thin lines, so no exact values)."""
    p = pixel.astype(int)
    hi = [c for c in range(3) if color[c] >= 200]
    lo = [c for c in range(3) if color[c] <= 60]
    return min(p[c] for c in hi) - max(p[c] for c in lo) >= 60


def seen_near(img: np.ndarray, xy: tuple[int, int], color: tuple[int, int, int], r: int = 2) -> bool:
    x, y = xy
    patch = img[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3)
    return any(looks(p, color) for p in patch)


def test_the_payload_lists_the_stall_objects_with_their_roles() -> None:
    parts = opened_event().payload(None)["subject"]["parts"]
    assert [(p["class"], p["role"]) for p in parts] == [("umbrella", "goods"), ("chair", "goods"), ("person", "person")]
    umbrella = parts[0]
    assert umbrella["box"] == pytest.approx([230 / W, 200 / H, 290 / W, 250 / H], abs=1e-4)
    assert umbrella["track_id"] == 2 and umbrella["confidence"] == pytest.approx(0.8)


def test_the_snapshot_boxes_each_part_the_stall_the_zone_and_burns_in_the_time() -> None:
    event = opened_event()
    frame = np.full((H, W, 3), 128, dtype=np.uint8)
    jpeg = render_evidence(frame, event, tz=ZoneInfo("Asia/Shanghai"))
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (H, W, 3)
    # bottom edge midpoints: goods in magenta, the person in light blue
    assert seen_near(img, (260, 250), GOODS_COLOR)  # umbrella
    assert seen_near(img, (372, 285), GOODS_COLOR)  # chair
    assert seen_near(img, (315, 280), PERSON_COLOR)  # vendor
    assert not seen_near(img, (315, 280), GOODS_COLOR)
    # inside a box is the frame, not a line
    assert not seen_near(img, (260, 228), GOODS_COLOR) and not seen_near(img, (260, 228), PERSON_COLOR)
    # the stall's own box (red) a few pixels outside its parts: bottom edge below the chair at y 285 + margin
    assert any(seen_near(img, (280, y), (0, 0, 255), r=1) for y in range(287, 294))
    assert not seen_near(img, (280, 285), (0, 0, 255), r=1)
    # the zone's outline (orange) on its left edge
    assert seen_near(img, (128, 240), (0, 165, 255))
    # the time at the top right: the same event rendered three hours later differs there, and only there
    later = render_evidence(frame, event, tz=ZoneInfo("Asia/Shanghai"), at=event.emitted_at + 3 * 3600)
    diff = np.abs(cv2.imdecode(np.frombuffer(later, np.uint8), cv2.IMREAD_COLOR).astype(int) - img).max(axis=2) > 40
    ys, xs = np.nonzero(diff)
    assert len(ys) > 20 and ys.max() < 40 and xs.min() > W / 2
