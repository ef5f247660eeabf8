"""Zone geometry: which detections belong to a zone, computed with vectorized shapely calls.

A zone's polygon is normalized (0..1); ``ZoneGeometry`` converts it to pixels once per frame size and
keeps the prepared polygon, so the per-frame cost is a handful of array operations whatever the number
of objects. Membership uses the zone's anchor:

- ``bottom_center`` (default): where a vehicle or a person touches the ground;
- ``center``: the box centre (overhead views);
- ``box``: at least ``min_inside`` of the box area lies inside the polygon.

The size filter follows perspective: the allowed box height (fraction of frame height) is interpolated
linearly from the zone's top edge (``size.*_top``) to its bottom edge (``size.*_bottom``) by anchor y.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Polygon

from edge.config import Anchor, ZoneConfig
from edge.detections import Detections


class ZoneGeometry:
    """Pixel-space geometry of one zone, cached per frame size."""

    def __init__(self, zone: ZoneConfig):
        self.zone = zone
        self.points = np.asarray(zone.points, dtype=np.float64)
        self._size: tuple[int, int] | None = None
        self._poly_px: Polygon | None = None
        self._bounds_px = (0.0, 0.0, 0.0, 0.0)
        self._watched = np.array(zone.watched_classes(), dtype=object)

    # ------------------------------------------------------------------ geometry per frame size

    def polygon_px(self, frame_size: tuple[int, int]) -> Polygon:
        """The zone polygon in pixels for a (width, height) frame; prepared for fast containment tests."""
        if frame_size != self._size:
            w, h = frame_size
            pts = self.points * np.array([w, h], dtype=np.float64)
            poly = Polygon(pts)
            shapely.prepare(poly)
            self._poly_px = poly
            self._bounds_px = poly.bounds
            self._size = frame_size
        assert self._poly_px is not None
        return self._poly_px

    def points_px(self, frame_size: tuple[int, int]) -> np.ndarray:
        """(K, 2) int32 polygon vertices in pixels, for drawing."""
        w, h = frame_size
        return np.round(self.points * np.array([w, h])).astype(np.int32)

    def bounds_px(self, frame_size: tuple[int, int]) -> tuple[float, float, float, float]:
        self.polygon_px(frame_size)
        return self._bounds_px

    # ------------------------------------------------------------------ membership

    def contains_points(self, xy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Boolean mask: which (N, 2) pixel points lie inside (or on the edge of) the zone."""
        if len(xy) == 0:
            return np.zeros(0, dtype=bool)
        poly = self.polygon_px(frame_size)
        x0, y0, x1, y1 = self._bounds_px
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        if inside.any():
            idx = np.flatnonzero(inside)
            pts = xy[idx]
            hit = shapely.intersects_xy(poly, pts[:, 0], pts[:, 1])  # edges count as inside
            inside[idx] = hit
        return inside

    def inside_fraction(self, xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Fraction of each box's area inside the zone (vectorized box ∩ polygon areas)."""
        n = len(xyxy)
        out = np.zeros(n, dtype=np.float64)
        if n == 0:
            return out
        poly = self.polygon_px(frame_size)
        x0, y0, x1, y1 = self._bounds_px
        b = xyxy.astype(np.float64)
        overlaps = (b[:, 2] > x0) & (b[:, 0] < x1) & (b[:, 3] > y0) & (b[:, 1] < y1)
        if not overlaps.any():
            return out
        idx = np.flatnonzero(overlaps)
        bb = b[idx]
        areas = np.clip(bb[:, 2] - bb[:, 0], 0, None) * np.clip(bb[:, 3] - bb[:, 1], 0, None)
        boxes = shapely.box(bb[:, 0], bb[:, 1], bb[:, 2], bb[:, 3])
        inter = shapely.area(shapely.intersection(boxes, poly))
        out[idx] = np.divide(inter, areas, out=np.zeros_like(inter), where=areas > 0)
        return out

    def anchors(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 2) anchor points for this zone (box anchor uses the bottom centre as the subject's position)."""
        x = (xyxy[:, 0] + xyxy[:, 2]) / 2
        y = (xyxy[:, 1] + xyxy[:, 3]) / 2 if self.zone.anchor == Anchor.center else xyxy[:, 3]
        return np.stack([x, y], axis=1).astype(np.float64)

    def size_ok(self, xyxy: np.ndarray, anchors: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Perspective size filter: box height / frame height within the range interpolated at the anchor's y."""
        s = self.zone.size
        if s.min_top == 0 and s.min_bottom == 0 and s.max_top >= 1 and s.max_bottom >= 1:
            return np.ones(len(xyxy), dtype=bool)
        _, frame_h = frame_size
        _, y0, _, y1 = self.bounds_px(frame_size)
        f = np.clip((anchors[:, 1] - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
        lo = s.min_top + (s.min_bottom - s.min_top) * f
        hi = s.max_top + (s.max_bottom - s.max_top) * f
        rel_h = (xyxy[:, 3] - xyxy[:, 1]) / float(frame_h)
        return (rel_h >= lo) & (rel_h <= hi)

    def member_mask(
        self, detections: Detections, frame_size: tuple[int, int], classes: np.ndarray | None = None
    ) -> np.ndarray:
        """Detections of the given classes (default: the zone's watched classes) that belong to the zone."""
        return self.membership(detections, frame_size, classes)[0]

    def membership(
        self, detections: Detections, frame_size: tuple[int, int], classes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(in the zone, outside it): detections of the given classes (default: the zone's watched classes) of a
        plausible size for the zone, split by whether their anchor (or box share) lies inside."""
        n = len(detections)
        if n == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        wanted = self._watched if classes is None else classes
        mask = np.isin(detections.class_names, wanted)
        outside = np.zeros(n, dtype=bool)
        if not mask.any():
            return mask, outside
        idx = np.flatnonzero(mask)
        xyxy = detections.xyxy[idx]
        anchors = self.anchors(xyxy)
        if self.zone.anchor == Anchor.box:
            inside = self.inside_fraction(xyxy, frame_size) >= self.zone.min_inside
        else:
            inside = self.contains_points(anchors, frame_size)
        plausible = self.size_ok(xyxy, anchors, frame_size)
        mask[idx] = inside & plausible
        outside[idx] = ~inside & plausible
        return mask, outside

    def area_px(self, frame_size: tuple[int, int]) -> float:
        return float(self.polygon_px(frame_size).area)
