"""parking_occupancy: how many of a legal parking zone's spaces are taken — a figure, never an incident.

A ``parking`` zone marks legal bays: ``capacity`` spaces, and optionally one polygon per bay (``bays``). The
vehicles in it are remembered by place exactly as the illegal-parking rule remembers them (edge/rules/parking.py:
``StationaryMemory`` spots, and with frames the appearance evidence of edge/rules/appearance.py), so a weak
detector does not make the count flicker:

- **Which vehicles count.** A spot counts while it is *present* — detected at this sample, or (with frames) its
  reference patch still matches — and *confirmed*: seen at that place at ``min_sightings`` samples (default 2:
  detections, or a detection and appearance matches). A car driving through the zone is at a new place every sample
  and never counts; a parked car the detector misses keeps counting while its patch matches, and stops as soon as
  the patch shows something else (it left). Without frames (replays of cached detections, constructed tests) a
  confirmed spot counts until it has gone undetected for ``grace_s``. Two spots lying over each other (half of the
  smaller box) are one vehicle.
- **Occupied spaces.** Without bays: ``min(vehicles, capacity)``. With bays: a bay is taken by the vehicle whose
  lower half (its footprint, roughly) covers the largest share of it, at least ``BAY_COVER`` of the smaller of the
  two areas; one vehicle per bay, one bay per vehicle. ``vehicles`` is published as well: vehicles standing in the
  zone beyond its spaces (or between bays) are demand the bays do not meet.

Every ``report_every_s`` of active schedule (the rule's own clock: the frames' timestamps) the rule emits one
``OccupancyFigure``: the count at the end of the interval and the mean over its samples (what central keeps per
hour). Outside the zone's schedule the spaces are not legal bays: no figure, and the interval starts again when the
schedule opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon

from edge.config import ZoneConfig
from edge.detections import Detections
from edge.detectors.postprocess import overlap_of_smaller
from edge.incidents import IncidentEvent, rfc3339
from edge.rules.base import Scene
from edge.rules.common import Spot
from edge.rules.parking import ONE_VEHICLE_OVERLAP, ParkingRule

BAY_COVER = 0.3  # share of the smaller of (bay, vehicle footprint) the footprint must cover to take the bay


@dataclass(slots=True)
class OccupancyFigure:
    """One parking zone's occupancy over one reporting interval; published on ``<prefix>/<edge_id>/occupancy``."""

    edge_id: str
    camera_id: str
    zone: str
    grid_cell: str | None
    timestamp: float  # end of the interval
    occupied: int  # spaces taken at the end of the interval
    capacity: int
    vehicles: int  # vehicles counted in the zone (may exceed capacity, or stand between bays)
    occupied_mean: float  # mean of ``occupied`` over the interval's samples
    samples: int
    period_s: float  # length of the interval
    method: str = "count"  # count | bays
    bays_occupied: list[int] | None = field(default=None)  # indices into the zone's bays (method 'bays')

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge_id": self.edge_id,
            "camera_id": self.camera_id,
            "zone": self.zone,
            "grid_cell": self.grid_cell,
            "at": rfc3339(self.timestamp),
            "occupied": self.occupied,
            "capacity": self.capacity,
            "vehicles": self.vehicles,
            "occupied_mean": round(self.occupied_mean, 3),
            "samples": self.samples,
            "period_s": round(self.period_s, 1),
            "method": self.method,
            "bays_occupied": list(self.bays_occupied) if self.bays_occupied is not None else None,
        }


