"""GET /api/v1/cameras tells the truth about cameras: location and grid cell from the edge's heartbeat before any
incident, and status ``unknown`` (not the last reported ``online``) once the edge is offline. GET /api/v1/labels
serves central.yaml's display names."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.central_support import encode, topic
from tests.test_api_support import make_api


def _heartbeat(central, state: str = "online") -> None:  # noqa: ANN001
    at = central.clock.now().isoformat()
    central.ingest.handle(topic("edge-h", "status"), encode({"edge_id": "edge-h", "state": "online", "at": at}))
    central.ingest.handle(
        topic("edge-h", "heartbeat"),
        encode(
            {
                "edge_id": "edge-h",
                "at": at,
                "cameras": [
                    {
                        "camera_id": "cam-new",
                        "name": "New kerb camera",
                        "state": state,
                        "input_fps": 25.0,
                        "decode_fps": 25.0,
                        "detect_fps": 1.0,
                        "analysed_fps": 0.2,
                        "last_analysed_at": central.clock.now().timestamp(),
                        "grid_cell": "310101-009-01",
                        "address": "Xizang Rd 9",
                        "lat": 31.23,
                        "lon": 121.47,
                    }
                ],
            }
        ),
    )


def test_cameras_have_their_configured_location_before_any_incident(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path)
    _heartbeat(env.central)
    items = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"]
    cam = next(c for c in items if c["camera_id"] == "cam-new")
    assert (cam["grid_cell"], cam["address"], cam["lat"], cam["lon"]) == ("310101-009-01", "Xizang Rd 9", 31.23, 121.47)
    assert cam["name"] == "New kerb camera"
    assert cam["status"] == "online" and cam["edge_online"] is True
    assert (cam["health"]["detect_fps"], cam["health"]["analysed_fps"]) == (1.0, 0.2)


def test_cameras_of_an_offline_edge_are_unknown(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path)
    _heartbeat(env.central)
    # the edge says goodbye (its last will, or a clean stop)
    env.central.ingest.handle(
        topic("edge-h", "status"),
        encode({"edge_id": "edge-h", "state": "offline", "at": env.central.clock.now().isoformat()}),
    )
    cam = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"][0]
    assert cam["edge_online"] is False and cam["status"] == "unknown"
    assert cam["health"]["state"] == "online"  # what it last said, kept for the record

    # silent edge: online status but not heard from for longer than the stale limit
    _heartbeat(env.central)
    env.central.clock.set(env.central.clock.now() + timedelta(minutes=5))
    cam = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"][0]
    assert cam["status"] == "unknown"


def test_labels_endpoint_serves_central_yaml_display_names(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(
        sqlite_url,
        tmp_path,
        {
            "departments": [{"code": "traffic_police", "name": "Traffic police", "name_zh": "交警大队"}],
            "squads": [{"code": "sq-1", "name": "Squad 1", "name_zh": "一中队", "department": "traffic_police"}],
            "routing": [{"category": "illegal_parking", "squad": "sq-1"}],
            "display_names": {
                "cameras": {"cam-1": {"name": "Main St"}},
                "zones": {"cam-1/north-curb": {"name": "Kerb"}},
            },
        },
    )
    assert env.client.get("/api/v1/labels").status_code == 401
    body = env.client.get("/api/v1/labels", headers=env.auth("viewer")).json()
    assert body["squads"] == [{"code": "sq-1", "name": "Squad 1", "name_zh": "一中队", "department": "traffic_police"}]
    departments = {d["code"]: d["name"] for d in body["departments"]}
    # configured names, and the categories' other department codes so every case's department has an entry
    assert departments == {
        "traffic_police": "Traffic police",
        "urban_management": "urban_management",
        "public_security": "public_security",
    }
    assert body["cameras"] == {"cam-1": {"name": "Main St", "name_zh": None}}
    assert body["zones"]["cam-1/north-curb"]["name"] == "Kerb"


def test_routing_may_only_name_configured_squads(tmp_path: Path) -> None:
    from central.config import CentralConfigError, parse_central_config

    with pytest.raises(CentralConfigError, match="not one of the configured squads"):
        parse_central_config(
            {
                "squads": [{"code": "sq-1", "name": "Squad 1"}],
                "routing": [{"category": "illegal_parking", "squad": "sq-typo"}],
            }
        )
    parse_central_config({"routing": [{"category": "illegal_parking", "squad": "anything"}]})  # no squads: free
