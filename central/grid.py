"""The grid hierarchy in use: central.yaml's ``grid`` section merged with units imported into ``grid_units``.

``GridIndex`` answers: a cell's ancestors (district, street, community), every cell under a unit, the team at each
level, and which cell contains a point (when cells have boundaries). Cases are rolled up from their ``grid_cell``
through the *current* hierarchy, so a re-import that moves a cell to another community moves its history too.

Imports (``gridwatch-central grid import FILE``):

* CSV with a header: ``level,code,name,name_zh,parent,team,boundary`` (``boundary`` optional: a GeoJSON geometry
  as JSON text). ``level`` is district | street | community | cell; ``parent`` is the code of the unit one level up
  (empty for a district).
* GeoJSON FeatureCollection: each feature's ``properties`` hold the same keys (``level``, ``code``, …), its
  ``geometry`` is the boundary. A feature with only ``code`` adds a boundary to a unit that already exists.

An import validates the whole file (and the merged hierarchy) before writing anything; units are upserted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.command_config import CODE_PATTERN, LEVELS, check_geometry
from central.command_import import Upsert, read_import
from central.command_models import GridUnit
from central.config import CentralConfig

PARENT_LEVEL = {"street": "district", "community": "street", "cell": "community"}
_CODE_RE = re.compile(CODE_PATTERN)


class GridError(ValueError):
    """An import or a hierarchy that does not hold together; the message names the row / feature and key."""


@dataclass
class Unit:
    code: str
    level: str
    parent: str | None
    name: str
    name_zh: str | None = None
    team: str | None = None
    boundary: dict[str, Any] | None = None
    source: str = "config"  # config | import
    children: list[str] = field(default_factory=list)

    def as_dict(self, *, boundary: bool = False) -> dict[str, Any]:
        out = {
            "code": self.code,
            "level": self.level,
            "parent": self.parent,
            "name": self.name,
            "name_zh": self.name_zh,
            "team": self.team,
            "source": self.source,
            "has_boundary": self.boundary is not None,
            "children": len(self.children),
        }
        if boundary:
            out["boundary"] = self.boundary
        return out


class GridIndex:
    """An immutable view of the hierarchy (build one with ``load_grid``)."""

    def __init__(self, units: dict[str, Unit]):
        self.units = units
        for u in units.values():
            u.children = []
        for u in units.values():
            if u.parent in units:
                units[u.parent].children.append(u.code)
        for u in units.values():
            u.children.sort()
        self._ancestors: dict[str, dict[str, str | None]] = {}
        for code, u in units.items():
            if u.level == "cell":
                self._ancestors[code] = self._chain(code)
        self._tree = None  # shapely STRtree of cell boundaries, built on first locate()
        self._tree_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.units)

    def _chain(self, code: str) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(LEVELS)
        cur: str | None = code
        while cur is not None and cur in self.units:
            u = self.units[cur]
            out[u.level] = u.code
            cur = u.parent
        return out

    def get(self, code: str | None) -> Unit | None:
        return self.units.get(code) if code else None

    def ancestors(self, cell: str | None) -> dict[str, str | None]:
        """{"district", "street", "community", "cell"} → code for a known cell; all None otherwise."""
        if cell is None or cell not in self._ancestors:
            return dict.fromkeys(LEVELS)
        return self._ancestors[cell]

    def unit_at(self, cell: str | None, level: str) -> str | None:
        """The code of the unit at ``level`` that contains ``cell`` (the cell itself for level "cell")."""
        return self.ancestors(cell).get(level)

    def cells_under(self, code: str) -> list[str]:
        """Every cell in (or equal to) unit ``code``, sorted; [] for an unknown code."""
        u = self.units.get(code)
        if u is None:
            return []
        if u.level == "cell":
            return [code]
        out: list[str] = []
        stack = list(u.children)
        while stack:
            c = stack.pop()
            cu = self.units[c]
            if cu.level == "cell":
                out.append(c)
            else:
                stack.extend(cu.children)
        return sorted(out)

    def of_level(self, level: str) -> list[Unit]:
        return sorted((u for u in self.units.values() if u.level == level), key=lambda u: u.code)

    def team_at(self, cell: str | None, level: str) -> tuple[str | None, str | None]:
        """(unit code, team) at ``level`` above ``cell``."""
        code = self.unit_at(cell, level)
        u = self.units.get(code) if code else None
        return (code, u.team if u else None)

    def locate(self, lon: float | None, lat: float | None) -> str | None:
        """The cell whose boundary contains the point (the smallest if several overlap); None when no cell does."""
        if lon is None or lat is None:
            return None
        from shapely import STRtree
        from shapely.geometry import Point, shape

        with self._tree_lock:
            if self._tree is None:
                cells = [u for u in self.units.values() if u.level == "cell" and u.boundary]
                self._geoms = [shape(u.boundary) for u in cells]
                self._geom_codes = [u.code for u in cells]
                self._tree = STRtree(self._geoms) if cells else False  # type: ignore[assignment]
        if not self._tree:
            return None
        p = Point(lon, lat)
        hits = [int(i) for i in self._tree.query(p, predicate="covered_by")]  # type: ignore[attr-defined]
        if not hits:
            return None
        best = min(hits, key=lambda i: (self._geoms[i].area, self._geom_codes[i]))
        return self._geom_codes[best]

    def problems(self) -> list[str]:
        """Structural problems: a parent that is missing or at the wrong level."""
        out = []
        for u in sorted(self.units.values(), key=lambda x: x.code):
            want = PARENT_LEVEL.get(u.level)
            if want is None:
                if u.parent is not None:
                    out.append(f"{u.code}: a district has no parent (got {u.parent!r})")
                continue
            p = self.units.get(u.parent) if u.parent else None
            if p is None:
                out.append(f"{u.code}: parent {u.parent!r} is not a known {want}")
            elif p.level != want:
                out.append(f"{u.code}: parent {u.parent!r} is a {p.level}, not a {want}")
        return out

    def tree(self) -> list[dict[str, Any]]:
        """Nested district → street → community → cell dicts (no boundaries)."""

        def node(code: str) -> dict[str, Any]:
            u = self.units[code]
            d = u.as_dict()
            if u.level != "cell":
                d["units"] = [node(c) for c in u.children]
            return d

        return [node(u.code) for u in self.of_level("district")]

    def geojson(self, level: str = "cell") -> dict[str, Any]:
        """A FeatureCollection of the units at ``level`` that have boundaries (properties: code, names, team,
        and the codes of their ancestors)."""
        feats = []
        for u in self.of_level(level):
            if u.boundary is None:
                continue
            anc = self._chain(u.code)
            feats.append(
                {
                    "type": "Feature",
                    "geometry": u.boundary,
                    "properties": {
                        "code": u.code,
                        "level": u.level,
                        "name": u.name,
                        "name_zh": u.name_zh,
                        "team": u.team,
                        **{k: v for k, v in anc.items() if k != u.level},
                    },
                }
            )
        return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------- loading


def config_units(config: CentralConfig) -> dict[str, Unit]:
    return {
        u.code: Unit(
            code=u.code,
            level=level,
            parent=parent,
            name=u.name,
            name_zh=u.name_zh,
            team=u.team,
            boundary=u.boundary,
            source="config",
        )
        for level, u, parent in config.grid.walk()
    }


def db_units(session: Session) -> dict[str, Unit]:
    return {
        r.code: Unit(
            code=r.code,
            level=r.level,
            parent=r.parent_code,
            name=r.name,
            name_zh=r.name_zh,
            team=r.team,
            boundary=r.boundary_json,
            source="import",
        )
        for r in session.scalars(select(GridUnit))
    }


_cache: dict[tuple[int, str], tuple[Any, tuple[Any, ...], GridIndex]] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 16
_generation = [0]  # bumped by every import in this process (an import in another process changes the stamp)


def load_grid(session: Session, config: CentralConfig) -> GridIndex:
    """The merged hierarchy (config units win). Cached per config and database until ``grid_units`` changes."""
    stamp = (*session.execute(select(func.count(), func.max(GridUnit.updated_at))).one(), _generation[0])
    key = (id(config.grid), str(session.get_bind().url))
    with _cache_lock:
        hit = _cache.get(key)
        # the entry holds the grid config itself, so its id cannot be reused by another object while cached
        if hit is not None and hit[0] is config.grid and hit[1] == stamp:
            return hit[2]
    units = db_units(session) if stamp[0] else {}
    units.update(config_units(config))
    index = GridIndex(units)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.pop(next(iter(_cache)))
        _cache[key] = (config.grid, stamp, index)
    return index


# --------------------------------------------------------------------------- import


def _clean(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _unit_from_record(rec: dict[str, Any], where: str, boundary: Any = None) -> dict[str, Any]:
    code = _clean(rec.get("code"))
    if code is None or not _CODE_RE.match(code):
        raise GridError(f"{where}: code {code!r} must be 1-64 letters, digits, '_', '.', '-'")
    out: dict[str, Any] = {"code": code}
    for key in ("level", "name", "name_zh", "parent", "team"):
        if key in rec:
            out[key] = _clean(rec.get(key))
    if out.get("level") is not None and out["level"] not in LEVELS:
        raise GridError(f"{where}: level {out['level']!r} must be one of {', '.join(LEVELS)}")
    for key, n in (("name", 200), ("name_zh", 200), ("team", 128)):
        if out.get(key) and len(out[key]) > n:
            raise GridError(f"{where}: {key} is longer than {n} characters")
    if isinstance(boundary, str) and boundary.strip():
        try:
            boundary = json.loads(boundary)
        except json.JSONDecodeError as e:
            raise GridError(f"{where}: boundary is not JSON ({e.msg})") from None
    if boundary not in (None, ""):
        try:
            out["boundary"] = check_geometry(boundary)
        except ValueError as e:
            raise GridError(f"{where}: {e}") from None
    return out


def parse_csv(text: str, source: str = "<csv>") -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = {"level", "code", "name"} - set(reader.fieldnames or [])
    if missing:
        raise GridError(f"{source}: the header needs the columns level, code, name (missing: {sorted(missing)})")
    return [_unit_from_record(row, f"{source} line {i}", row.get("boundary")) for i, row in enumerate(reader, 2)]


def parse_geojson(text: str, source: str = "<geojson>") -> list[dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise GridError(f"{source}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise GridError(f"{source}: expected a GeoJSON FeatureCollection")
    out = []
    for i, f in enumerate(doc["features"]):
        props = (f.get("properties") or {}) if isinstance(f, dict) else {}
        out.append(
            _unit_from_record(props, f"{source} features[{i}]", f.get("geometry") if isinstance(f, dict) else None)
        )
    return out


def import_units(
    session: Session, config: CentralConfig, records: list[dict[str, Any]], now: datetime, source: str = "<import>"
) -> dict[str, int]:
    """Validate and upsert ``records`` (from parse_csv / parse_geojson). Nothing is written when anything is wrong.
    Returns {"created", "updated", "boundaries"}."""
    existing = {r.code: r for r in session.scalars(select(GridUnit))}
    cfg_codes = set(config_units(config))
    merged = db_units(session)
    boundaries = 0
    seen: set[str] = set()
    for rec in records:
        code = rec["code"]
        if code in seen:
            raise GridError(f"{source}: code {code!r} appears more than once")
        seen.add(code)
        if code in cfg_codes:
            raise GridError(f"{source}: {code!r} is defined in central.yaml's grid section; change it there")
        cur = merged.get(code)
        if cur is None:
            if not rec.get("level") or not rec.get("name"):
                raise GridError(f"{source}: new unit {code!r} needs a level and a name")
            merged[code] = Unit(
                code=code,
                level=rec["level"],
                parent=rec.get("parent"),
                name=rec["name"],
                name_zh=rec.get("name_zh"),
                team=rec.get("team"),
                boundary=rec.get("boundary"),
                source="import",
            )
        else:
            for key in ("level", "name", "name_zh", "team", "boundary"):
                if rec.get(key) is not None:
                    setattr(cur, key, rec[key])
            if "parent" in rec:
                cur.parent = rec["parent"]
    full = {**merged, **config_units(config)}
    problems = GridIndex(full).problems()
    if problems:
        raise GridError(
            f"{source}: the hierarchy does not hold together: "
            + "; ".join(problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        )
    rows = Upsert(session, existing, GridUnit)
    for rec in records:
        u = merged[rec["code"]]
        row = rows.row(u.code)
        if rec.get("boundary") is not None:
            boundaries += 1
        row.level, row.parent_code, row.name, row.name_zh, row.team = u.level, u.parent, u.name, u.name_zh, u.team
        row.boundary_json, row.updated_at = u.boundary, now
    session.flush()
    _generation[0] += 1
    return {"created": rows.created, "updated": rows.updated, "boundaries": boundaries}


def import_file(session: Session, config: CentralConfig, path: str | Path, now: datetime) -> dict[str, int]:
    p = Path(path)
    text = read_import(p, GridError)
    is_json = p.suffix.lower() in (".geojson", ".json") or text.lstrip().startswith("{")
    records = parse_geojson(text, str(p)) if is_json else parse_csv(text, str(p))
    return import_units(session, config, records, now, str(p))
