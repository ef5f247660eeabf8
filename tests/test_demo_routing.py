"""The demo routes every case to a squad: for every zone of the sample cameras.yaml, the category its type opens,
at the zone's (or camera's) grid cell, matches a routing rule of central.yaml that names a configured squad, and the
demo's generated central.yaml (tools/demo_config.py) keeps that routing. Every camera and zone has a display name."""

from __future__ import annotations

from pathlib import Path

from central.config import parse_central_config
from central.routing import route
from edge.config import load_config
from tools.demo_config import demo_central_config

REPO = Path(__file__).resolve().parents[1]
CATEGORY = {"no_parking": "illegal_parking", "no_vending": "street_vending", "crowd": "crowd_density"}


def test_every_demo_zone_routes_to_a_configured_squad(tmp_path: Path) -> None:
    edge = load_config(REPO / "cameras.yaml")
    central = parse_central_config(demo_central_config(tmp_path / "demo", 18830), env={})
    squads = {q.code for q in central.squads}
    assert central.database_url == f"sqlite:///{(tmp_path / 'demo').resolve()}/central.db"
    assert (central.mqtt.host, central.mqtt.port) == ("127.0.0.1", 18830)
    checked = 0
    for cam in edge.cameras:
        assert cam.id in central.display_names.cameras, f"{cam.id} has no display name in central.yaml"
        for zone in cam.zones:
            if zone.type.value == "parking":  # legal bays: occupancy figures, no cases to route
                labels = central.display_names.zones
                assert zone.name in labels or f"{cam.id}/{zone.name}" in labels
                continue
            category = CATEGORY[zone.type.value]
            grid = zone.grid_cell or cam.location.grid_cell
            r = route(central, category=category, grid_cell=grid, zone=zone.name, camera_id=cam.id)
            assert r.squad in squads, f"{cam.id}/{zone.name} ({category} at {grid}) routes to {r.squad!r}"
            assert r.department == central.category(category).department
            assert zone.name in central.display_names.zones or f"{cam.id}/{zone.name}" in central.display_names.zones
            checked += 1
    assert checked >= 5


def test_central_yaml_takes_the_broker_host_from_the_environment() -> None:
    from edge.yamlconfig import read_yaml

    data = read_yaml(REPO / "central.yaml")
    assert parse_central_config(data, env={"GRIDWATCH_MQTT_HOST": "mosquitto"}).mqtt.host == "mosquitto"
    assert parse_central_config(data, env={}).mqtt.host == "127.0.0.1"
    assert parse_central_config(data, env={"GRIDWATCH_MQTT_PORT": "8883"}).mqtt.port == 8883
