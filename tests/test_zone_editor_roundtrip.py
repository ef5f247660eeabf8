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


def test_a_flow_list_written_over_several_lines_in_another_camera_stays_as_written() -> None:
    """ruamel re-emits a multi-line flow list on one line; only the edited camera's lines may change."""
    text = _TWO_CAMERAS  # cam-b writes its points over two lines
    new_zone = {"name": "z1", "type": "no_parking", "points": [[0, 0], [0.5, 0], [0.5, 0.5]]}
    out = replace_camera_zones(text, "cam-a", [new_zone])
    assert _changed_lines(text, out) == [
        "-        points: [[0, 0], [1, 0], [1, 1]]",
        "+        points: [[0, 0], [0.5, 0], [0.5, 0.5]]",
    ]
    # the last camera edited: everything before it and the top-level key after it stay as written
    out_b = replace_camera_zones(text, "cam-b", [{**new_zone, "name": "kerb"}])
    assert out_b.startswith(text.split("  - id: cam-b")[0])
    assert out_b.endswith("# health endpoint\nhealth: {listen: 127.0.0.1:9108}\n")
    assert yaml.safe_load(out_b)["cameras"][1]["zones"][0]["points"] == [[0, 0], [0.5, 0], [0.5, 0.5]]


_TWO_CAMERAS = (
    "edge_id: e1\n"
    "cameras:\n"
    "  - id: cam-a\n"
    "    name: \"Gate A\"\n"
    "    url: a.mp4\n"
    "    zones:\n"
    "      - name: z1\n"
    "        type: no_parking\n"
    "        points: [[0, 0], [1, 0], [1, 1]]\n"
    "\n"
    "  # --- camera b: the plaza ---\n"
    "  - id: cam-b\n"
    "    url: b.mp4\n"
    "    zones:\n"
    "      - name: kerb\n"
    "        type: no_parking\n"
    "        points: [[0.1, 0.2], [0.3, 0.2],\n"
    "                 [0.3, 0.4], [0.1, 0.4]]   # the kerb\n"
    "\n"
    "# health endpoint\n"
    "health: {listen: 127.0.0.1:9108}\n"
)
_NEW_KERB = {"name": "kerb", "type": "no_parking", "points": [[0, 0], [0.5, 0], [0.5, 0.5]]}


def test_a_line_separator_inside_a_quoted_name_does_not_shift_the_splice() -> None:
    """U+2028 in a double-quoted scalar is one line for ruamel's line numbers but two for str.splitlines: the
    splice must not drop the comment before the edited camera or repeat the one after it (both load the same)."""
    text = _TWO_CAMERAS.replace('"Gate A"', '"Gate\u2028A"')
    out = replace_camera_zones(text, "cam-b", [_NEW_KERB])
    assert out.count("# --- camera b: the plaza ---") == 1, out
    assert out.count("# health endpoint") == 1, out
    assert yaml.safe_load(out)["cameras"][1]["zones"][0]["points"] == [[0, 0], [0.5, 0], [0.5, 0.5]]


def test_a_crlf_file_keeps_its_line_ends_and_the_other_camera_byte_for_byte(tmp_path: Path) -> None:
    """A cameras.yaml written on Windows: saving cam-b's zones leaves cam-a's bytes (CRLF included) as they were,
    and the file does not end up with mixed line ends."""
    crlf = _TWO_CAMERAS.replace("\n", "\r\n")
    out = replace_camera_zones(crlf, "cam-b", [_NEW_KERB])
    assert out.startswith(crlf.split("  - id: cam-b")[0]), out
    assert "\n" not in out.replace("\r\n", ""), "mixed line ends"
    assert yaml.safe_load(out)["cameras"][1]["zones"][0]["points"] == [[0, 0], [0.5, 0], [0.5, 0.5]]

    # through the file: read and written without newline translation
    path = tmp_path / "cameras.yaml"
    path.write_bytes(crlf.replace("edge_id: e1", "version: 1\r\nedge_id: e1").replace(
        "health: {listen: 127.0.0.1:9108}", "health: {listen: \"127.0.0.1:9108\"}").encode())
    before = path.read_bytes()
    result = save_zones("cam-b", [_NEW_KERB], path, actor="test")
    assert result.ok, result.errors
    after = path.read_bytes()
    assert after.startswith(before.split(b"  - id: cam-b")[0])
    assert b"\n" not in after.replace(b"\r\n", b"")


def test_comments_and_blank_lines_between_cameras_stay_with_what_follows_them() -> None:
    """A comment line after a camera's last zone introduces the next camera (or top-level key). ruamel keeps it in
    the comment slot of the last zone's last key, so removing that zone lost it, and a zone added after it (or a
    zones key added to a camera without one) ended up below it, on the wrong side of the comment."""
    def diff(text: str, camera_id: str, zones: list) -> list[str]:
        out = replace_camera_zones(text, camera_id, zones)
        assert yaml.safe_load(out)["cameras"][[c["id"] for c in yaml.safe_load(text)["cameras"]].index(camera_id)][
            "zones"] == zones
        return _changed_lines(text, out)

    t = _TWO_CAMERAS
    assert diff(t, "cam-a", []) == [
        "-    zones:", "-      - name: z1", "-        type: no_parking", "-        points: [[0, 0], [1, 0], [1, 1]]",
        "+    zones: []"]
    assert diff(t, "cam-b", [{**_NEW_KERB, "name": "new"}]) == [
        "-      - name: kerb", "+      - name: new",
        "-        points: [[0.1, 0.2], [0.3, 0.2],", "-                 [0.3, 0.4], [0.1, 0.4]]   # the kerb",
        "+        points: [[0, 0], [0.5, 0], [0.5, 0.5]]"]
    added = [c for c in diff(t, "cam-b", [_NEW_KERB, {**_NEW_KERB, "name": "new"}]) if c.startswith("+")]
    assert added[1:] == [
        "+      - name: new", "+        type: no_parking", "+        points: [[0, 0], [0.5, 0], [0.5, 0.5]]"]
    out = replace_camera_zones(t, "cam-b", [_NEW_KERB, {**_NEW_KERB, "name": "new"}])
    assert out.endswith("[[0, 0], [0.5, 0], [0.5, 0.5]]\n\n# health endpoint\nhealth: {listen: 127.0.0.1:9108}\n"), out
    no_zones = t.replace(
        "    zones:\n      - name: z1\n        type: no_parking\n        points: [[0, 0], [1, 0], [1, 1]]\n", "")
    assert diff(no_zones, "cam-a", [_NEW_KERB]) == [
        "+    zones:", "+      - name: kerb", "+        type: no_parking",
        "+        points: [[0, 0], [0.5, 0], [0.5, 0.5]]"]
    assert "    url: a.mp4\n    zones:" in replace_camera_zones(no_zones, "cam-a", [_NEW_KERB])
