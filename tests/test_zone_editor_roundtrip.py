"""Saving zones from the dashboard keeps cameras.yaml as people wrote it (ruamel.yaml round trip): comments, blank
lines, key order, quoting, flow lists and ${ENV} placeholders survive, and only the saved camera's zones change."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import yaml

from central.web.zone_editor import replace_camera_zones, save_zones
from edge.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]


def _managed(tmp_path: Path) -> Path:
    path = tmp_path / "cameras.yaml"
    shutil.copy(REPO_ROOT / "cameras.yaml", path)
    return path


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_saving_one_camera_keeps_every_comment_and_the_other_cameras_byte_for_byte(tmp_path: Path) -> None:
    path = _managed(tmp_path)
    before = path.read_text()
    zones = yaml.safe_load(before)["cameras"][0]["zones"]
    zones[0]["dwell_s"] = 240  # edit one value of one zone
    zones.append({"name": "bus-stop", "type": "no_parking", "points": [[0.5, 0.6], [0.7, 0.6], [0.7, 0.8]],
                  "dwell_s": 60, "schedule": [{"days": "mon-fri", "start": "07:00", "end": "19:00"}]})
    result = save_zones("cam-intersection-01", zones, path, actor="admin-ui")
    assert result.ok, result.errors
    after = path.read_text()

    # every comment line and every end-of-line comment of the original is still there
    for line in before.splitlines():
        if "#" in line:
            comment = line[line.index("#"):]
            assert comment in after, f"lost comment: {comment}"
    assert after.startswith(before.splitlines()[0])  # the file's header comment stays first
    assert "${GRIDWATCH_MQTT_HOST:-127.0.0.1}" in after and '"310101-001-03"' in after  # placeholders, quoting

    # the diff is exactly the edited value and the added zone
    changed = _changed_lines(before, after)
    assert "-        dwell_s: 180" in changed and "+        dwell_s: 240" in changed
    added = [c for c in changed if c.startswith("+")]
    assert added[1:] == [
        "+      - name: bus-stop",
        "+        type: no_parking",
        "+        points: [[0.5, 0.6], [0.7, 0.6], [0.7, 0.8]]",
        "+        dwell_s: 60",
        '+        schedule: [{days: mon-fri, start: "07:00", end: "19:00"}]',
    ], changed
    assert len([c for c in changed if c.startswith("-")]) == 1

    # the edge reads what was validated; the other cameras are untouched
    cfg = load_config(path)
    cam = next(c for c in cfg.cameras if c.id == "cam-intersection-01")
    assert [(z.name, z.dwell_s) for z in cam.zones] == [("west-kerb-no-parking", 240), ("junction-lanes", 180),
                                                         ("bus-stop", 60)]
    assert cam.zones[2].schedule[0].end == "19:00"
    assert path.with_name("cameras.yaml.bak").read_text() == before


def test_replacing_all_zones_keeps_the_blank_line_before_the_next_camera() -> None:
    before = (REPO_ROOT / "cameras.yaml").read_text()
    after = replace_camera_zones(before, "cam-intersection-01", [
        {"name": "only", "type": "no_parking", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]}])
    assert "\n\n  - id: cam-plaza-01" in after
    doc = yaml.safe_load(after)
    assert [z["name"] for z in doc["cameras"][0]["zones"]] == ["only"]
    original = yaml.safe_load(before)
    assert doc["cameras"][1:] == original["cameras"][1:] and doc["mqtt"] == original["mqtt"]
    # round trip with no change at all is the identity
    same = replace_camera_zones(before, "cam-plaza-01", original["cameras"][1]["zones"])
    assert same == before