class OccupancyRule(ParkingRule):
    type = "parking_occupancy"
    keep_arrival = False  # no incidents, so no arrival photographs to keep

    def _set_zone(self, zone: ZoneConfig) -> None:  # type: ignore[override]
        super()._set_zone(zone)
        self.capacity = zone.spaces()
        self._bays_size: tuple[int, int] | None = None
        self._bays_px: list[Polygon] = []
        if not hasattr(self, "report"):
            self.report: OccupancyFigure | None = None  # set by evaluate when an interval ends; the engine takes it
            self.current: tuple[int, int, list[int] | None] = (0, 0, None)  # (occupied, vehicles, bays) now
            self._samples: list[int] = []
            self._period_start: float | None = None

    def evaluate(
        self, detections: Detections, now: float, frame_size: tuple[int, int], active: bool, scene: Scene
    ) -> list[IncidentEvent]:
        seen, _forgotten = self.observe(detections, now, frame_size, scene)
        vehicles = self.vehicles(seen, scene.grey is not None)
        occupied, bays = self._occupied(vehicles, frame_size)
        self.current = (occupied, len(vehicles), bays)
        if not active:
            self._samples, self._period_start = [], None
            return []
        if self._period_start is None:
            self._period_start = now
        self._samples.append(occupied)
        if now - self._period_start >= self.zone.report_every_s:
            ctx = self.factory.context
            self.report = OccupancyFigure(
                edge_id=ctx.edge_id,
                camera_id=ctx.camera["id"],
                zone=self.zone.name,
                grid_cell=self.zone.grid_cell or self.factory.camera_grid_cell,
                timestamp=now,
                occupied=occupied,
                capacity=self.capacity,
                vehicles=len(vehicles),
                occupied_mean=float(np.mean(self._samples)),
                samples=len(self._samples),
                period_s=now - self._period_start,
                method="bays" if self.zone.bays else "count",
                bays_occupied=bays,
            )
            self._samples, self._period_start = [], now
        return []

    def take_report(self) -> OccupancyFigure | None:
        report, self.report = self.report, None
        return report

    # ------------------------------------------------------------------ counting

    def vehicles(self, seen: list[Spot], with_images: bool) -> list[Spot]:
        """The confirmed vehicles present now, one spot per vehicle (oldest first)."""
        if with_images:
            need = self.zone.min_sightings
            # samples it was seen at: at least its detections, and its first sighting plus each appearance match
            candidates = [s for s in seen if max(s.hits, 1 + s.data.get("confirms", 0)) >= need]
        else:  # no appearance evidence: a confirmed spot counts while the memory keeps it (grace_s unseen)
            candidates = [s for s in self.memory.spots if s.hits >= self.zone.min_sightings]
        kept: list[Spot] = []
        for s in sorted(candidates, key=lambda s: s.started_at):
            if all(overlap_of_smaller(s.box, k.box) < ONE_VEHICLE_OVERLAP for k in kept):
                kept.append(s)
        return kept

    def _occupied(self, vehicles: list[Spot], frame_size: tuple[int, int]) -> tuple[int, list[int] | None]:
        if not self.zone.bays:
            return min(len(vehicles), self.capacity), None
        if not vehicles:
            return 0, []
        bays = self._bay_polygons(frame_size)
        boxes = np.array([s.box for s in vehicles], dtype=np.float64)
        feet = np.column_stack([boxes[:, 0], (boxes[:, 1] + boxes[:, 3]) / 2, boxes[:, 2], boxes[:, 3]])
        foot_geoms = shapely.box(feet[:, 0], feet[:, 1], feet[:, 2], feet[:, 3])
        bay_geoms = np.array(bays, dtype=object)
        bb = shapely.bounds(bay_geoms)
        near = (
            (bb[:, 0, None] < feet[None, :, 2])
            & (bb[:, 2, None] > feet[None, :, 0])
            & (bb[:, 1, None] < feet[None, :, 3])
            & (bb[:, 3, None] > feet[None, :, 1])
        )
        cover = np.zeros(near.shape)
        bi, vi = np.nonzero(near)  # only pairs whose bounding boxes meet are intersected
        if len(bi):
            inter = shapely.area(shapely.intersection(bay_geoms[bi], foot_geoms[vi]))
            smaller = np.minimum(shapely.area(bay_geoms[bi]), shapely.area(foot_geoms[vi]))
            cover[bi, vi] = inter / np.maximum(smaller, 1e-9)
        taken: list[int] = []
        used: set[int] = set()
        for flat in np.argsort(-cover, axis=None, kind="stable"):
            b, v = divmod(int(flat), cover.shape[1])
            if cover[b, v] < BAY_COVER:
                break
            if b in taken or v in used:
                continue
            taken.append(b)
            used.add(v)
        return len(taken), sorted(taken)

    def _bay_polygons(self, frame_size: tuple[int, int]) -> list[Polygon]:
        if frame_size != self._bays_size:
            w, h = frame_size
            self._bays_px = [Polygon(np.asarray(b, dtype=np.float64) * [w, h]) for b in self.zone.bays or []]
            self._bays_size = frame_size
        return self._bays_px

    # ------------------------------------------------------------------ lifecycle: no incidents

    def open_incidents(self) -> list:  # type: ignore[override]
        return []

    def close_all(self, now: float, reason: str) -> list[IncidentEvent]:
        return []
