"""cameras.yaml validation: a table of broken configs, each naming its path and cause; env substitution; secrets."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from edge.config import ConfigError, load_config, parse_config
from edge.redact import mask_text, mask_url

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "edge_id": "edge-1",
    "cameras": [{"id": "cam-1", "url": "rtsp://10.0.0.5/stream1",
                 "zones": [{"name": "kerb", "type": "no_parking", "points": [[0, 0], [1, 0], [1, 1]]}]}],
}


def with_zone(**changes) -> dict:
    doc = copy.deepcopy(BASE)
    doc["cameras"][0]["zones"][0].update(changes)
    return doc


def with_(path: str, value: object) -> dict:
    doc = copy.deepcopy(BASE)
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    node[keys[-1]] = value
    return doc


def two_zones_named_alike() -> dict:
    doc = copy.deepcopy(BASE)
    doc["cameras"][0]["zones"].append(copy.deepcopy(doc["cameras"][0]["zones"][0]))
    return doc


Z = "cameras[0].zones[0]"
BROKEN = [
    # (id, document, expected path, message fragment)
    ("self-intersecting", with_zone(points=[[0, 0], [1, 1], [1, 0], [0, 1]]), f"{Z}.points", "self-intersecting"),
    ("collinear", with_zone(points=[[0, 0], [0.5, 0.5], [1, 1]]), f"{Z}.points", "degenerate"),
    ("repeated points", with_zone(points=[[0.2, 0.2], [0.2, 0.2], [0.3, 0.3]]), f"{Z}.points", "degenerate"),
    ("two points", with_zone(points=[[0, 0], [1, 1]]), f"{Z}.points", "at least 3 points"),
    ("x above 1", with_zone(points=[[0, 0], [1.2, 0], [0, 1]]), f"{Z}.points", "point 1 (1.2, 0.0) is outside 0..1"),
    ("negative y", with_zone(points=[[0, -0.1], [1, 0], [0, 1]]), f"{Z}.points", "outside 0..1"),
    ("3-d point", with_zone(points=[[0, 0, 0], [1, 0], [0, 1]]), f"{Z}.points[0]", "at most 2 items"),
    ("unknown class", with_zone(classes=["car", "spaceship"]), f"{Z}.classes[1]", "unknown class name 'spaceship'"),
    ("unknown evidence", with_zone(type="no_vending", evidence_classes=["cart"]), f"{Z}.evidence_classes[0]",
     "unknown class name 'cart'"),
    ("unknown detector class", with_("detector.classes", ["person", "unicorn"]), "detector.classes[1]", "unicorn"),
    ("bad day", with_zone(schedule=[{"days": "mon-fry"}]), f"{Z}.schedule[0].days", "unknown day range 'mon-fry'"),
    ("empty day", with_zone(schedule=[{"days": "mon,,fri"}]), f"{Z}.schedule[0].days", "empty day"),
    ("time without zero", with_zone(schedule=[{"start": "7:00"}]), f"{Z}.schedule[0].start", "HH:MM"),
    ("hour 25", with_zone(schedule=[{"end": "25:00"}]), f"{Z}.schedule[0].end", "between 00:00 and 24:00"),
    ("24:30", with_zone(schedule=[{"end": "24:30"}]), f"{Z}.schedule[0].end", "between 00:00 and 24:00"),
    ("unquoted yaml time", with_zone(schedule=[{"start": 1170}]), f"{Z}.schedule[0].start", "quoted"),
    ("schedule as text", with_zone(schedule="mon-fri 07:00-19:00"), f"{Z}.schedule", "valid list"),
    ("unknown zone type", with_zone(type="no_littering"), f"{Z}.type",
     "'no_parking', 'no_vending', 'crowd' or 'parking'"),
    ("crowd without area", with_zone(type="crowd"), Z, "needs area_m2"),
    ("levels out of order", with_zone(type="crowd", area_m2=10, levels={"elevated": 1, "high": 0.5}), f"{Z}.levels",
     "levels must increase"),
    ("bad anchor", with_zone(anchor="top"), f"{Z}.anchor", "'bottom_center', 'center' or 'box'"),
    ("zero dwell", with_zone(dwell_s=0), f"{Z}.dwell_s", "greater than 0"),
    ("zero stall_min_persons", with_zone(type="no_vending", stall_min_persons=0), f"{Z}.stall_min_persons",
     "greater than or equal to 1"),
    ("misspelt zone key", with_zone(dwel_s=3), f"{Z}.dwel_s", "unknown key"),
    ("misspelt camera key", with_("cameras.0.detect_fsp", 2), "cameras[0].detect_fsp", "unknown key"),
    ("misspelt top key", with_("camras", []), "camras", "unknown key"),
    ("duplicate zone", two_zones_named_alike(), "cameras[0]", "zone name 'kerb' is used twice"),
    ("bad time zone", with_("site.timezone", "Mars/Olympus"), "site.timezone", "unknown time zone"),
    ("bad url scheme", with_("cameras.0.url", "ftp://cam/x"), "cameras[0].url", "unsupported url scheme 'ftp'"),
    ("bad camera id", with_("cameras.0.id", "cam 1"), "cameras[0].id", "should match pattern"),
    ("no cameras", with_("cameras", []), "cameras", "at least 1 item"),
]


@pytest.mark.parametrize("doc,path,fragment", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_config_names_the_path_and_the_cause(doc, path, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(doc, source="cams.yaml", env={})
    problems = dict(err.value.problems)
    assert path in problems, err.value.problems
    assert fragment in problems[path]
    assert str(err.value).startswith("cams.yaml: ") and f"  {path}: " in str(err.value)


def test_the_repository_cameras_yaml_validates():
    cfg = load_config(REPO / "cameras.yaml", env={})
    assert cfg.edge_id == "edge-demo-01" and len(cfg.cameras) >= 3
    zones = {z.name: z for c in cfg.cameras for z in c.zones}
    assert zones["west-kerb-no-parking"].dwell_s == 180 and zones["plaza-floor"].area_m2 == 400
    assert all(Path(c.url).is_absolute() for c in cfg.cameras)  # file urls resolved next to the yaml


def test_env_substitution_and_defaults(tmp_path):
    doc = copy.deepcopy(BASE)
    doc["cameras"][0]["url"] = "rtsp://admin:${CAM_PW}@10.0.0.5/stream1"
    doc["mqtt"] = {"host": "${MQTT_HOST:-127.0.0.1}", "port": "${MQTT_PORT:-1883}", "password": "${MQTT_PW:-}"}
    cfg = parse_config(doc, env={"CAM_PW": "s3cret!", "MQTT_PORT": "8883"})
    assert cfg.cameras[0].url == "rtsp://admin:s3cret!@10.0.0.5/stream1"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.password) == ("127.0.0.1", 8883, None)

    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    assert err.value.problems == [("cameras[0].url", "environment variable CAM_PW is not set (use ${CAM_PW:-default})")]


def test_load_config_reports_yaml_syntax_and_missing_files(tmp_path):
    bad = tmp_path / "cameras.yaml"
    bad.write_text("edge_id: e1\ncameras:\n  - id: c1\n    url: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    (where, msg), = err.value.problems
    assert where.startswith("line ") and "YAML syntax error" in msg
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.yaml")
    unquoted = tmp_path / "unquoted.yaml"
    unquoted.write_text(
        "edge_id: e1\ncameras:\n  - id: c1\n    url: rtsp://h/s\n    zones:\n"
        "      - {name: z, type: no_parking, points: [[0, 0], [1, 0], [1, 1]],\n"
        "         schedule: [{start: 07:00, end: 19:30}]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(unquoted)
    assert err.value.problems == [(
        "cameras[0].zones[0].schedule[0].end",
        'time must be a quoted "HH:MM" string (YAML read an unquoted time as the number 1170)',
    )]


def test_mask_url_hides_passwords_and_tokens():
    assert mask_url("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert mask_url("http://cam/mjpg?user=a&password=x&token=y") == "http://cam/mjpg?user=a&password=***&token=***"
    assert mask_url("rtsp://10.0.0.5/stream1") == "rtsp://10.0.0.5/stream1"
    assert mask_url("/media/clip.mp4") == "/media/clip.mp4"
    assert mask_text("connect failed for s3cret!", ["s3cret!"]) == "connect failed for ***"


def test_defaults_merge_under_each_camera_key_by_key():
    doc = copy.deepcopy(BASE)
    doc["defaults"] = {"detect_fps": 3, "loop": True}
    doc["cameras"].append({"id": "cam-2", "url": "x.mp4", "detect_fps": 1})
    cfg = parse_config(doc, env={})
    assert [(c.detect_fps, c.loop) for c in cfg.cameras] == [(3, True), (1, True)]
