"""Tiled detection for small objects: split a frame into rows x cols overlapping tiles (optionally plus the
full frame), detect every tile in the same batch as the other cameras' frames, map boxes back and merge
duplicates with class-aware NMS.

Small, far objects shrink to a few pixels at a 300x300 input; a 2x2 tiling gives each one four times the
pixels at four to five times the inference cost, so it is chosen per camera (``cameras[].tiling``).
"""

from __future__ import annotations

import numpy as np

from edge.config import TilingConfig
from edge.detections import Detections
from edge.detectors.postprocess import nms

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in source pixels


def tile_windows(width: int, height: int, rows: int, cols: int, overlap: float) -> list[Window]:
    """Tile windows covering the frame; neighbours share ``overlap`` of a tile's size."""

    def spans(size: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, size)]
        tile = size / (n - (n - 1) * overlap)
        step = tile * (1 - overlap)
        out = []
        for i in range(n):
            a = round(i * step)
            b = size if i == n - 1 else round(i * step + tile)
            out.append((a, b))
        return out

    return [(x1, y1, x2, y2) for (y1, y2) in spans(height, rows) for (x1, x2) in spans(width, cols)]


def windows_for(image: np.ndarray, tiling: TilingConfig) -> list[Window]:
    """The crops one image is detected in: the whole frame when tiling is off or 1x1."""
    h, w = image.shape[:2]
    if not tiling.enabled or tiling.rows * tiling.cols <= 1:
        return [(0, 0, w, h)]
    windows = tile_windows(w, h, tiling.rows, tiling.cols, tiling.overlap)
    if tiling.include_full_frame:
        windows.append((0, 0, w, h))
    return windows


def merge_tiles(parts: list[tuple[Window, Detections]], nms_iou: float) -> Detections:
    """Shift each crop's boxes back into the source frame and drop duplicates seen by overlapping tiles."""
    if len(parts) == 1 and parts[0][0][:2] == (0, 0):
        return parts[0][1]
    shifted = []
    for (x1, y1, _, _), dets in parts:
        if len(dets):
            dets.xyxy = dets.xyxy + np.array([x1, y1, x1, y1], dtype=np.float32)
            shifted.append(dets)
    merged = Detections.concatenate(shifted)
    return merged[nms(merged.xyxy, merged.scores, nms_iou, merged.class_ids)]
