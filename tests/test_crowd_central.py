"""Crowd figures at central: the estimate's interval, method and forecast are kept and served, from the edge's own
CrowdFigure payload to /api/v1/cameras and to a crowd case's detail."""

from __future__ import annotations

from pathlib import Path

from edge.rules.crowd import CrowdFigure
from edge.rules.crowd_cells import PeakCell
from tests.central_support import encode, incident_payload, topic
from tests.test_api_support import make_api


def _figure(central) -> dict:  # noqa: ANN001
    fig = CrowdFigure(
        edge_id="edge-c",
        camera_id="cam-plaza",
        zone="floor",
        timestamp=central.clock.now().timestamp(),
        count=45,
        raw_count=27,
        density=0.11,
        level="high",
        peak=PeakCell(col=2, row=5, density=0.62, estimate=5.6, area_m2=9.0, center_m=(7.5, 16.5), center=(0.41, 0.22)),
        forecast={"predicted_density": 0.13, "horizon_s": 120.0, "predicted_level": "high", "early_warning": False},
    )
    d = fig.to_dict()
    d.update(count_low=38, count_high=52, count_method="tracks+foreground", estimate=45.3)  # as the estimator sets
    return d


def test_crowd_figure_interval_method_and_forecast_reach_the_cameras_api(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path)
    at = env.central.clock.now().isoformat()
    env.central.ingest.handle(topic("edge-c", "status"), encode({"edge_id": "edge-c", "state": "online", "at": at}))
    env.central.ingest.handle(
        topic("edge-c", "heartbeat"),
        encode({"edge_id": "edge-c", "at": at, "cameras": [{"camera_id": "cam-plaza", "state": "online"}]}),
    )
    res = env.central.ingest.handle(topic("edge-c", "crowd"), encode(_figure(env.central)))
    assert res.outcome == "crowd"
    cam = next(
        c
        for c in env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"]
        if c["camera_id"] == "cam-plaza"
    )
    (zone,) = cam["crowd"]
    assert (zone["count"], zone["count_low"], zone["count_high"]) == (45, 38, 52)
    assert zone["count_method"] == "tracks+foreground" and zone["raw_count"] == 27
    assert zone["forecast"]["predicted_level"] == "high"
    assert zone["peak_density"] == 0.62 and zone["peak_cell"]["center"] == [0.41, 0.22]
    # a figure whose detail has the wrong shape is a dead letter naming the field; the stored figure stays
    bad = {**_figure(env.central), "count_low": "many"}
    res = env.central.ingest.handle(topic("edge-c", "crowd"), encode(bad))
    assert (res.outcome, res.reason) == ("dead_letter", "schema") and "count_low" in res.detail
    zone = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"][0]["crowd"][0]
    assert zone["count_low"] == 38
    res = env.central.ingest.handle(topic("edge-c", "crowd"), encode({**_figure(env.central), "peak_density": "dense"}))
    assert (res.outcome, res.reason) == ("dead_letter", "schema") and "peak_density" in res.detail
    # a peak cell of an unknown shape keeps only its well-formed parts
    odd = {**_figure(env.central), "peak_cell": {"row": 1, "center": ["left", 0.2], "center_m": [1, 2, 3], "x": {}}}
    assert env.central.ingest.handle(topic("edge-c", "crowd"), encode(odd)).outcome == "crowd"
    zone = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"][0]["crowd"][0]
    assert zone["peak_cell"] == {"row": 1}


def test_crowd_case_detail_shows_the_newest_count_interval_and_forecast(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path)
    p = incident_payload()
    crowd = {
        "count": 45,
        "density": 0.11,
        "level": "high",
        "previous_level": "elevated",
        "count_low": 38,
        "count_high": 52,
        "count_method": "tracks+foreground",
        "raw_count": 27,
        "peak_density": 0.62,
        "peak_cell": {
            "col": 2,
            "row": 5,
            "estimate": 5.6,
            "area_m2": 9.0,
            "center_m": [7.5, 16.5],
            "center": [0.41, 0.22],
        },
        "forecast": {"predicted_density": 0.13, "horizon_s": 120.0, "predicted_level": "high", "early_warning": False},
    }
    p.update(type="crowd_density", subject=None, crowd=crowd)
    p["zone"] = {**p["zone"], "type": "crowd"}
    r = env.central.send(p)
    assert r.case_id is not None, r
    detail = env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()
    assert detail["crowd"]["count_low"] == 38 and detail["crowd"]["forecast"]["horizon_s"] == 120.0
    assert detail["crowd"]["peak_density"] == 0.62 and detail["crowd"]["peak_cell"]["row"] == 5
