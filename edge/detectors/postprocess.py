"""Pure-numpy box maths shared by every detector backend: IoU, NMS, letterbox, YOLO decoders and config filters.

Everything here works on constructed arrays, so it is unit-tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import DetectorConfig
from edge.detections import Detections

MAX_NMS_CANDIDATES = 30_000  # boxes kept (best first) before NMS; ultralytics uses the same cap
LETTERBOX_PAD = 114


class OutputLayoutError(ValueError):
    """A model output tensor has a shape we do not know how to decode."""


# --------------------------------------------------------------------------- IoU & NMS


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) → (N, M) float32."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller of two xyxy boxes: 1.0 when one lies inside the other."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / small) if small > 0 else 0.0


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    With ``class_ids`` it is class-aware (a car never suppresses a person): boxes of each class are
    shifted by a class-dependent offset so boxes of different classes cannot overlap.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if class_ids is not None:
        # the offset must exceed the coordinate range (not just max |x|): raw YOLO boxes can be negative
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (np.asarray(class_ids, dtype=np.float32).reshape(-1, 1) * span)
    order = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_det is not None and len(keep) >= max_det:
            break
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------- letterbox


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a source image was placed into the model input: ``input = source * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float
    source_w: int
    source_h: int

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Map input-pixel boxes back to source pixels, clipped to the source image."""
        out = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.source_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.source_h)
        return out


def letterbox_geometry(
    width: int, height: int, size: int | tuple[int, int], stride: int = 32, auto: bool = False
) -> tuple[Letterbox, int, int, int, int]:
    """Where a ``width`` x ``height`` image goes in a letterboxed input: (Letterbox, new w, new h, out w, out h)."""
    th, tw = (size, size) if isinstance(size, int) else size
    scale = min(th / height, tw / width)
    nw, nh = round(width * scale), round(height * scale)
    if auto:
        tw = nw + (-nw) % stride
        th = nh + (-nh) % stride
    dw, dh = (tw - nw) / 2, (th - nh) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    return Letterbox(scale, float(left), float(top), width, height), nw, nh, tw, th


