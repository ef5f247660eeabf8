"""Ultralytics YOLO (YOLOv8 / YOLO11 / YOLO26) ONNX exports through ONNX Runtime.

Both export layouts are decoded (see ``postprocess.yolo_layout``): the raw head ``[B, 4+nc, N]`` with our
own class-aware NMS, and end-to-end ``[B, N, 6]``. Class names and input size come from the metadata
ultralytics writes into the file (``names``, ``imgsz``, ``stride``); the config can override both.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.detections import Detections
from edge.detectors.base import BaseDetector, DetectorError
from edge.detectors.postprocess import Letterbox, OutputLayoutError, decode_yolo_output, letterbox, yolo_layout

log = logging.getLogger(__name__)

DEFAULT_IMGSZ = 640


def parse_names(text: str) -> list[str]:
    """Ultralytics ``names`` metadata (a Python dict literal like ``"{0: 'person', 1: 'bicycle'}"``) → list by id.

    Parsed with ``ast.literal_eval`` (never ``eval``). Missing ids become their number as a string.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise DetectorError(f"model metadata 'names' is not a dict/list literal: {text[:80]!r} ({e})") from None
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if not isinstance(value, dict) or not all(isinstance(k, int) and k >= 0 for k in value):
        raise DetectorError(f"model metadata 'names' must map class ids to names, got {text[:80]!r}")
    if not value:
        return []
    return [str(value.get(i, i)) for i in range(max(value) + 1)]


def parse_imgsz(text: str) -> tuple[int, int]:
    """Metadata ``imgsz`` ('[640, 640]' or '640') → (h, w)."""
    try:
        value = ast.literal_eval(text)
        if isinstance(value, int):
            return value, value
        h, w = (int(v) for v in value)
        return h, w
    except (ValueError, SyntaxError, TypeError) as e:
        raise DetectorError(f"model metadata 'imgsz' is not a size: {text!r} ({e})") from None


def choose_providers(requested: list[str], available: list[str]) -> list[str]:
    """Requested execution providers that this onnxruntime build has, CPU always last as the fallback."""
    chosen = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        log.warning(
            "ONNX Runtime execution provider(s) %s not available in this installation; available: %s."
            " Falling back to %s.", ", ".join(missing), ", ".join(available), ", ".join(chosen or ["CPU"]),
        )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _is_dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim <= 0


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OnnxYolo(BaseDetector):
    """YOLO ONNX model; class ids are the model's own contiguous ids."""

    def __init__(
        self,
        model_path: Path,
        score_threshold: float = 0.25,
        nms_iou: float = 0.45,
        input_size: int | None = None,
        providers: list[str] | None = None,
        threads: int = 0,
        class_names: list[str] | None = None,
        name: str | None = None,
        max_det: int = 300,
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise DetectorError(f"ONNX model not found: {model_path} (set detector.model_path in cameras.yaml)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = choose_providers(providers or ["CPUExecutionProvider"], ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise DetectorError(f"cannot load ONNX model {model_path}: {e}") from None

        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise DetectorError(f"{model_path.name}: expected an image input [B, 3, H, W], got {inp.shape}")
        self.input_name = inp.name
        self.dynamic_batch = _is_dynamic(inp.shape[0])
        static_hw = None if _is_dynamic(inp.shape[2]) or _is_dynamic(inp.shape[3]) else (inp.shape[2], inp.shape[3])
        self.input_hw = self._input_size(model_path, input_size, static_hw, meta)
        self.stride = int(meta.get("stride", 32))

        meta_names = parse_names(meta["names"]) if "names" in meta else None
        out_shape = self.session.get_outputs()[0].shape
        self.class_names = list(class_names or meta_names or [])
        if not self.class_names and len(out_shape) == 3 and not _is_dynamic(out_shape[1]) and out_shape[2] != 6:
            self.class_names = [str(i) for i in range(out_shape[1] - 4)]
        if class_names and meta_names and len(class_names) != len(meta_names):
            log.warning("%s: detector.class_names has %d names but the model metadata has %d",
                        model_path.name, len(class_names), len(meta_names))
        self.num_classes = len(self.class_names) or None
        if all(isinstance(d, int) and d > 0 for d in out_shape):
            try:
                self.layout = yolo_layout(tuple(out_shape), self.num_classes)
            except OutputLayoutError as e:
                raise DetectorError(f"{model_path.name}: {e}") from None
        else:
            self.layout = "dynamic"

        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_det = max_det
        self.name = name or model_path.stem
        self.version = f"{meta.get('version', 'onnx')}-{file_digest(model_path)[:12]}"
        self.model_path = model_path

    @staticmethod
    def _input_size(
        path: Path, override: int | None, static_hw: tuple[int, int] | None, meta: dict[str, str]
    ) -> tuple[int, int]:
        if override:
            if static_hw and static_hw != (override, override):
                raise DetectorError(
                    f"{path.name} has a fixed input size {static_hw[0]}x{static_hw[1]};"
                    f" detector.input_size {override} needs a model exported with dynamic=True or that size"
                )
            return override, override
        if "imgsz" in meta:
            return parse_imgsz(meta["imgsz"])
        return static_hw or (DEFAULT_IMGSZ, DEFAULT_IMGSZ)

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        with self._timed("preprocess"):
            boxes: list[Letterbox] = []
            tensors = []
            for img in images:
                padded, lb = letterbox(img, self.input_hw, self.stride)
                boxes.append(lb)
                tensors.append(padded[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC → RGB CHW
            batch = np.ascontiguousarray(np.stack(tensors), dtype=np.float32) / 255.0
        with self._timed("inference"):
            if self.dynamic_batch:
                outputs = [self.session.run(None, {self.input_name: batch})[0]]
            else:
                outputs = [self.session.run(None, {self.input_name: batch[i : i + 1]})[0] for i in range(len(batch))]
        with self._timed("postprocess"):
            out = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
            try:
                raw = decode_yolo_output(out, self.num_classes, self.score_threshold, self.nms_iou, self.max_det)
            except OutputLayoutError as e:
                raise DetectorError(f"{self.model_path.name}: {e}") from None
            return [self._to_detections(r.xyxy, r.scores, r.class_ids, lb) for r, lb in zip(raw, boxes, strict=True)]

    def _to_detections(self, xyxy: np.ndarray, scores: np.ndarray, ids: np.ndarray, lb: Letterbox) -> Detections:
        ids = ids.astype(np.int32)
        n = len(self.class_names)
        names = np.array([self.class_names[c] if 0 <= c < n else str(c) for c in ids], dtype=object)
        return Detections(lb.to_source(xyxy), scores, ids, names)
