"""Zone editor API: validation through the edge's own schema (same error paths), YAML export the edge accepts,
admin-only atomic save into the managed cameras.yaml, and refusals (role, unmanaged, unknown camera, bad zones)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from central.db import upgrade
from edge.config import load_config, parse_config
from tests.test_api_support import ApiEnv, make_api

REPO_ROOT = Path(__file__).resolve().parents[1]
KERB = {"name": "east-kerb", "type": "no_parking", "location": "湖滨路东侧",
        "points": [[0.6, 0.5], [0.9, 0.5], [0.9, 0.8], [0.6, 0.8]],
        "dwell_s": 45, "classes": ["car", "truck"], "schedule": [{"days": "mon-fri", "start": "07:00", "end": "19:00"}]}
BOWTIE = {"name": "bowtie", "type": "no_parking", "points": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}


def _env(tmp_path: Path, managed: bool) -> ApiEnv:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    extra = {}
    if managed:
        (tmp_path / "edge").mkdir()
        shutil.copy(REPO_ROOT / "cameras.yaml", tmp_path / "edge" / "cameras.yaml")
        extra["zone_config_path"] = str(tmp_path / "edge" / "cameras.yaml")
    return make_api(url, tmp_path, extra, web=True)


@pytest.fixture
def unmanaged(tmp_path: Path) -> Iterator[ApiEnv]:
    env = _env(tmp_path, managed=False)
    with env.client:
        yield env


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[ApiEnv]:
    env = _env(tmp_path, managed=True)
    with env.client:
        yield env


def _validate(env: ApiEnv, zones: list, camera_id: str = "cam-new", role: str = "viewer") -> dict:
    r = env.client.post("/api/v1/zones/validate", json={"camera_id": camera_id, "zones": zones},
                        headers=env.auth(role))
    assert r.status_code == 200, r.text
    return r.json()


def test_valid_zones_export_yaml_the_edge_accepts(unmanaged: ApiEnv) -> None:
    out = _validate(unmanaged, [KERB])
    assert out["ok"] is True and out["errors"] == []
    fragment = yaml.safe_load(out["yaml"])
    cfg = parse_config({"edge_id": "e1", "cameras": [{"id": "cam-new", "url": "0", **fragment}]}, env={})
    zone = cfg.cameras[0].zones[0]
    assert zone.name == "east-kerb" and zone.dwell_s == 45 and zone.classes == ["car", "truck"]
    assert zone.points[2] == (0.9, 0.8) and zone.schedule[0].days == "mon-fri"
    assert zone.location == "湖滨路东侧" and "湖滨路东侧" in out["yaml"]  # readable, not \u-escaped
    # empty form fields are dropped so the edge's defaults apply, as in a hand-written file
    out = _validate(unmanaged, [{**KERB, "grid_cell": "", "classes": [], "area_m2": None}])
    assert out["ok"] is True and "grid_cell" not in out["yaml"] and "area_m2" not in out["yaml"]


def test_errors_carry_the_edge_paths(unmanaged: ApiEnv) -> None:
    crowd_without_area = {"name": "square", "type": "crowd", "points": [[0, 0], [1, 0], [1, 1]]}
    bad_class = {**KERB, "name": "k2", "classes": ["car", "spaceship"]}
    bad_time = {**KERB, "name": "k3", "schedule": [{"days": "mon-fri", "start": "25:00", "end": "19:00"}]}
    out = _validate(unmanaged, [BOWTIE, crowd_without_area, bad_time])
    assert out["ok"] is False
    paths = {e["path"]: e["message"] for e in out["errors"]}
    assert "self-intersecting" in paths["cameras[0].zones[0].points"]
    assert "area_m2" in paths["cameras[0].zones[1]"]
    assert "cameras[0].zones[2].schedule[0].start" in paths
    # class names are checked after the schema, exactly like the edge's loader
    out = _validate(unmanaged, [bad_class])
    assert out["errors"] == [{"path": "cameras[0].zones[0].classes[1]",
                              "message": "unknown class name 'spaceship' for detector ssd_mobilenet_v2"}]
    # duplicate zone names on one camera
    out = _validate(unmanaged, [KERB, KERB])
    assert any("used twice" in e["message"] for e in out["errors"])


def test_managed_file_gives_real_camera_index(managed: ApiEnv) -> None:
    cfg = managed.central.config
    data = yaml.safe_load(Path(cfg.zone_config_path).read_text())
    index = [c["id"] for c in data["cameras"]].index("cam-plaza-01")
    out = _validate(managed, [BOWTIE], camera_id="cam-plaza-01")
    assert out["errors"][0]["path"] == f"cameras[{index}].zones[0].points"
    # the managed file's detector.classes allow-list is not the zone's concern, but its label set is
    r = managed.client.get("/api/v1/zones/config", headers=managed.auth("viewer"))
    body = r.json()
    assert r.status_code == 200 and body["managed"] is True and body["can_save"] is False
    plaza = next(c for c in body["cameras"] if c["id"] == "cam-plaza-01")
    assert plaza["zones"][0]["name"] == "plaza-floor"
    assert managed.client.get("/api/v1/zones/config", headers=managed.auth("admin")).json()["can_save"] is True


def test_admin_saves_atomically_and_the_edge_loads_it(managed: ApiEnv) -> None:
    path = Path(managed.central.config.zone_config_path)
    before = path.read_text()
    r = managed.client.post("/api/v1/zones/save", json={"camera_id": "cam-intersection-01", "zones": [KERB]},
                            headers=managed.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["saved"] is True
    cfg = load_config(path)
    cam = next(c for c in cfg.cameras if c.id == "cam-intersection-01")
    assert [z.name for z in cam.zones] == ["east-kerb"]
    assert path.with_name("cameras.yaml.bak").read_text() == before
    assert "${GRIDWATCH_MQTT_HOST:-127.0.0.1}" in path.read_text()  # env placeholders are written as they were
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # other cameras are untouched
    plaza = next(c for c in cfg.cameras if c.id == "cam-plaza-01")
    assert plaza.zones[0].name == "plaza-floor"


def test_save_refusals_leave_the_file_alone(managed: ApiEnv) -> None:
    path = Path(managed.central.config.zone_config_path)
    before = path.read_text()
    body = {"camera_id": "cam-intersection-01", "zones": [KERB]}
    for role, status in ((None, 401), ("viewer", 403), ("dispatcher", 403), ("handler", 403)):
        r = managed.client.post("/api/v1/zones/save", json=body, headers=managed.auth(role))
        assert r.status_code == status, (role, r.text)
    r = managed.client.post("/api/v1/zones/save", json={"camera_id": "cam-intersection-01", "zones": [BOWTIE]},
                            headers=managed.auth("admin"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_zones"
    assert r.json()["errors"][0]["path"].endswith("zones[0].points")
    r = managed.client.post("/api/v1/zones/save", json={"camera_id": "cam-nowhere", "zones": [KERB]},
                            headers=managed.auth("admin"))
    assert r.status_code == 404 and "cam-nowhere" in r.json()["detail"]
    # the path is never taken from the request: extra keys are refused outright
    r = managed.client.post("/api/v1/zones/save", json={**body, "path": "/tmp/evil.yaml"},
                            headers=managed.auth("admin"))
    assert r.status_code == 422
    r = managed.client.post("/api/v1/zones/save", json={"camera_id": "../../etc/passwd", "zones": [KERB]},
                            headers=managed.auth("admin"))
    assert r.status_code == 422 and "camera_id" in r.json()["detail"]
    assert path.read_text() == before
    assert not Path("/tmp/evil.yaml").exists()


def test_unmanaged_save_is_409_and_validate_needs_a_token(unmanaged: ApiEnv) -> None:
    r = unmanaged.client.post("/api/v1/zones/save", json={"camera_id": "cam-1", "zones": [KERB]},
                              headers=unmanaged.auth("admin"))
    assert r.status_code == 409 and r.json()["code"] == "zone_config_not_managed"
    r = unmanaged.client.post("/api/v1/zones/validate", json={"camera_id": "cam-1", "zones": [KERB]})
    assert r.status_code == 401
    r = unmanaged.client.get("/api/v1/zones/config", headers=unmanaged.auth("viewer"))
    assert r.json() == {"managed": False, "file": None, "cameras": [], "can_save": False}


def test_camera_outside_the_managed_file_validates_but_cannot_be_saved(managed: ApiEnv) -> None:
    out = _validate(managed, [KERB], camera_id="cam-not-in-file")
    assert out["ok"] is True
    r = managed.client.post("/api/v1/zones/save", json={"camera_id": "cam-not-in-file", "zones": [KERB]},
                            headers=managed.auth("admin"))
    assert r.status_code == 404 and r.json()["code"] == "camera_not_found"


def test_unreadable_managed_file_is_a_clear_503(managed: ApiEnv) -> None:
    path = Path(managed.central.config.zone_config_path)
    path.write_text("cameras: [unclosed\n")
    r = managed.client.get("/api/v1/zones/config", headers=managed.auth("viewer"))
    assert r.status_code == 503 and str(path) in r.json()["detail"] and "YAML" in r.json()["detail"]
    path.unlink()
    r = managed.client.post("/api/v1/zones/validate", json={"camera_id": "cam-1", "zones": [KERB]},
                            headers=managed.auth("viewer"))
    assert r.status_code == 503 and "cannot read" in r.json()["detail"]
