"""Ultralytics YOLO (YOLOv8 / YOLO11 / YOLO26) ONNX exports through ONNX Runtime.

Both export layouts are decoded (see ``postprocess.yolo_layout``): the raw head ``[B, 4+nc, N]`` with our
own class-aware NMS, and end-to-end ``[B, N, 6]``. Class names and input size come from the metadata
ultralytics writes into the file (``names``, ``imgsz``, ``stride``); the config can override both.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.detections import Detections
from edge.detectors.base import BaseDetector, DetectorError
from edge.detectors.postprocess import (
    Letterbox,
    LetterboxBatcher,
    OutputLayoutError,
    decode_yolo_output,
    yolo_layout,
)

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


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (ultralytics writes ``names``, ``imgsz``, ``stride`` there).

    A minimal protobuf walk over ``ModelProto`` (field 14 = repeated ``StringStringEntryProto``): every runtime
    gets the same names without depending on ``onnx`` or on a runtime that exposes the map (OpenVINO does not).
    """
    data = path.read_bytes()

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, i
            shift += 7

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = varint(buf, i)
                continue
            if wire == 1:
                i += 8
                continue
            if wire == 5:
                i += 4
                continue
            if wire != 2:
                raise DetectorError(f"{path.name}: not an ONNX model (protobuf wire type {wire})")
            n, i = varint(buf, i)
            yield number, buf[i:i + n]
            i += n

    meta: dict[str, str] = {}
    try:
        for number, value in fields(data):
            if number == 14:
                entry = dict(fields(value))
                meta[entry.get(1, b"").decode("utf-8", "replace")] = entry.get(2, b"").decode("utf-8", "replace")
    except IndexError:
        raise DetectorError(f"{path.name}: truncated or not an ONNX model") from None
    return meta


class OrtRunner:
    """ONNX Runtime session with the options measured best on a small shared CPU (docs/benchmarks.md).

    ``intra_op_num_threads`` = ``threads`` or min(2, cores); thread-pool spinning off: ORT's workers otherwise
    busy-wait between operators, which on 2 cores takes CPU from the decoders and the other threads of the worker
    (measured: same or better inference time, much less CPU per frame); all graph optimizations; one inter-op
    thread (the graph runs sequentially).
    """

    runtime = "onnxruntime"
    takes_uint8 = False  # float32 NCHW RGB 0..1

    def __init__(self, model_path: Path, threads: int, providers: list[str] | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.providers = choose_providers(providers or ["CPUExecutionProvider"], ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise DetectorError(f"cannot load ONNX model {model_path}: {e}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_shape = list(self.session.get_outputs()[0].shape)

    def prepare(self, input_hw: tuple[int, int]) -> None:
        """Nothing to do: ONNX Runtime takes any size a dynamic model allows."""

    def run(self, batch: np.ndarray, dynamic_batch: bool) -> np.ndarray:
        if dynamic_batch:
            return self.session.run(None, {self.input_name: batch})[0]
        outs = [self.session.run(None, {self.input_name: batch[i:i + 1]})[0] for i in range(len(batch))]
        return np.concatenate(outs) if len(outs) > 1 else outs[0]


class OnnxYolo(BaseDetector):
    """YOLO ONNX model; class ids are the model's own contiguous ids.

    ``runtime`` is ``onnxruntime``, ``openvino`` (``edge.detectors.openvino_yolo``) or ``auto`` (OpenVINO when the
    package is installed); the model file, metadata (names, imgsz, stride), letterbox and output decoding are the
    same for both. ``providers`` are ONNX Runtime's; OpenVINO runs on the CPU.
    """

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
        runtime: str = "auto",
        streams: int = 1,
    ) -> None:
        super().__init__()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DetectorError(f"ONNX model not found: {model_path} (set detector.model_path in cameras.yaml)")
        if runtime == "auto":
            runtime = "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"
        if runtime == "openvino":
            from edge.detectors.openvino_yolo import OpenVinoRunner

            self.runner: OrtRunner | OpenVinoRunner = OpenVinoRunner(model_path, threads, streams)
        elif runtime == "onnxruntime":
            self.runner = OrtRunner(model_path, threads, providers)
        else:
            raise DetectorError(f"unknown detector.runtime {runtime!r}: use onnxruntime or openvino")
        self.runtime = runtime

        meta = onnx_metadata(model_path)
        in_shape = self.runner.input_shape
        if len(in_shape) != 4:
            raise DetectorError(f"{model_path.name}: expected an image input [B, 3, H, W], got {in_shape}")
        self.dynamic_batch = _is_dynamic(in_shape[0])
        static_hw = None if _is_dynamic(in_shape[2]) or _is_dynamic(in_shape[3]) else (in_shape[2], in_shape[3])
        self.input_hw = self._input_size(model_path, input_size, static_hw, meta)
        self.stride = int(meta.get("stride", 32))
        self.runner.prepare(self.input_hw)

        meta_names = parse_names(meta["names"]) if "names" in meta else None
        out_shape = self.runner.output_shape
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
        self._batcher = LetterboxBatcher(self.input_hw, self.stride)

    @property
    def session(self):  # noqa: ANN201 - the ONNX Runtime session (onnxruntime only), for tests and tools
        return getattr(self.runner, "session", None)

    @property
    def input_name(self) -> str | None:
        return getattr(self.runner, "input_name", None)

    @property
    def providers(self) -> list[str]:
        return getattr(self.runner, "providers", ["CPU"])

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
            if self.runner.takes_uint8:  # layout, colour order and scaling happen inside the compiled model
                batch, boxes = self._batcher.uint8(images)
            else:  # letterbox + RGB + CHW + float32/255 in one pass
                batch, boxes = self._batcher(images)
        with self._timed("inference"):
            out = self.runner.run(batch, self.dynamic_batch)
        with self._timed("postprocess"):
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
