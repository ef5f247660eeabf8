"""Zone editor back end: validate zones with the edge's own schema, render the YAML fragment, save to cameras.yaml.

Validation always goes through ``edge.config.parse_config`` so the dashboard can never accept a zone the edge
would reject, and error paths read exactly like the edge's (``cameras[0].zones[1].points``). When the central
manages an edge file (``CentralConfig.zone_config_path``), the zones are validated inside that whole file (so
its detector's class list and the camera's real index apply); otherwise inside a minimal one-camera config.

Saving never takes a path from the request: it only ever writes ``zone_config_path``, atomically (temp file in
the same directory, fsync, ``os.replace``), after the complete new document has passed validation. The previous
file is kept next to it as ``<name>.bak``. The file is rewritten with ruamel.yaml's round trip, so comments,
layout, quoting and ``${ENV}`` placeholders survive and only that camera's ``zones`` change.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from central.files import atomic_write
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
    with open(managed, encoding="utf-8", newline="") as f:  # line ends as written (CRLF stays CRLF)
        original = f.read()
    text = replace_camera_zones(original, camera_id, [_clean_zone(z) for z in zones])
    # the written text must mean exactly the validated document: parse it back before it replaces the file
    doc, _ = build_document(camera_id, [_clean_zone(z) for z in zones], managed, must_exist=True)
    if yaml.safe_load(text) != doc:
        raise ZoneEditorError(500, "the round-trip YAML writer changed more than the zones; nothing was saved")
    _save_with_backup(managed, text)
    return result


# --------------------------------------------------------------------------- comment-preserving write

# Values written in flow style ([x, y], {days: …}), as people write them in cameras.yaml; zones stay block mappings.
_FLOW_KEYS = {"points", "schedule", "classes", "levels", "size", "location"}


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line a person wrote on one line
    y.indent(mapping=2, sequence=4, offset=2)  # "  - id: …" under "cameras:", as in the sample file
    return y


def _styled(value: Any, flow: bool = False) -> Any:
    """Plain data → ruamel nodes: nested lists and mappings in flow style where a person would write them so."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _styled(v, flow or k in _FLOW_KEYS)
        if flow:
            m.fa.set_flow_style()
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_styled(v, flow) for v in value)
        if flow:
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and _needs_quotes(value):
        from ruamel.yaml.scalarstring import DoubleQuotedScalarString

        return DoubleQuotedScalarString(value)
    return value


def _needs_quotes(text: str) -> bool:
    """Would a YAML 1.1 reader (PyYAML, which the edge uses) read this plain scalar as something else? "19:00"
    is a base-60 integer there, "on" a boolean; ruamel writes YAML 1.2 and would leave them bare."""
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        return True  # times: "07:00" reads as a string, "19:00" does not; quote them all alike
    try:
        return yaml.safe_load(text) != text
    except yaml.YAMLError:
        return True


def _blank_lines_after(mapping: Any) -> int:
    """Blank lines a person left after this mapping (kept in the comment token of its last key)."""
    if not mapping:
        return 0
    token = mapping.ca.items.get(list(mapping.keys())[-1], [None, None, None])[2]
    value = getattr(token, "value", "") or ""
    return max(0, value.count("\n") - (1 if value.strip() else 0))


def _strip_blank_lines_after(mapping: Any) -> None:
    if not mapping:
        return
    slot = mapping.ca.items.get(list(mapping.keys())[-1])
    token = slot[2] if slot else None
    if token is None:
        return
    if (token.value or "").strip():
        token.value = token.value.rstrip("\n") + "\n"
    else:
        slot[2] = None


def _set_blank_lines_after(mapping: Any, n: int) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if not mapping or n <= 0 or _blank_lines_after(mapping) >= n:
        return
    key = list(mapping.keys())[-1]
    slot = mapping.ca.items.setdefault(key, [None, None, None, None])
    token = slot[2]
    if token is not None and (token.value or "").strip():
        token.value = token.value.rstrip("\n") + "\n" * (n + 1)
    else:
        slot[2] = CommentToken("\n" * (n + 1), CommentMark(0), None)


def _merge_zone(target: Any, new: dict[str, Any]) -> Any:
    """Update a zone mapping in place: unchanged keys keep their node (and its comments), changed ones are
    replaced, removed ones deleted, new ones appended."""
    for k in [k for k in target if k not in new]:
        del target[k]
    for k, v in new.items():
        if k in target and target[k] == v:
            continue
        target[k] = _styled(v, k in _FLOW_KEYS)
    return target


