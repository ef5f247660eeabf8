"""``build_detector(cfg)``: the configured backend, per-camera tiling, then the config filters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.config import DetectorConfig, TilingConfig
from edge.detections import Detections
from edge.detectors.base import BaseDetector, Detector, DetectorError, as_bgr
from edge.detectors.postprocess import apply_filters, min_score
from edge.detectors.tiling import Window, merge_tiles, windows_for


class ConfiguredDetector(BaseDetector):
    """What the worker uses: the backend plus tiling and DetectorConfig's score / per-class / allow-list /
    box-area filters.

    ``detect_batch(images, tilings, class_maps)`` takes an optional per-image tiling (a camera's override; None
    means ``detector.tiling``), so cameras with and without tiling share one backend batch, and an optional
    per-image class rename (a camera's ``class_map``), applied before the class filters.
    """

    def __init__(self, backend: Detector, cfg: DetectorConfig) -> None:
        super().__init__()
        self.backend = backend
        self.cfg = cfg
        self.name = cfg.name or backend.name
        self.version = backend.version
        self.class_names = backend.class_names

    def detect_batch(
        self,
        images: list[np.ndarray],
        tilings: Sequence[TilingConfig | None] | None = None,
        class_maps: Sequence[dict[str, str] | None] | None = None,
    ) -> list[Detections]:
        for what, per_image in (("tiling settings", tilings), ("class maps", class_maps)):
            if per_image is not None and len(per_image) != len(images):
                raise DetectorError(f"detect_batch: {len(images)} images but {len(per_image)} {what}")
        self.last_timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        images = [as_bgr(img, i) for i, img in enumerate(images)]
        return self._detect_tiled(
            images, [t or self.cfg.tiling for t in (tilings or [None] * len(images))],
            list(class_maps or [None] * len(images)),
        )

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return self._detect_tiled(images, [self.cfg.tiling] * len(images), [None] * len(images))

    def _detect_tiled(
        self, images: list[np.ndarray], tilings: list[TilingConfig], class_maps: list[dict[str, str] | None]
    ) -> list[Detections]:
        crops: list[np.ndarray] = []
        owners: list[tuple[int, Window]] = []
        with self._timed("preprocess"):
            for i, (img, tiling) in enumerate(zip(images, tilings, strict=True)):
                for x1, y1, x2, y2 in windows_for(img, tiling):
                    crops.append(img[y1:y2, x1:x2])
                    owners.append((i, (x1, y1, x2, y2)))
        found: list[Detections] = []
        step = self.cfg.max_batch
        for start in range(0, len(crops), step):  # bounded forward passes: memory stays flat with many cameras
            found += self.backend.detect_batch(crops[start:start + step])
            for stage, ms in self.backend.last_timings.items():
                self.last_timings[stage] = self.last_timings.get(stage, 0.0) + ms
        with self._timed("postprocess"):
            parts: list[list[tuple[Window, Detections]]] = [[] for _ in images]
            for (i, window), dets in zip(owners, found, strict=True):
                parts[i].append((window, dets))
            merged = [rename_classes(merge_tiles(p, self.cfg.nms_iou), m)
                      for p, m in zip(parts, class_maps, strict=True)]
            return [apply_filters(d, self.cfg, img.shape) for d, img in zip(merged, images, strict=True)]


def rename_classes(dets: Detections, class_map: dict[str, str] | None) -> Detections:
    """A camera's ``class_map`` (e.g. {boat: car}); class ids stay the detector's own."""
    if not class_map or not len(dets):
        return dets
    dets.class_names = np.array([class_map.get(str(n), str(n)) for n in dets.class_names], dtype=object)
    return dets


def build_backend(cfg: DetectorConfig) -> Detector:
    """The bare model for ``cfg.kind``, decoding at the lowest threshold any class may pass."""
    threshold = min_score(cfg)
    if cfg.kind == "ssd_mobilenet_v2":
        from edge.detectors.ssd import SsdMobileNetV2

        if cfg.model_path is not None:
            raise DetectorError("detector.model_path is only used with kind onnx_yolo; SSD loads its package files")
        size = (cfg.input_size, cfg.input_size) if isinstance(cfg.input_size, int) else cfg.input_size
        return SsdMobileNetV2(score_threshold=threshold, threads=cfg.threads, input_size=size)
    if cfg.kind == "onnx_yolo":
        from edge.detectors.yolo_onnx import OnnxYolo

        if cfg.model_path is None:
            raise DetectorError("detector.kind onnx_yolo needs detector.model_path (an ultralytics ONNX export)")
        if cfg.input_size is not None and not isinstance(cfg.input_size, int):
            raise DetectorError("detector.input_size for onnx_yolo is one side (square letterbox), not [width, height]")
        return OnnxYolo(
            cfg.model_path,
            score_threshold=threshold,
            nms_iou=cfg.nms_iou,
            input_size=cfg.input_size,
            providers=cfg.providers,
            threads=cfg.threads,
            class_names=cfg.class_names,
            runtime=cfg.runtime,
            streams=cfg.streams,
        )
    raise DetectorError(f"unknown detector kind {cfg.kind!r}")


def build_detector(cfg: DetectorConfig) -> ConfiguredDetector:
    """Backend → optional tiling → config filters. Raises DetectorError with a clear message on bad set-up."""
    if cfg.kind == "ssd_mobilenet_v2" and cfg.class_names:
        raise DetectorError("detector.class_names is for custom ONNX models; SSD uses the COCO label map")
    detector = build_backend(cfg)
    unknown = [c for c in [*(cfg.classes or []), *(cfg.class_thresholds or {})] if c not in set(detector.class_names)]
    if unknown:
        raise DetectorError(f"class name(s) {', '.join(map(repr, unknown))} are not in model {detector.name}'s classes")
    return ConfiguredDetector(detector, cfg)
