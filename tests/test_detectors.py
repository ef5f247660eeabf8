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


def _old_letterbox_tensor(images, hw, stride=32):
    """The YOLO preprocessing before LetterboxBatcher: copyMakeBorder, stacked transposed views, float32 / 255."""
    tensors, boxes = [], []
    th, tw = hw
    for img in images:
        h, w = img.shape[:2]
        scale = min(th / h, tw / w)
        nw, nh = round(w * scale), round(h * scale)
        if (nw, nh) != (w, h):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = round((th - nh) / 2 - 0.1), round((tw - nw) / 2 - 0.1)
        padded = cv2.copyMakeBorder(img, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT,
                                    value=(114, 114, 114))
        tensors.append(padded[:, :, ::-1].transpose(2, 0, 1))
        boxes.append((scale, left, top))
    return np.ascontiguousarray(np.stack(tensors), dtype=np.float32) / 255.0, boxes


@pytest.mark.parametrize("size", [(640, 640), (320, 320), (480, 640)])
def test_one_pass_preprocessing_equals_the_old_path_on_real_frames(media_dir, size):
    from edge.detectors.postprocess import LetterboxBatcher

    frames = []
    for name in ("crowd_plaza_1.mp4", "traffic_intersection_cctv_1.mp4", "pedestrians_campus_cctv_4.avi"):
        cap = cv2.VideoCapture(str(media_dir / name))
        ok, img = cap.read()
        cap.release()
        assert ok
        frames.append(img)
    frames.append(np.ascontiguousarray(frames[0][:300, :200]))  # portrait crop (a tile): pads left and right
    old, old_boxes = _old_letterbox_tensor(frames, size)
    batcher = LetterboxBatcher(size)
    new, boxes = batcher(frames)
    assert new.shape == old.shape and new.dtype == np.float32 and new.flags.c_contiguous
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-6)  # x * (1/255) vs x / 255: last-bit differences
    assert [(b.scale, b.pad_x, b.pad_y) for b in boxes] == old_boxes
    again, _ = batcher(frames[:2])  # reused buffers: a smaller batch after a larger one is still right
    np.testing.assert_allclose(again, old[:2], rtol=0, atol=1e-6)


def test_yolo_boxes_are_the_same_with_the_one_pass_preprocessing(media_dir, shared_models_dir):
    from edge.detectors.postprocess import decode_yolo_output
    from edge.detectors.yolo_onnx import OnnxYolo

    # random weights: class scores are ~1e-4, so decode at 1e-5 to have boxes to compare
    det = OnnxYolo(shared_models_dir / "yolo11n-untrained-640.onnx", score_threshold=1e-5, runtime="onnxruntime")
    cap = cv2.VideoCapture(str(media_dir / "traffic_intersection_cctv_1.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    new = det.detect(frame)
    old_tensor, _ = _old_letterbox_tensor([frame], det.input_hw)
    raw = det.session.run(None, {det.input_name: old_tensor})[0]
    new_raw = det.session.run(None, {det.input_name: det._batcher([frame])[0]})[0]
    np.testing.assert_allclose(new_raw, raw, rtol=1e-4, atol=1e-4)
    (ref,) = decode_yolo_output(raw, det.num_classes, 1e-5, det.nms_iou, det.max_det)
    lb = det._batcher([frame])[1][0]
    assert len(new) == len(ref.scores) > 0
    np.testing.assert_allclose(new.xyxy, lb.to_source(ref.xyxy), atol=1e-3)
    np.testing.assert_allclose(new.scores, ref.scores, atol=1e-5)
    assert new.class_ids.tolist() == ref.class_ids.astype(int).tolist()


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


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("name", ["yolo11n-untrained-640.onnx", "yolo26n-untrained-320.onnx",
                                  "yolo26n-untrained-640-end2end.onnx"])
def test_untrained_onnx_models_run(shared_models_dir, name, runtime):
    det = build_detector(DetectorConfig(kind="onnx_yolo", model_path=shared_models_dir / name, score_threshold=0.01,
                                        runtime=runtime))
    assert det.backend.runtime == runtime
    assert det.class_names == [str(i) for i in range(80)]  # names read from the metadata
    imgs = [np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)] * 2
    out = det.detect_batch(imgs)
    assert len(out) == 2
    for d in out:
        assert d.xyxy.dtype == np.float32 and (d.xyxy[:, 2] <= 640).all() and (d.xyxy[:, 3] <= 360).all()
    assert set(det.last_timings) == {"preprocess", "inference", "postprocess"}


def test_onnx_metadata_is_read_without_a_runtime(shared_models_dir):
    import onnxruntime as ort

    from edge.detectors.yolo_onnx import onnx_metadata

    for path in sorted(shared_models_dir.glob("*.onnx")):
        expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert onnx_metadata(path) == expected.custom_metadata_map
        assert "names" in onnx_metadata(path)


@pytest.mark.parametrize("name", ["yolo11n-untrained-640.onnx", "yolo26n-untrained-320.onnx"])
def test_openvino_and_onnxruntime_give_the_same_boxes_on_a_real_frame(media_dir, shared_models_dir, name):
    from edge.detectors.yolo_onnx import OnnxYolo

    cap = cv2.VideoCapture(str(media_dir / "crowd_plaza_1.mp4"))
    frames = [cap.read()[1] for _ in range(2)]
    cap.release()
    ort_det = OnnxYolo(shared_models_dir / name, score_threshold=1e-5, runtime="onnxruntime")
    ov_raw = OnnxYolo(shared_models_dir / name, score_threshold=1e-5, runtime="openvino")
    ov_2s = OnnxYolo(shared_models_dir / name, score_threshold=1e-5, runtime="openvino", streams=2)
    assert ov_raw.class_names == ort_det.class_names and ov_raw.input_hw == ort_det.input_hw
    a = ort_det.runner.run(ort_det._batcher(frames)[0], ort_det.dynamic_batch)
    for ov in (ov_raw, ov_2s):
        b = ov.runner.run(ov._batcher.uint8(frames)[0])
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)  # float32 kernels differ in the last bits
        for da, db in zip(ort_det.detect_batch(frames), ov.detect_batch(frames), strict=True):
            assert len(da) == len(db) > 0
            np.testing.assert_allclose(db.xyxy, da.xyxy, atol=0.05)