def _resize_into(image: np.ndarray, dst: np.ndarray, scale: float) -> None:
    nh, nw = dst.shape[:2]
    h, w = image.shape[:2]
    if (nw, nh) == (w, h):
        dst[...] = image
    else:  # cv2.resize writes into the strided view of the canvas (same type and size: no reallocation)
        cv2.resize(image, (nw, nh), dst=dst, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def letterbox(
    image: np.ndarray,
    size: int | tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    pad_value: int = LETTERBOX_PAD,
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad (grey 114, centred) to ``size`` = (h, w) or a square side.

    ``auto=True`` pads only up to the next multiple of ``stride`` (for models with dynamic input shape);
    otherwise the output is exactly ``size`` (needed for fixed-shape models and for batching).
    """
    h, w = image.shape[:2]
    lb, nw, nh, tw, th = letterbox_geometry(w, h, size, stride, auto)
    out = np.empty((th, tw, 3), dtype=np.uint8)
    letterbox_into(image, out, lb, nw, nh, pad_value)
    return out, lb


def letterbox_into(
    image: np.ndarray, canvas: np.ndarray, lb: Letterbox, nw: int, nh: int, pad_value: int = LETTERBOX_PAD
) -> None:
    """Resize ``image`` straight into its place in a preallocated HxWx3 uint8 ``canvas``; pad only the borders."""
    top, left = int(lb.pad_y), int(lb.pad_x)
    canvas[:top] = pad_value
    canvas[top + nh:] = pad_value
    canvas[top:top + nh, :left] = pad_value
    canvas[top:top + nh, left + nw:] = pad_value
    _resize_into(image, canvas[top:top + nh, left:left + nw], lb.scale)


class LetterboxBatcher:
    """Letterbox + BGR→RGB + HWC→CHW + uint8→float32/255 for a batch, in one pass over preallocated buffers.

    Each image is resized straight into a reused uint8 canvas (no intermediate copy, borders filled only where
    there is no image), split into planes (``cv2.split``) and each plane scaled into its slot of a reused
    ``[B, 3, H, W]`` float32 buffer (contiguous writes, no strided transpose): about 0.5 ms for 1280x720 →
    640x640 here, against about 6 ms for ``np.ascontiguousarray(np.stack(transposed views), float32) / 255``.
    The returned array is the batcher's own buffer: valid until the next call.
    """

    def __init__(self, size: tuple[int, int], stride: int = 32, pad_value: int = LETTERBOX_PAD) -> None:
        self.size = size  # (h, w)
        self.stride = stride
        self.pad_value = pad_value
        self._canvas = np.empty((size[0], size[1], 3), dtype=np.uint8)
        self._planes = [np.empty(size, dtype=np.uint8) for _ in range(3)]
        self._buf = np.empty((0, 3, size[0], size[1]), dtype=np.float32)
        self._u8 = np.empty((0, size[0], size[1], 3), dtype=np.uint8)
        self._scale = np.float32(1.0 / 255.0)

    def canvas(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The letterboxed uint8 BGR image (the batcher's reused canvas) and its geometry."""
        h, w = image.shape[:2]
        lb, nw, nh, _, _ = letterbox_geometry(w, h, self.size, self.stride)
        letterbox_into(image, self._canvas, lb, nw, nh, self.pad_value)
        return self._canvas, lb

    def __call__(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """``([B, 3, H, W]`` float32 RGB in 0..1, one Letterbox per image)."""
        n = len(images)
        if self._buf.shape[0] < n:
            self._buf = np.empty((n, 3, *self.size), dtype=np.float32)
        out = self._buf[:n]
        boxes = []
        for i, img in enumerate(images):
            canvas, lb = self.canvas(img)
            boxes.append(lb)
            cv2.split(canvas, self._planes)
            for c in range(3):  # BGR planes → RGB channels
                np.multiply(self._planes[2 - c], self._scale, out=out[i, c], casting="unsafe")
        return out, boxes

    def uint8(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """``[B, H, W, 3]`` uint8 BGR letterboxed images (for a runtime that converts inside the model)."""
        n = len(images)
        if self._u8.shape[0] < n:
            self._u8 = np.empty((n, *self.size, 3), dtype=np.uint8)
        out = self._u8[:n]
        boxes = []
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            lb, nw, nh, _, _ = letterbox_geometry(w, h, self.size, self.stride)
            letterbox_into(img, out[i], lb, nw, nh, self.pad_value)
            boxes.append(lb)
        return out, boxes


# --------------------------------------------------------------------------- YOLO decoders


@dataclass(slots=True)
class RawBoxes:
    """Decoded boxes of one image, still in model-input pixels."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def decode_yolo_raw(
    output: np.ndarray, conf_threshold: float, iou_threshold: float, max_det: int = 300
) -> list[RawBoxes]:
    """Ultralytics raw head ``[B, 4 + nc, N]`` (cx, cy, w, h, class scores) → per-image boxes after class-aware NMS."""
    results = []
    for pred in output:  # (4 + nc, N)
        pred = pred.T  # (N, 4 + nc)
        cls_scores = pred[:, 4:]
        class_ids = cls_scores.argmax(axis=1)
        scores = cls_scores[np.arange(len(pred)), class_ids]
        keep = scores >= conf_threshold
        pred, scores, class_ids = pred[keep], scores[keep], class_ids[keep]
        cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        idx = nms(xyxy, scores, iou_threshold, class_ids, max_det=max_det)
        results.append(RawBoxes(xyxy[idx], scores[idx], class_ids[idx]))
    return results


def decode_yolo_end2end(output: np.ndarray, conf_threshold: float) -> list[RawBoxes]:
    """End-to-end export ``[B, N, 6]`` = (x1, y1, x2, y2, score, class) in input pixels; NMS already applied."""
    results = []
    for pred in output:
        pred = pred[pred[:, 4] >= conf_threshold]
        results.append(RawBoxes(pred[:, :4].copy(), pred[:, 4].copy(), pred[:, 5].round()))
    return results


def yolo_layout(shape: tuple[int, ...], num_classes: int | None) -> str:
    """'raw' or 'end2end' for an output shape, or OutputLayoutError naming the shape and what was expected."""
    shape = tuple(int(s) for s in shape)
    expected = (
        "expected [B, 4+nc, N] (raw YOLOv8/YOLO11/YOLO26 head, N anchors > 4+nc)"
        " or [B, N, 6] (end-to-end: x1, y1, x2, y2, score, class)"
    )
    if len(shape) != 3:
        raise OutputLayoutError(f"unsupported YOLO output shape {list(shape)}: {expected}")
    _, a, b = shape
    if b == 6 and (num_classes is None or a != 4 + num_classes):
        return "end2end"
    if a >= 5 and b > a and (num_classes is None or a == 4 + num_classes):
        return "raw"
    nc = f" for a model with {num_classes} classes" if num_classes is not None else ""
    raise OutputLayoutError(f"unsupported YOLO output shape {list(shape)}{nc}: {expected}")


def decode_yolo_output(
    output: np.ndarray, num_classes: int | None, conf_threshold: float, iou_threshold: float, max_det: int = 300
) -> list[RawBoxes]:
    """Decode either YOLO layout (see ``yolo_layout``)."""
    output = np.asarray(output, dtype=np.float32)
    if yolo_layout(output.shape, num_classes) == "end2end":
        return decode_yolo_end2end(output, conf_threshold)
    return decode_yolo_raw(output, conf_threshold, iou_threshold, max_det)


# --------------------------------------------------------------------------- config filters


def min_score(cfg: DetectorConfig) -> float:
    """The lowest threshold any class can pass with; backends decode at this and ``apply_filters`` does the rest."""
    return min([cfg.score_threshold, *cfg.thresholds().values()])


def apply_filters(dets: Detections, cfg: DetectorConfig, image_shape: tuple[int, ...]) -> Detections:
    """Score threshold (per-class overrides the global one), class allow-list, min/max box area fraction."""
    if not len(dets):
        return dets
    per_class = cfg.thresholds()
    thresholds = np.array([per_class.get(str(n), cfg.score_threshold) for n in dets.class_names])
    keep = dets.scores >= thresholds
    if cfg.classes is not None:
        keep &= np.isin(dets.class_names.astype(str), np.asarray(cfg.classes, dtype=str))
    frame_area = float(image_shape[0] * image_shape[1])
    if cfg.min_box_area > 0 or cfg.max_box_area < 1:
        frac = dets.areas / frame_area
        keep &= (frac >= cfg.min_box_area) & (frac <= cfg.max_box_area)
    return dets if keep.all() else dets[keep]
