"""A site's own vending model: its class names mapped in config (cameras[].class_map) to the vending classes, and
``gridwatch-edge check`` checking zone classes against the names in the ONNX file's metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.cli import main as edge_cli
from edge.config import ConfigError, parse_config
from edge.detectors.factory import rename_classes
from edge.rules import RuleEngine
from tests.test_rules_parking import T0, dets
from tests.test_rules_vending import SQUARE, VENDOR

SITE_NAMES = ["person", "hawker", "food_cart", "market_stall", "car"]  # what a site labelled its footage with


def site_config(class_map: dict[str, str], zone: dict, class_names: list[str] | None = SITE_NAMES) -> dict:
    detector = {"kind": "onnx_yolo", "model_path": "site.onnx"}
    if class_names:
        detector["class_names"] = class_names
    return {
        "edge_id": "edge-t",
        "detector": detector,
        "cameras": [
            {
                "id": "cam-market",
                "url": "x.mp4",
                "class_map": class_map,
                "zones": [
                    {"name": "gate", "type": "no_vending", "points": SQUARE, "dwell_s": 10, "grace_s": 5, **zone}
                ],
            }
        ],
    }


MAP = {"hawker": "vendor", "food_cart": "cart", "market_stall": "stall"}
ZONE = {"classes": ["person", "vendor"], "evidence_classes": ["cart", "stall"]}


def test_site_classes_mapped_to_vending_classes_make_a_stall() -> None:
    cfg = parse_config(site_config(MAP, ZONE))  # the zone names the mapped classes the model itself lacks
    cam = cfg.cameras[0]
    eng = RuleEngine(cam, site=cfg.site, edge_id="edge-t", model_name="site", model_version="1")
    opened = []
    for i in range(25):
        raw = dets((*VENDOR[:4], "hawker", 1), (140, 190, 200, 240, "food_cart", 2))
        opened += [
            ev
            for ev in eng.update(rename_classes(raw, cam.class_map), T0 + i * 0.5, (640, 480)).events
            if ev.event == "opened"
        ]
    assert len(opened) == 1
    subject = opened[0].payload(None)["subject"]
    assert subject["class"] == "cart"
    assert [(p["class"], p["role"]) for p in subject["parts"]] == [("cart", "goods"), ("vendor", "person")]


def test_a_class_map_from_a_name_the_model_lacks_or_a_zone_class_nobody_has_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.class_map\[0\]: unknown class name 'kiosk'"):
        parse_config(site_config({"kiosk": "stall"}, ZONE))
    with pytest.raises(
        ConfigError,
        match=r"cameras\[0\]\.zones\[0\]\.evidence_classes\[1\]: unknown class name "
        r"'umbrella'",
    ):
        parse_config(site_config(MAP, {**ZONE, "evidence_classes": ["cart", "umbrella"]}))


def onnx_with_names(path: Path, names: list[str] | str) -> Path:
    """A file holding just an ONNX ModelProto's metadata_props (field 14) with ultralytics' ``names`` entry:
    what ``gridwatch-edge check`` reads (it loads no runtime)."""

    def field(number: int, payload: bytes) -> bytes:
        n, out = len(payload), bytearray([number << 3 | 2])
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out) + payload

    text = (names if isinstance(names, str) else repr(dict(enumerate(names)))).encode()
    path.write_bytes(field(14, field(1, b"names") + field(2, text)))
    return path


def test_check_reads_the_model_files_class_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx_with_names(tmp_path / "site.onnx", SITE_NAMES)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(site_config(MAP, ZONE, class_names=None)))
    assert edge_cli(["check", str(good)]) == 0
    assert "evidence cart, stall" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(site_config(MAP, {**ZONE, "evidence_classes": ["umbrella"]}, class_names=None)))
    assert edge_cli(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cameras[0].zones[0].evidence_classes[0]" in err and "'umbrella'" in err
    onnx_with_names(tmp_path / "site.onnx", "person, cart")  # metadata that is no names map: named, no traceback
    assert edge_cli(["check", str(good)]) == 2
    assert "detector.model_path: cannot read the model's class names" in capsys.readouterr().err