def test_auto_runtime_prefers_openvino_when_installed(shared_models_dir):
    det = build_detector(DetectorConfig(kind="onnx_yolo", model_path=shared_models_dir / "yolo26n-untrained-320.onnx"))
    assert det.backend.runtime == "openvino"


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


def test_bench_peer_skips_with_a_clear_message_without_ultralytics():
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("ultralytics") is not None:
        pytest.skip("ultralytics is installed here")
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_peer.py"
    out = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ultralytics is not installed" in out.stdout


def test_zone_windows_cut_a_kerb_into_near_square_pieces():
    """A no_parking kerb strip gets zoomed windows (bounding box + margin) cut along its length so each piece
    is at most 1.5 times wider than tall; a zone covering most of the frame, or another zone type, gets none."""
    import itertools

    from edge.config import TilingConfig, ZoneConfig
    from edge.detectors.tiling import MAX_ASPECT, windows_for_size

    kerb = ZoneConfig(name="kerb", type="no_parking", points=[[0.0, 0.62], [0.76, 0.68], [0.76, 0.9], [0.0, 0.82]])
    crowd = ZoneConfig(name="floor", type="crowd", area_m2=50,
                       points=[[0.1, 0.1], [0.3, 0.1], [0.3, 0.2], [0.1, 0.2]])
    whole = ZoneConfig(name="all", type="no_parking", points=[[0, 0], [1, 0], [1, 1], [0, 1]])
    tiling = TilingConfig(zone_windows=True).with_zone_windows([kerb, crowd, whole])
    assert len(tiling.regions) == 2  # the kerb and the whole-frame zone; the crowd zone is not a parking zone
    x1, y1, x2, y2 = tiling.regions[0]
    assert (x1, x2) == (0.0, pytest.approx(0.76 + 0.25 * 0.28)) and y1 == pytest.approx(0.62 - 0.25 * 0.28)
    windows = windows_for_size(640, 360, tiling)
    assert windows[-1] == (0, 0, 640, 360)  # the full frame, once: the whole-frame zone adds no window
    pieces = windows[:-1]
    assert len(pieces) == 3
    assert all((b - a) <= MAX_ASPECT * (d - c) + 1 for a, c, b, d in pieces)
    assert pieces[0][0] == 0 and pieces[-1][2] == round(x2 * 640)  # together they cover the window
    for (_, _, right, _), (left, _, _, _) in itertools.pairwise(pieces):  # neighbours share tiling.overlap
        assert right - left == pytest.approx(tiling.overlap * (pieces[0][2] - pieces[0][0]), abs=2)
    assert TilingConfig().with_zone_windows([kerb]).regions == []  # off unless asked
    with pytest.raises(ValueError, match="not a box inside the frame"):
        TilingConfig(regions=[(0.5, 0.2, 0.4, 0.3)])
