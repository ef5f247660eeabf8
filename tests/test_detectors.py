"""Detector decoders on constructed tensors, the untrained YOLO ONNX files, and SSD on real footage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.detectors import DetectorError, build_detector
from edge.detectors.postprocess import OutputLayoutError, decode_yolo_output, letterbox, nms
from tests.fixtures.media import clip


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5, np.array([0, 0, 1]))
    assert keep.tolist() == [0, 2]


def test_letterbox_round_trip():
    img = np.zeros((480, 640, 3), np.uint8)
    out, lb = letterbox(img, 320)
    assert out.shape == (320, 320, 3) and out[0, 0, 0] == 114
    back = lb.to_source(np.array([[0, 40, 320, 280]], np.float32))
    np.testing.assert_allclose(back, [[0, 0, 640, 480]], atol=1)


def test_decode_raw_and_end2end():
    raw = np.zeros((1, 6, 10), np.float32)  # 2 classes, 10 anchors
    raw[0, :, 0] = [50, 50, 20, 20, 0.9, 0.1]
    raw[0, :, 1] = [51, 50, 20, 20, 0.8, 0.1]  # duplicate → suppressed
    raw[0, :, 2] = [10, 10, 4, 4, 0.1, 0.7]
    (r,) = decode_yolo_output(raw, 2, 0.25, 0.45)
    np.testing.assert_allclose(r.xyxy, [[40, 40, 60, 60], [8, 8, 12, 12]])
    assert r.class_ids.tolist() == [0, 1]
    e2e = np.array([[[1, 2, 3, 4, 0.9, 5], [0, 0, 1, 1, 0.1, 2]]], np.float32)
    (r,) = decode_yolo_output(e2e, 80, 0.25, 0.45)
    assert r.xyxy.tolist() == [[1, 2, 3, 4]] and r.class_ids.tolist() == [5]


@pytest.mark.parametrize("shape", [(1, 5, 7), (1, 84), (2, 3, 4, 5)])
def test_unknown_layout_is_a_clear_error(shape):
    with pytest.raises(OutputLayoutError, match=r"unsupported YOLO output shape \["):
        decode_yolo_output(np.zeros(shape, np.float32), 80, 0.25, 0.45)


@pytest.mark.parametrize("name", ["yolo11n-untrained-640.onnx", "yolo26n-untrained-320.onnx",
                                  "yolo26n-untrained-640-end2end.onnx"])
def test_untrained_onnx_models_run(shared_models_dir, name):
    det = build_detector(DetectorConfig(kind="onnx_yolo", model_path=shared_models_dir / name, score_threshold=0.01))
    assert det.class_names == [str(i) for i in range(80)]  # names read from the metadata
    imgs = [np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)] * 2
    out = det.detect_batch(imgs)
    assert len(out) == 2
    for d in out:
        assert d.xyxy.dtype == np.float32 and (d.xyxy[:, 2] <= 640).all() and (d.xyxy[:, 3] <= 360).all()
    assert set(det.last_timings) == {"preprocess", "inference", "postprocess"}


def test_missing_onnx_file_is_clear(tmp_path):
    with pytest.raises(DetectorError, match="ONNX model not found"):
        build_detector(DetectorConfig(kind="onnx_yolo", model_path=tmp_path / "nope.onnx"))


@pytest.mark.slow
def test_ssd_finds_cars_and_persons(media_dir):
    det = build_detector(DetectorConfig(score_threshold=0.3))  # observed: 3 cars, frame 0
    cap = cv2.VideoCapture(str(clip("traffic_intersection_cctv_1.mp4")))
    ok, frame = cap.read()
    assert ok
    d = det.detect(frame)
    assert (d.class_names == "car").sum() >= 2
    cap = cv2.VideoCapture(str(clip("crowd_plaza_1.mp4")))
    ok, frame = cap.read()
    d = build_detector(DetectorConfig(score_threshold=0.3, tiling={"enabled": True})).detect(frame)
    assert (d.class_names == "person").sum() >= 3


@pytest.mark.slow
def test_parked_cars_keep_track_ids(media_dir):
    """2 fps for 10 s of the intersection: the parked car at the top (x≈400-447, y≈15-46) keeps one id."""
    from edge.config import TrackerConfig
    from edge.tracking import ByteTracker

    det = build_detector(DetectorConfig(score_threshold=0.3))
    tracker = ByteTracker(TrackerConfig(low_score=0.3))
    cap = cv2.VideoCapture(str(clip("traffic_intersection_cctv_1.mp4")))
    ids = []
    for i in range(300):
        if i % 15:
            cap.grab()
            continue
        ok, frame = cap.read()
        assert ok
        out = tracker.update(det.detect(frame), i / 30)
        near = [int(t) for b, t in zip(out.xyxy, out.track_ids, strict=True) if abs(b[0] - 400) < 25 and b[1] < 40]
        ids.extend(t for t in near if t >= 0)
    assert len(ids) >= 10
    assert len(set(ids)) == 1, ids


@pytest.mark.slow
def test_per_camera_tiling_in_one_batch(media_dir):
    """Cameras with and without tiling share one batch; each image gets exactly its own camera's treatment."""
    from edge.config import TilingConfig

    cap = cv2.VideoCapture(str(clip("crowd_plaza_1.mp4")))
    ok, frame = cap.read()
    assert ok
    cfg = DetectorConfig(score_threshold=0.3)
    det = build_detector(cfg)
    plain_alone = det.detect(frame)
    tiled_alone = build_detector(cfg.model_copy(update={"tiling": TilingConfig(enabled=True)})).detect(frame)
    plain, tiled = det.detect_batch([frame, frame], [None, TilingConfig(enabled=True)])
    np.testing.assert_allclose(plain.xyxy, plain_alone.xyxy, atol=0.5)
    np.testing.assert_allclose(tiled.xyxy, tiled_alone.xyxy, atol=0.5)
    assert (tiled.class_names == "person").sum() > (plain.class_names == "person").sum()
    with pytest.raises(DetectorError, match="2 images but 1 tiling"):
        det.detect_batch([frame, frame], [None])


@pytest.mark.slow
def test_forward_passes_are_capped_at_max_batch(media_dir):
    """16 cameras with tiling would be 80 images in one pass (GBs of activations); passes stay at max_batch and
    every image still gets its own detections, in order."""
    from edge.config import TilingConfig

    frames = []
    for name in ("traffic_intersection_cctv_1.mp4", "crowd_plaza_1.mp4"):
        cap = cv2.VideoCapture(str(clip(name)))
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    det = build_detector(DetectorConfig(score_threshold=0.3, max_batch=3))
    sizes = []
    real = det.backend.detect_batch
    det.backend.detect_batch = lambda imgs: sizes.append(len(imgs)) or real(imgs)
    out = det.detect_batch(frames * 2, [TilingConfig(enabled=True), None] * 2)  # 5 + 1 + 5 + 1 images
    assert sizes == [3, 3, 3, 3]
    solo = [det.detect_batch([f], [t])[0] for f, t in zip(frames * 2, [TilingConfig(enabled=True), None] * 2,
                                                          strict=True)]
    for a, b in zip(out, solo, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
    assert (out[0].class_names == "car").sum() >= 2 and len(out[1]) > 0
