"""Density per part of a crowd zone: the zone cut into square cells on the ground through its calibration.

A zone's average density hides a crush at one end of a long square. With ``ZoneConfig.ground`` (four image
points with their positions in metres → a homography), the zone polygon is mapped onto the ground and covered
with a grid of ``cell_m`` × ``cell_m`` squares aligned to its bounding box. A cell is the part of the zone in
one square; a square with less than half of it inside the zone (a sliver at the edge, where one person would
read as a crush) is merged into the nearest full cell, so every part of the zone belongs to exactly one cell.
If no square is half inside (a zone smaller than half a cell), the whole zone is one cell.

Per update, every counted person is put in the cell under their anchor (the zone's own anchor: the foot point,
or the box centre for overhead views), and the foreground estimate's residual (the persons the detector
missed, edge.rules.crowd_estimate) is spread over the cells pixel by pixel: each foreground pixel outside the
counted boxes carries its share of a person, placed where that person would stand. The cell counts of one
update sum to the zone's estimate. They are averaged over ``smoothing_s`` like the zone's count; the peak
cell's density (persons per m²) and where it is are published beside the zone average.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon

from edge.config import MAX_GROUND_CELLS, ZoneConfig

FULL_CELL = 0.5  # a square at least this much inside the zone is a cell of its own; smaller ones join a neighbour


@dataclass(frozen=True, slots=True)
class PeakCell:
    """The densest cell of one update (smoothed counts)."""

    col: int  # grid column and row of the cell's square, from the ground bounding box's minimum corner
    row: int
    density: float  # persons per m²
    estimate: float  # persons in the cell
    area_m2: float  # the cell's ground area inside the zone (with the slivers merged into it)
    center_m: tuple[float, float]  # the cell's centroid on the ground, in the calibration's metres
    center: tuple[float, float]  # the same point in the image, normalized 0..1

    def to_dict(self) -> dict[str, Any]:
        return {
            "col": self.col,
            "row": self.row,
            "estimate": round(self.estimate, 1),
            "area_m2": round(self.area_m2, 2),
            "center_m": [round(self.center_m[0], 2), round(self.center_m[1], 2)],
            "center": [round(min(max(v, 0.0), 1.0), 4) for v in self.center],
        }


class GroundCells:
    """One crowd zone's cells and their smoothed counts. Built from a zone that has a ``ground`` calibration."""

    def __init__(self, zone: ZoneConfig):
        if zone.ground is None:
            raise ValueError(f"zone {zone.name!r}: cells need a ground calibration")
        self.cell_m = float(zone.cell_m)
        self.to_ground = np.asarray(zone.ground.homography(), dtype=np.float64)  # normalized image → metres
        self.to_image = np.linalg.inv(self.to_ground)
        ground = _transform(np.asarray(zone.points, dtype=np.float64), self.to_ground)
        poly = Polygon(ground)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError(
                f"zone {zone.name!r}: its polygon is no simple area on the ground through the calibration "
                "(part of it lies beyond the horizon of the 4 calibration points?)"
            )
        minx, miny, maxx, maxy = poly.bounds
        self.origin = np.array([minx, miny])
        self.nx = max(1, math.ceil((maxx - minx) / self.cell_m - 1e-9))
        self.ny = max(1, math.ceil((maxy - miny) / self.cell_m - 1e-9))
        if self.nx * self.ny > MAX_GROUND_CELLS:
            raise ValueError(
                f"zone {zone.name!r}: cell_m {self.cell_m:g} gives {self.nx * self.ny} cells "
                f"(at most {MAX_GROUND_CELLS}); use larger cells"
            )
        cols, rows = np.meshgrid(np.arange(self.nx), np.arange(self.ny))
        cols, rows = cols.ravel(), rows.ravel()
        x0, y0 = minx + cols * self.cell_m, miny + rows * self.cell_m
        pieces = shapely.intersection(shapely.box(x0, y0, x0 + self.cell_m, y0 + self.cell_m), poly)
        areas = shapely.area(pieces)
        full = areas >= FULL_CELL * self.cell_m**2
        if not full.any():
            full = areas >= areas.max()
        # every square (even one outside the zone, for a point just past its edge) belongs to its nearest full cell
        centres = np.stack([x0 + self.cell_m / 2, y0 + self.cell_m / 2], axis=1)
        full_idx = np.flatnonzero(full)
        dist = np.linalg.norm(centres[:, None, :] - centres[None, full_idx, :], axis=2)
        owner = np.argmin(dist, axis=1)  # index into full_idx, i.e. the cell id
        owner[full_idx] = np.arange(len(full_idx))
        self.lookup = owner.reshape(self.ny, self.nx)
        self.n = len(full_idx)
        self.cols, self.rows = cols[full_idx], rows[full_idx]
        self.areas = np.bincount(owner, weights=areas, minlength=self.n)
        cx = np.array([p.centroid.x if a > 0 else 0.0 for p, a in zip(pieces, areas, strict=True)])
        cy = np.array([p.centroid.y if a > 0 else 0.0 for p, a in zip(pieces, areas, strict=True)])
        self.centers_m = np.stack(
            [
                np.bincount(owner, weights=cx * areas, minlength=self.n),
                np.bincount(owner, weights=cy * areas, minlength=self.n),
            ],
            axis=1,
        )
        self.centers_m /= np.maximum(self.areas, 1e-12)[:, None]
        self.centers_img = _transform(self.centers_m, self.to_image)
        self.history: deque[tuple[float, np.ndarray]] = deque()
        self.last: np.ndarray = np.zeros(self.n)  # this update's counts per cell, unsmoothed

    def cell_of(self, points_norm: np.ndarray) -> np.ndarray:
        """Cell id of each (N, 2) normalized image point (a point outside the zone: its nearest cell)."""
        if len(points_norm) == 0:
            return np.zeros(0, dtype=np.int64)
        g = _transform(np.asarray(points_norm, dtype=np.float64), self.to_ground)
        ij = np.floor((g - self.origin) / self.cell_m)
        ij = np.nan_to_num(ij, nan=0.0, posinf=1e9, neginf=-1e9)
        ix = np.clip(ij[:, 0], 0, self.nx - 1).astype(np.int64)
        iy = np.clip(ij[:, 1], 0, self.ny - 1).astype(np.int64)
        return self.lookup[iy, ix]

    def count(self, points_norm: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Persons per cell: one per point, or the given weights."""
        ids = self.cell_of(points_norm)
        return np.bincount(ids, weights=weights, minlength=self.n).astype(np.float64)

    def update(self, now: float, counts: np.ndarray, smoothing_s: float) -> PeakCell:
        """Take this update's counts per cell; the densest cell of the counts averaged over ``smoothing_s``."""
        self.last = np.asarray(counts, dtype=np.float64)
        self.history.append((now, self.last))
        while self.history and self.history[0][0] < now - smoothing_s:
            self.history.popleft()
        mean = np.mean([c for _, c in self.history], axis=0)
        density = mean / np.maximum(self.areas, 1e-9)
        k = int(np.argmax(density))
        return PeakCell(
            col=int(self.cols[k]),
            row=int(self.rows[k]),
            density=float(density[k]),
            estimate=float(mean[k]),
            area_m2=float(self.areas[k]),
            center_m=(float(self.centers_m[k, 0]), float(self.centers_m[k, 1])),
            center=(float(self.centers_img[k, 0]), float(self.centers_img[k, 1])),
        )


def _transform(points: np.ndarray, h: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)
