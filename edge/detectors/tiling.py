"""Tiled detection for small objects: split a frame into rows x cols overlapping tiles (optionally plus the
full frame), and/or zoomed windows around the camera's parking zones, detect every crop in the same batch as
the other cameras' frames, map boxes back and merge duplicates with class-aware NMS.

Small, far objects shrink to a few pixels at a 300x300 input; a 2x2 tiling gives each one four times the
pixels at four to five times the inference cost, so it is chosen per camera (``cameras[].tiling``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from edge.config import TilingConfig
from edge.detections import Detections
from edge.detectors.postprocess import nms, overlap_of_smaller
from edge.labels import class_family

if TYPE_CHECKING:
    from edge.config import ZoneConfig

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in source pixels
Region = tuple[float, float, float, float]  # x1, y1, x2, y2 normalized
ZONE_MARGIN = 0.25  # of a zone's height, around its bounding box, for its zoomed window
MAX_ASPECT = 1.5  # window pieces are at most this much wider than tall (or taller than wide)
MAX_REGION_SHARE = 0.5  # a region over this share of the frame gains too little zoom to be worth a pass
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


def zone_regions(zones: Iterable[ZoneConfig]) -> list[Region]:
    """Normalized windows around the enabled no_parking and parking (legal bays) zones: each zone's bounding
    box plus ``ZONE_MARGIN`` of its height on every side (a car standing on the zone's edge sticks out)."""
    out: list[Region] = []
    for zone in zones:
        if not zone.enabled or zone.type not in ("no_parking", "parking"):
            continue
        pts = np.asarray(zone.points, dtype=np.float64)
        (x1, y1), (x2, y2) = pts.min(axis=0), pts.max(axis=0)
        m = ZONE_MARGIN * (y2 - y1)
        out.append((max(0.0, float(x1 - m)), max(0.0, float(y1 - m)), min(1.0, float(x2 + m)), min(1.0, float(y2 + m))))
    return out


def region_windows(region: Region, width: int, height: int, overlap: float) -> list[Window]:
    """A normalized region in pixels, cut along its long side into pieces no more than ``MAX_ASPECT`` times
    wider than tall (or taller than wide): the detector's input is square, and squashing a long kerb into it
    would shrink its cars instead of enlarging them. A region covering most of the frame gains no zoom: none."""
    x1, y1, x2, y2 = (round(region[0] * width), round(region[1] * height),
                      round(region[2] * width), round(region[3] * height))
    w, h = x2 - x1, y2 - y1
    if w < 8 or h < 8 or w * h > MAX_REGION_SHARE * width * height:
        return []

    def pieces(long: int, short: int) -> int:  # n pieces of length long / (n - (n - 1) * overlap) <= MAX_ASPECT * short
        return max(1, math.ceil((long / (MAX_ASPECT * short) - overlap) / (1 - overlap) - 1e-9))

    rows, cols = pieces(h, w), pieces(w, h)
    return [(x1 + a, y1 + b, x1 + c, y1 + d) for a, b, c, d in tile_windows(w, h, rows, cols, overlap)]


def windows_for(image: np.ndarray, tiling: TilingConfig) -> list[Window]:
    """The crops one image is detected in: the whole frame when there is no grid and no region."""
    h, w = image.shape[:2]
    return windows_for_size(w, h, tiling)


def windows_for_size(width: int, height: int, tiling: TilingConfig) -> list[Window]:
    windows = []
    if tiling.enabled and tiling.rows * tiling.cols > 1:
        windows += tile_windows(width, height, tiling.rows, tiling.cols, tiling.overlap)
    for region in tiling.regions:
        windows += region_windows(region, width, height, tiling.overlap)
    if not windows:
        return [(0, 0, width, height)]
    if tiling.include_full_frame:
        windows.append((0, 0, width, height))
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

