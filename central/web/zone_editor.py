"""Zone editor back end: validate zones with the edge's own schema, render the YAML fragment, save to cameras.yaml.

Validation always goes through ``edge.config.parse_config`` so the dashboard can never accept a zone the edge
would reject, and error paths read exactly like the edge's (``cameras[0].zones[1].points``). When the central
manages an edge file (``CentralConfig.zone_config_path``), the zones are validated inside that whole file (so
its detector's class list and the camera's real index apply); otherwise inside a minimal one-camera config.

Saving never takes a path from the request: it only ever writes ``zone_config_path``, atomically (temp file in
the same directory, fsync, ``os.replace``), after the complete new document has passed validation. The previous
file is kept next to it as ``<name>.bak``. YAML comments in the file are not preserved (PyYAML drops them).
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.config import ID_PATTERN, ConfigError, parse_config

MINIMAL_EDGE_ID = "zone-editor"
PLACEHOLDER_URL = "0"  # a device index: valid for the schema, never opened here


class ZoneEditorError(Exception):
    """A request the editor cannot serve; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ValidationResult:
    ok: bool
    errors: list[dict[str, str]] = field(default_factory=list)
    yaml: str = ""
    camera_index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "yaml": self.yaml}


def read_edge_file(path: Path) -> dict[str, Any]:
    """The managed cameras.yaml as a plain mapping (env placeholders left as written)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ZoneEditorError(503, f"cannot read the edge config {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ZoneEditorError(503, f"the edge config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise ZoneEditorError(503, f"the edge config {path} has no cameras list")
    return data


def managed_cameras(path: Path | None) -> list[dict[str, Any]]:
    """Cameras of the managed file with their zones as written (for the editor to load); [] when unmanaged."""
    if path is None:
        return []
    data = read_edge_file(path)
    out = []
    for cam in data["cameras"]:
        if isinstance(cam, dict) and isinstance(cam.get("id"), str):
            out.append({"id": cam["id"], "name": cam.get("name"), "zones": cam.get("zones") or []})
    return out


def _clean_zone(zone: Any) -> Any:
    """Drop keys the editor sends empty (null, "", []) so defaults apply, as a hand-written file would."""
    if not isinstance(zone, dict):
        return zone
    return {k: v for k, v in zone.items() if v is not None and v != "" and v != []}


def _check_camera_id(camera_id: Any) -> str:
    if not isinstance(camera_id, str) or not re.match(ID_PATTERN, camera_id):
        raise ZoneEditorError(422, f"camera_id must match {ID_PATTERN}, got {camera_id!r}")
    return camera_id


def build_document(
    camera_id: str, zones: list[Any], managed: Path | None, *, must_exist: bool = False
) -> tuple[dict[str, Any], int]:
    """The edge document the zones are validated in, and the index of the camera inside it.

    With a managed file and a camera in it: that file with the camera's zones replaced. Otherwise a minimal
    one-camera document (keeping the managed file's detector section, so class names are checked against the
    same label set). ``must_exist`` (saving) turns a camera missing from the managed file into a 404.
    """
    detector: Any = None
    if managed is not None:
        data = copy.deepcopy(read_edge_file(managed))
        for i, cam in enumerate(data["cameras"]):
            if isinstance(cam, dict) and cam.get("id") == camera_id:
                cam["zones"] = zones
                return data, i
        if must_exist:
            raise ZoneEditorError(404, f"camera {camera_id!r} is not in the managed edge config {managed.name}")
        detector = data.get("detector")
    camera = {"id": camera_id, "url": PLACEHOLDER_URL, "zones": zones}
    doc: dict[str, Any] = {"version": 1, "edge_id": MINIMAL_EDGE_ID, "cameras": [camera]}
    if detector is not None:
        doc["detector"] = detector
    return doc, 0


def zones_fragment(camera_id: str, zones: list[Any]) -> str:
    """The YAML to paste under the camera in cameras.yaml."""
    head = f"# cameras.yaml → the camera with id: {camera_id}\n"
    body = yaml.safe_dump({"zones": zones}, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    return head + body


def validate_zones(
    camera_id: Any, zones: Any, managed: Path | None, env: dict[str, str] | None = None
) -> ValidationResult:
    """Validate a camera's zone list exactly as the edge would. Never raises for bad zones; reports them."""
    camera_id = _check_camera_id(camera_id)
    if not isinstance(zones, list):
        return ValidationResult(False, [{"path": "zones", "message": "zones must be a list"}])
    cleaned = [_clean_zone(z) for z in zones]
    doc, index = build_document(camera_id, cleaned, managed)
    source = str(managed.name) if managed else "zone editor"
    try:
        parse_config(doc, source=source, env=dict(os.environ) if env is None else env)
    except ConfigError as e:
        errors = [{"path": p, "message": m} for p, m in e.problems]
        return ValidationResult(False, errors, zones_fragment(camera_id, cleaned), index)
    return ValidationResult(True, [], zones_fragment(camera_id, cleaned), index)


def save_zones(camera_id: Any, zones: Any, managed: Path | None, actor: str = "") -> ValidationResult:
    """Replace one camera's zones in the managed cameras.yaml after validating the whole new file."""
    if managed is None:
        raise ZoneEditorError(409, "this central does not manage an edge config (zone_config_path is not set)")
    camera_id = _check_camera_id(camera_id)
    build_document(camera_id, [], managed, must_exist=True)  # 404 before anything else for an unknown camera
    result = validate_zones(camera_id, zones, managed)
    if not result.ok:
        return result
    doc, _ = build_document(camera_id, [_clean_zone(z) for z in zones], managed, must_exist=True)
    by = f" ({actor})" if actor else ""
    header = f"# Written by the GridWatch zone editor{by}; the previous version is in {managed.name}.bak\n"
    text = header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    _atomic_write(managed, text)
    return result


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            backup = path.with_name(path.name + ".bak")
            backup.write_bytes(path.read_bytes())
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
