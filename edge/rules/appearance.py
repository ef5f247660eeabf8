"""Cheap appearance evidence for "is this still the same object at the same place?".

A parked car's image patch stays the same from sample to sample; a lane where different cars pass
shows a different patch every time, and an empty kerb shows the road. A patch is the object's box cut
from the frame, in grey, resized to ``PATCH`` × ``PATCH``. Two patches are compared block by block
(a 3 × 3 grid): a textured block matches when its normalized cross-correlation is high (NCC ignores
gain and offset, so slow lighting changes do not matter); a flat block matches when its mean brightness
is close. ``similarity`` is the fraction of blocks that match, so a pedestrian or a passing car that
covers two or three blocks lowers it without making a parked car look like another one, and occlusion
is told apart from departure by time (see edge/rules/parking.py).

Cost: one crop, one 36 × 36 resize and nine tiny NCCs per object per sample — about 0.05 ms.
"""

from __future__ import annotations

import cv2
import numpy as np

PATCH = 36
GRID = 3
FLAT_STD = 6.0  # a block with less contrast than this (grey levels) is compared by its mean
NCC_MATCH = 0.5
FLAT_MEAN_MATCH = 14.0  # grey levels
MIN_TEXTURE = 10.0  # std of a whole patch below this: road surface or sky, not a vehicle
MIN_SIDE_PX = 20  # a box smaller than this on either side is a few blurred pixels: no identity evidence


def patch(image_grey: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's patch (float32, PATCH × PATCH), or None when the box is outside the frame or too small."""
    h, w = image_grey.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
        return None
    crop = image_grey[y1:y2, x1:x2]
    return cv2.resize(crop, (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)


def textured(p: np.ndarray) -> bool:
    return float(p.std()) >= MIN_TEXTURE


def similarity(ref: np.ndarray, cur: np.ndarray) -> float:
    """Fraction of grid blocks in which ``cur`` looks like ``ref`` (1.0 = the same, ~0 = something else)."""
    a, b = _blocks(ref), _blocks(cur)
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    sa, sb = a.std(axis=1), b.std(axis=1)
    ncc = ((a - ma[:, None]) * (b - mb[:, None])).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    flat_a, flat_b = sa < FLAT_STD, sb < FLAT_STD
    matched = np.where(flat_a & flat_b, np.abs(ma - mb) <= FLAT_MEAN_MATCH,
                       ~flat_a & ~flat_b & (ncc >= NCC_MATCH))
    return float(matched.mean())


def _blocks(p: np.ndarray) -> np.ndarray:
    """(GRID², pixels per block): the patch cut into its grid blocks, row by row."""
    step = PATCH // GRID
    return p[:step * GRID, :step * GRID].reshape(GRID, step, GRID, step).transpose(0, 2, 1, 3).reshape(GRID * GRID, -1)


def blend(ref: np.ndarray, cur: np.ndarray, rate: float = 0.1) -> np.ndarray:
    """Follow slow lighting changes: move the reference a little towards a patch that clearly matches it."""
    return (1 - rate) * ref + rate * cur
