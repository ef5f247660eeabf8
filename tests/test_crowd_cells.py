"""Density per part of a crowd zone (edge.rules.crowd_cells) through the crowd rule, on constructed scenes.

The calibration maps an image trapezoid (far edge short, at the top) onto a 12 m x 12 m square; persons are
placed at known ground positions and drawn or reported where the homography puts them in the image, so the
expected cell counts and densities are computed by hand from the ground positions.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, PlausibilityConfig, ZoneConfig, parse_config
from edge.detections import Detections
from edge.detectors.plausibility import PerspectiveSizeModel
from edge.rules import RuleEngine, Scene
from edge.rules.crowd_cells import GroundCells
from edge.snapshots import render_evidence
from tests.test_rules_parking import T0, VALIDATOR

W, H = 640, 480
TRAPEZOID = [[0.3, 0.2], [0.7, 0.2], [1.0, 0.95], [0.0, 0.95]]
GROUND = {"image_points": TRAPEZOID, "ground_m": [[0, 12], [12, 12], [12, 0], [0, 0]]}  # far edge at y = 12 m
TO_IMAGE = np.linalg.inv(
    cv2.getPerspectiveTransform(np.float32(GROUND["image_points"]), np.float32(GROUND["ground_m"]))
)


def image_px(ground_xy: np.ndarray) -> np.ndarray:
    """Ground points in metres → image pixels."""
    pts = cv2.perspectiveTransform(np.asarray(ground_xy, dtype=np.float64).reshape(-1, 1, 2), TO_IMAGE).reshape(-1, 2)
    return pts * [W, H]


def engine(**zone) -> RuleEngine:
    z = {
        "name": "square",
        "type": "crowd",
        "points": TRAPEZOID,
        "ground": GROUND,
        "cell_m": 3,
        "smoothing_s": 0,
        "forecast_horizon_s": 0,
        "cooldown_s": 0,
    }
    z.update(zone)
    cfg = parse_config({"edge_id": "edge-t", "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [z]}]})
    return RuleEngine(cfg.cameras[0], site=cfg.site, edge_id="edge-t", model_name="m", model_version="1")


def person_boxes(ground_xy: np.ndarray, height_px: float = 30.0) -> Detections:
    """A person box standing at each ground point (bottom centre there), tracked ids 1..N."""
    feet = image_px(ground_xy)
    w = 0.4 * height_px
    xyxy = np.stack([feet[:, 0] - w / 2, feet[:, 1] - height_px, feet[:, 0] + w / 2, feet[:, 1]], axis=1)
    n = len(xyxy)
    return Detections(xyxy, np.full(n, 0.8), np.zeros(n), np.array(["person"] * n, dtype=object), np.arange(1, n + 1))


# nine persons on a 1 m lattice inside the far cell x 3..6 m, y 9..12 m; seven alone in seven other cells
CLUSTER = np.array([[x, y] for x in (3.5, 4.5, 5.5) for y in (9.5, 10.5, 11.5)])
SPREAD = np.array([[1.5, 1.5], [7.5, 1.5], [10.5, 4.5], [1.5, 7.5], [7.5, 7.5], [10.5, 10.5], [1.5, 10.5]])


@pytest.mark.parametrize("method", ["detections", "tracks"])
def test_a_dense_cluster_far_away_is_the_peak_cell_with_hand_computed_figures(method: str) -> None:
    people = person_boxes(np.concatenate([CLUSTER, SPREAD]))
    eng = engine(count_method=method)
    for t in range(3):
        out = eng.update(people, T0 + t, (W, H), Scene())
    (fig,) = out.crowd
    d = fig.to_dict()
    assert fig.count == 16
    assert d["density"] == pytest.approx(16 / 144, abs=1e-4)  # the zone average: 16 persons on 144 m²
    assert d["peak_density"] == pytest.approx(9 / 9, abs=1e-4)  # the far cell: 9 persons on 9 m²
    cell = d["peak_cell"]
    assert (cell["col"], cell["row"]) == (1, 3)  # x 3..6 m, y 9..12 m from the calibration's origin
    assert cell["estimate"] == pytest.approx(9) and cell["area_m2"] == pytest.approx(9.0)
    assert cell["center_m"] == pytest.approx([4.5, 10.5])
    assert cell["center"] == pytest.approx(list(image_px([[4.5, 10.5]])[0] / [W, H]), abs=1e-4)
    assert next(iter(eng.rules.values())).cell_counts.sum() == pytest.approx(fig.estimate)  # each in one cell


def test_levels_follow_the_peak_only_when_configured_and_the_incident_carries_it() -> None:
    people = person_boxes(np.concatenate([CLUSTER, SPREAD]))
    levels = {"elevated": 0.3, "high": 0.8, "critical": 2.0}
    average = engine(levels=levels)
    assert not any(average.update(people, T0 + t, (W, H), Scene()).events for t in range(3))
    peak = engine(levels=levels, levels_from="peak")
    events = [ev for t in range(3) for ev in peak.update(people, T0 + t, (W, H), Scene()).events]
    assert [ev.event for ev in events] == ["opened"]
    payload = events[0].payload(None)
    VALIDATOR.validate(payload)
    crowd = payload["crowd"]
    assert crowd["level"] == "high" and crowd["peak_density"] == pytest.approx(1.0)  # high from 0.8 /m²
    assert crowd["density"] == pytest.approx(0.111, abs=1e-3) and crowd["peak_cell"]["row"] == 3
    # the snapshot marks the peak cell (a red cross at its centre)
    jpeg = render_evidence(np.full((H, W, 3), 128, np.uint8), events[0])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    cx, cy = (np.array(crowd["peak_cell"]["center"]) * [W, H]).round().astype(int)
    red = (img[..., 2] - np.maximum(img[..., 0], img[..., 1])) > 80
    assert red[cy - 2 : cy + 3, cx - 2 : cx + 3].any() and not red[cy + 40 : cy + 60, cx - 10 : cx + 10].any()


def test_without_calibration_nothing_changes_and_peak_needs_one() -> None:
    eng = engine(ground=None, area_m2=144)
    (fig,) = eng.update(person_boxes(CLUSTER), T0, (W, H), Scene()).crowd
    assert "peak_density" not in fig.to_dict() and fig.peak is None
    with pytest.raises(ConfigError, match="levels_from 'peak' needs a ground calibration"):
        engine(ground=None, area_m2=144, levels_from="peak")
    with pytest.raises(ConfigError, match="cell_m 0.5 cuts this zone into 57600 ground cells"):
        engine(ground={**GROUND, "ground_m": [[0, 120], [120, 120], [120, 0], [0, 0]]}, cell_m=0.5)


def test_slivers_at_the_zone_edge_join_a_full_cell() -> None:
    # a zone whose far edge runs diagonally through the squares (y = 7.5 + x / 3 m): in the top row (9..12 m)
    # x 3..6 m holds 0.375 m² and x 6..9 m 3 m² of the zone (slivers), x 9..12 m 6 m² (a cell of its own)
    ground = np.float32([[0, 0], [12, 0], [12, 11.5], [0, 7.5]]).reshape(-1, 1, 2)
    points = cv2.perspectiveTransform(ground, TO_IMAGE.astype(np.float32)).reshape(-1, 2)
    zone = ZoneConfig(name="z", type="crowd", points=[(float(x), float(y)) for x, y in points], ground=GROUND, cell_m=3)
    cells = GroundCells(zone)
    assert cells.areas.sum() == pytest.approx(12 * 7.5 + 12 * 4 / 2, rel=1e-5)  # 114 m², all of it in some cell
    assert cells.n == 13  # 12 squares of the three near rows and one of the top row
    assert cells.areas.min() >= 0.5 * 9 - 1e-6
    top = [k for k in range(cells.n) if cells.rows[k] == 3]
    assert [int(cells.cols[k]) for k in top] == [3]


# ---------------------------------------------------------------------------- the foreground's share

SIZES = PerspectiveSizeModel(PlausibilityConfig(heights={"person": [[0.2, 0.06], [1.0, 0.2]]}))


def expected_h(y: float) -> float:
    return 0.06 + (0.2 - 0.06) * (y - 0.2) / 0.8


class Walkers:
    """Persons walking left-right at fixed ground depths; only every third one is detected."""

    def __init__(self, depths_m: list[float], seed: int = 3):
        rng = np.random.default_rng(seed)
        floor = np.clip(150 + rng.normal(0, 6, (H, W, 3)) + np.linspace(0, 40, W)[None, :, None], 0, 255)
        self.floor = cv2.GaussianBlur(floor.astype(np.uint8), (5, 5), 0)
        self.people = [
            (rng.uniform(1, 11), y, rng.choice([-1, 1]) * rng.uniform(0.8, 1.5), k % 3 == 0)
            for k, y in enumerate(depths_m)
        ]

    def frame(self, t: float) -> tuple[np.ndarray, Detections, np.ndarray]:
        img = self.floor.copy()
        ground, boxes, ids = [], [], []
        for k, (x0, y, v, detected) in enumerate(self.people):
            x = 1 + abs(((x0 - 1 + v * t) % 20) - 10)  # bounce between 1 and 11 m
            ground.append((x, y))
            fx, fy = image_px([[x, y]])[0]
            h = expected_h(fy / H) * H
            w = 0.4 * h
            cv2.ellipse(img, (int(fx), int(fy - h / 2)), (int(w / 2), int(h / 2)), 0, 0, 360, (45, 40, 50), -1)
            if detected:
                boxes.append([fx - w / 2, fy - h, fx + w / 2, fy])
                ids.append(k + 1)
        n = len(boxes)
        dets = Detections(
            np.array(boxes).reshape(-1, 4),
            np.full(n, 0.8),
            np.zeros(n),
            np.array(["person"] * n, dtype=object),
            np.array(ids),
        )
        return img, dets, np.array(ground)


def test_the_foreground_residual_goes_to_the_cells_where_its_persons_stand() -> None:
    # 18 walkers in the far half of the square (y 7.5..11.5 m), 6 in the near half: two thirds undetected
    rng = np.random.default_rng(5)
    scene = Walkers([*rng.uniform(7.5, 11.5, 18), *rng.uniform(1.0, 5.0, 6)])
    eng = engine(cell_m=6)  # 2 x 2 cells of 36 m²: near-left, near-right (row 0), far-left, far-right (row 1)
    far_err, near_err = [], []
    for t in range(16):
        img, dets, ground = scene.frame(float(t))
        (fig,) = eng.update(dets, T0 + t, (W, H), Scene(img, SIZES)).crowd
        if t < 6:
            continue  # the background is learned from t = 4
        rule = next(iter(eng.rules.values()))
        assert fig.count_method == "tracks+foreground"
        counts = rule.cell_counts
        assert counts.sum() == pytest.approx(fig.estimate, rel=1e-4)
        far = counts[rule.cells.rows == 1].sum()
        near = counts[rule.cells.rows == 0].sum()
        far_err.append(far / (ground[:, 1] >= 6).sum() - 1)
        near_err.append(near - (ground[:, 1] < 6).sum())
        assert fig.peak.row == 1  # the dense far half holds the peak
    assert abs(np.median(far_err)) <= 0.25  # the far half's persons, two thirds of them from pixels alone
    assert abs(np.median(near_err)) <= 2.0