def replace_camera_zones(text: str, camera_id: str, zones: list[Any]) -> str:
    """``text`` (a cameras.yaml) with only ``camera_id``'s zones changed: comments, key order, quoting, flow style
    and ``${ENV}`` placeholders of everything else stay as written (ruamel.yaml round trip). A zone whose name is
    unchanged is updated key by key, so the comments on its unchanged keys survive too. A file written with CRLF
    line ends throughout keeps them (ruamel writes LF)."""
    if "\r\n" in text and text.count("\r\n") == text.count("\n"):
        return replace_camera_zones(text.replace("\r\n", "\n"), camera_id, zones).replace("\n", "\r\n")
    import io

    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y = _round_trip()
    data = y.load(text)
    cam = next((c for c in data["cameras"] if isinstance(c, CommentedMap) and c.get("id") == camera_id), None)
    if cam is None:
        raise ZoneEditorError(404, f"camera {camera_id!r} is not in the managed edge config")
    old = cam.get("zones")
    by_name = {z.get("name"): z for z in old if isinstance(z, CommentedMap)} if isinstance(old, CommentedSeq) else {}
    gap = _blank_lines_after(old[-1]) if isinstance(old, CommentedSeq) and old else 0  # e.g. before the next camera
    items = []
    for z in zones:
        existing = by_name.pop(z.get("name"), None) if isinstance(z, dict) else None
        items.append(_merge_zone(existing, z) if existing is not None and isinstance(z, dict) else _styled(z))
    if isinstance(old, CommentedSeq) and not old.fa.flow_style():
        del old[len(items):]
        for i, item in enumerate(items):
            if i < len(old):
                if old[i] is not item:
                    old[i] = item
            else:
                old.append(item)
    else:
        cam["zones"] = CommentedSeq(items)
    if items and isinstance(items[-1], CommentedMap):
        for item in items[:-1]:  # the blank line moves with the end of the list
            if isinstance(item, CommentedMap) and gap:
                _strip_blank_lines_after(item)
        _set_blank_lines_after(items[-1], gap)
    out = io.StringIO()
    y.dump(data, out)
    return _keep_other_cameras_verbatim(text, out.getvalue(), camera_id)


def _camera_lines(text: str, camera_id: str) -> tuple[int, int] | None:
    """The [first, end) line range of ``camera_id``'s item in the ``cameras`` list of ``text``."""
    data = _round_trip().load(text)
    keys = list(data)
    cams = data["cameras"]
    idx = next((i for i, c in enumerate(cams) if isinstance(c, dict) and c.get("id") == camera_id), None)
    if idx is None:
        return None
    start = cams.lc.item(idx)[0]
    if idx + 1 < len(cams):
        end = cams.lc.item(idx + 1)[0]
    else:
        after = keys[keys.index("cameras") + 1:]
        end = data.lc.key(after[0])[0] if after else len(text.splitlines())
    return start, end


_OTHER_LINE_BREAK = re.compile("\r|\x85|\u2028|\u2029")


def _keep_other_cameras_verbatim(original: str, dumped: str, camera_id: str) -> str:
    """``original`` with only the edited camera's lines taken from ``dumped``.

    ruamel's round trip keeps comments and styles but re-emits a flow list a person wrote over several lines on
    one line; splicing in the edited camera alone keeps every other camera byte for byte. If the splice does not
    load to exactly what ``dumped`` loads to (an unusual layout), ``dumped`` is returned. So is it when the text has
    a line break other than LF (a lone CR, NEL, U+2028/U+2029): ruamel's line numbers and ``str.splitlines`` would
    not count the same lines, and a shifted splice can drop or repeat a comment while loading the same."""
    if _OTHER_LINE_BREAK.search(original) or _OTHER_LINE_BREAK.search(dumped):
        return dumped
    try:
        old_range, new_range = _camera_lines(original, camera_id), _camera_lines(dumped, camera_id)
    except Exception:  # noqa: BLE001 - any surprise in line bookkeeping falls back to the plain round trip
        return dumped
    if old_range is None or new_range is None:
        return dumped
    old_lines, new_lines = original.splitlines(keepends=True), dumped.splitlines(keepends=True)
    if old_lines and not old_lines[-1].endswith("\n"):
        old_lines[-1] += "\n"
    camera = _with_tail_of(old_lines[old_range[0]:old_range[1]], new_lines[new_range[0]:new_range[1]])
    spliced = "".join(old_lines[:old_range[0]] + camera + old_lines[old_range[1]:])
    try:
        same = yaml.safe_load(spliced) == yaml.safe_load(dumped)
    except yaml.YAMLError:
        same = False
    return spliced if same else dumped


def _is_blank_or_comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _with_tail_of(old: list[str], new: list[str]) -> list[str]:
    """The edited camera's new lines ending with the blank and comment lines that ended its old lines.

    Those lines introduce what follows (the next camera, a top-level key), but ruamel keeps them in the comment slot
    of the camera's last key: a removed last zone took them along, and a zone or ``zones`` key added after that key
    went below them. So they are taken from the old text, and a copy ruamel left inside the new lines (with the
    blank lines just before it) is dropped."""
    n_tail = 0
    while n_tail < len(old) and _is_blank_or_comment(old[len(old) - 1 - n_tail]):
        n_tail += 1
    tail = old[len(old) - n_tail:]
    body = list(new)
    while body and _is_blank_or_comment(body[-1]):
        body.pop()
    for comment in reversed([line for line in tail if line.strip()]):
        i = next((i for i in range(len(body) - 1, -1, -1) if body[i] == comment), None)
        if i is None:
            continue
        j = i
        while j > 0 and not body[j - 1].strip():
            j -= 1
        del body[j:i + 1]
    return body + tail


def _save_with_backup(path: Path, text: str) -> None:
    """The previous file is kept as ``<name>.bak``; the new one, with the old one's permissions, replaces it whole."""
    path = Path(path)
    mode = None
    if path.exists():
        path.with_name(path.name + ".bak").write_bytes(path.read_bytes())
        mode = path.stat().st_mode & 0o777
    atomic_write(path, text.encode("utf-8"), mode=mode, durable=True)  # the text's own line ends, untranslated
