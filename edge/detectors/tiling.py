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
from edge.detectors.postprocess import nms, overlap_of_smaller
from edge.labels import class_family

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in source pixels
SEAM_PX = 3  # a box this close to a tile's inner edge may be a cut-off part of an object
SEAM_OVERLAP = 0.5  # ... and is merged with a same-family box covering this much of the smaller of the two


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
    """Shift each crop's boxes back into the source frame and make one box per object.

    1. NMS across tiles per class *family* (a van that is "car" in one tile and "truck" in the next is one
       object; the more confident class wins);
    2. an object cut by a tile seam gives a partial box in each tile, which overlap too little for NMS: a box
       that touches its tile's inner edge is merged (union box, best score and class) with a box of the same
       family that overlaps it by ``SEAM_OVERLAP`` of the smaller box.
    """
    if len(parts) == 1 and parts[0][0][:2] == (0, 0):
        return parts[0][1]
    frame_w = max(w[2] for w, _ in parts)
    frame_h = max(w[3] for w, _ in parts)
    shifted, cut = [], []
    for (x1, y1, x2, y2), dets in parts:
        if len(dets):
            dets.xyxy = dets.xyxy + np.array([x1, y1, x1, y1], dtype=np.float32)
            b = dets.xyxy
            at_seam = (((b[:, 0] <= x1 + SEAM_PX) & (x1 > 0)) | ((b[:, 2] >= x2 - SEAM_PX) & (x2 < frame_w))
                       | ((b[:, 1] <= y1 + SEAM_PX) & (y1 > 0)) | ((b[:, 3] >= y2 - SEAM_PX) & (y2 < frame_h)))
            shifted.append(dets)
            cut.append(at_seam)
    if not shifted:
        return Detections.empty()
    merged = Detections.concatenate(shifted)
    at_seam = np.concatenate(cut)
    families = np.array([class_family(n) for n in merged.class_names], dtype=object)
    family_ids = np.unique(families, return_inverse=True)[1]
    keep = nms(merged.xyxy, merged.scores, nms_iou, family_ids)
    merged, at_seam, families = merged[keep], at_seam[keep], families[keep]
    return _merge_seams(merged, at_seam, families)


def _merge_seams(dets: Detections, at_seam: np.ndarray, families: np.ndarray) -> Detections:
    if not at_seam.any() or len(dets) < 2:
        return dets
    box = dets.xyxy.copy()
    alive = np.ones(len(dets), dtype=bool)
    for i in np.flatnonzero(at_seam):  # best score first (NMS order)
        if not alive[i]:
            continue
        for j in range(len(dets)):
            if j == i or not alive[j] or families[j] != families[i]:
                continue
            if overlap_of_smaller(box[i], box[j]) >= SEAM_OVERLAP:
                keeper, other = (i, j) if dets.scores[i] >= dets.scores[j] else (j, i)
                box[keeper] = [min(box[i, 0], box[j, 0]), min(box[i, 1], box[j, 1]),
                               max(box[i, 2], box[j, 2]), max(box[i, 3], box[j, 3])]
                alive[other] = False
                if not alive[i]:
                    break
    dets.xyxy = box
    return dets[alive]

