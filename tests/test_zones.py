"""Zone geometry (anchors, box fraction, perspective size range), drawing, and the zones preview tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.annotate import draw_frame, zone_color
from edge.config import ZoneConfig
from edge.detections import Detections
from edge.zones import ZoneGeometry

REPO = Path(__file__).resolve().parents[1]
FRAME = (640, 480)
TRIANGLE = [(0.0, 0.5), (0.5, 0.5), (0.0, 1.0)]  # pixels (0,240) (320,240) (0,480)


def zone(**kw) -> ZoneConfig:
    return ZoneConfig(**{"name": "z", "type": "no_parking", "points": TRIANGLE, **kw})


def dets(boxes, names=None) -> Detections:
    n = len(boxes)
    return Detections(boxes, np.full(n, 0.9), np.zeros(n), names or ["car"] * n)


def test_anchor_modes_decide_membership():
    # box A: bottom centre (100, 400) inside, centre (100, 320) inside; the hypotenuse cuts its bottom-right corner
    # box B: bottom centre (200, 300) inside, centre (200, 200) above the zone
    # box C: bottom centre (300, 470) outside (right of the hypotenuse), most of it outside
    d = dets([[0, 240, 200, 400], [150, 100, 250, 300], [250, 400, 350, 470]])
    assert ZoneGeometry(zone()).member_mask(d, FRAME).tolist() == [True, True, False]
    assert ZoneGeometry(zone(anchor="center")).member_mask(d, FRAME).tolist() == [True, False, False]
    frac = ZoneGeometry(zone()).inside_fraction(d.xyxy, FRAME)
    cut = 2 / 3 * (160**2 - 90**2) - 120 * 70  # ∫ of (200 − x_edge(y)) over y 330..400, x_edge = 320 − 4/3 (y − 240)
    assert frac[0] == pytest.approx(1 - cut / (200 * 160))
    assert frac[2] == 0.0 and 0 < frac[1] < 0.5
    assert ZoneGeometry(zone(anchor="box", min_inside=0.5)).member_mask(d, FRAME).tolist() == [True, False, False]


def test_points_on_the_edge_count_and_classes_filter():
    g = ZoneGeometry(zone())
    assert g.contains_points(np.array([[0.0, 240.0], [160.0, 240.0], [160.0, 239.0]]), FRAME).tolist() == [
        True, True, False,
    ]
    d = dets([[0, 240, 100, 400], [0, 240, 100, 400]], ["car", "person"])
    assert g.member_mask(d, FRAME).tolist() == [True, False]  # no_parking watches vehicles
    assert g.member_mask(Detections.empty(), FRAME).tolist() == []


def test_pixel_polygon_follows_the_frame_size():
    g = ZoneGeometry(zone())
    assert g.area_px(FRAME) == pytest.approx(0.5 * 320 * 240)
    assert g.area_px((1280, 960)) == pytest.approx(0.5 * 640 * 480)
    assert g.points_px((1280, 960)).tolist() == [[0, 480], [640, 480], [0, 960]]


def test_perspective_size_range_interpolates_from_top_to_bottom():
    rect = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]  # y 240..480 px
    g = ZoneGeometry(zone(points=rect, size={"min_top": 0.05, "min_bottom": 0.2, "max_top": 0.15, "max_bottom": 0.5}))
    # near the top edge (y=250): 24..72 px allowed; near the bottom (y=470): ~94..235 px allowed
    boxes = [[10, 250 - 40, 50, 250], [60, 250 - 100, 100, 250], [110, 470 - 40, 150, 470], [160, 470 - 150, 200, 470]]
    assert g.member_mask(dets(boxes), FRAME).tolist() == [True, False, False, True]


def test_draw_frame_tints_zones_labels_and_boxes_without_touching_the_input():
    image = np.full((480, 640, 3), 255, np.uint8)
    before = image.copy()
    d = Detections([[400, 50, 500, 150]], [0.9], [0], ["car"], [7])
    out = draw_frame(image, d, [zone(), zone(name="crowd-z", type="crowd", area_m2=10,
                                             points=[(0.8, 0.6), (1.0, 0.6), (1.0, 1.0), (0.8, 1.0)])])
    assert np.array_equal(image, before)
    inside, outside = out[420, 40].astype(int), out[50, 50].astype(int)
    assert outside.tolist() == [255, 255, 255]
    red = np.array(zone_color("no_parking"))
    assert np.abs(inside - (0.3 * red + 0.7 * 255)).max() <= 2  # 30 % fill
    assert out[100, 400].tolist() != [255, 255, 255]  # the box outline
    assert (out[480 - 90: 480 - 60, 520:640] != 255).any()  # crowd zone tinted too


def test_zones_preview_tool_writes_a_png_of_a_real_frame(tmp_path, media_dir):
    out = tmp_path / "preview.png"
    res = subprocess.run(
        [sys.executable, "tools/zones_preview.py", "--config", "cameras.yaml", "--camera", "cam-intersection-01",
         "--at", "5", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "west-kerb-no-parking (no_parking)" in res.stdout
    png = cv2.imread(str(out))
    assert png.shape == (480, 640, 3)
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-ss", "5", "-i",
                          str(media_dir / "traffic_intersection_cctv_1.mp4"), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, timeout=60).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(480, 640, 3).astype(int)
    # inside the kerb zone (x 0-128, y 264-394) red is boosted; far from every zone the frame is unchanged
    assert (png[300:380, 10:100, 2].astype(int) - frame[300:380, 10:100, 2]).mean() > 20
    assert np.abs(png[420:470, 500:630].astype(int) - frame[420:470, 500:630]).mean() < 6

    bad = subprocess.run([sys.executable, "tools/zones_preview.py", "--config", "cameras.yaml", "--camera", "nope",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no camera 'nope'" in bad.stderr and "cam-intersection-01" in bad.stderr


def _frame(media_dir, name: str, at: float) -> np.ndarray:
    cap = cv2.VideoCapture(str(media_dir / name))
    cap.set(cv2.CAP_PROP_POS_MSEC, at * 1000)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def test_jpeg_is_bounded_in_width_and_bytes(media_dir):
    from edge.snapshots import SnapshotTooLarge, encode_jpeg

    image = _frame(media_dir, "crowd_plaza_1.mp4", 3.0)
    noise = np.random.default_rng(1).integers(-40, 40, image.shape)
    noisy = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    big = encode_jpeg(noisy, quality=95, max_width=1280, max_bytes=10_000_000)
    small = encode_jpeg(noisy, quality=95, max_width=1280, max_bytes=60_000)
    assert len(big) > 60_000 >= len(small)
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR) is not None
    narrow = cv2.imdecode(np.frombuffer(encode_jpeg(image, max_width=320), np.uint8), cv2.IMREAD_COLOR)
    assert narrow.shape[:2] == (180, 320)
    with pytest.raises(SnapshotTooLarge):
        encode_jpeg(noisy, max_bytes=500)


def test_crowd_evidence_shows_the_zone_and_the_figures(media_dir):
    from edge.snapshots import render_evidence
    from tests.test_rules_crowd import engine, persons

    eng = engine()
    event = eng.update(persons(30), 1_763_780_400.0, (1280, 720)).events[0]
    assert event.event == "opened" and event.needs_snapshot
    image = _frame(media_dir, "crowd_plaza_1.mp4", 3.0)
    jpeg = render_evidence(image, event)
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == image.shape
    # the whole frame is the crowd zone: tinted blue; the label box sits at the top left
    def blue_minus_red(img: np.ndarray) -> float:
        return float(img[..., 0].astype(int).mean() - img[..., 2].astype(int).mean())

    assert blue_minus_red(out) > blue_minus_red(image) + 30
    assert np.abs(out[12:30, 10:200].astype(int) - image[12:30, 10:200]).mean() > 40
