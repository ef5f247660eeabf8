"""central.yaml sections for the command center: ``grid`` (the hierarchy), ``escalation`` (three-level linkage) and
``catalogue`` (the category standard). Every field carries a description: the models are the documentation
(``gridwatch-central grid schema`` prints them as JSON Schema; docs/central.md explains them).

Grid levels, top to bottom: district → street → community → cell (the grid cell, 网格). Cases belong to the cell
of their camera (or of their position when the cells have boundaries); everything above is rolled up from cells.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from edge.yamlconfig import Strict

LEVELS: tuple[str, ...] = ("district", "street", "community", "cell")  # top → bottom
ESCALATION_LEVELS: tuple[str, ...] = ("cell", "community", "street", "district")  # a case goes up this way
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


def check_geometry(geom: Any) -> dict[str, Any] | None:
    """A GeoJSON Polygon / MultiPolygon in lon/lat (WGS 84), valid per shapely; returns it unchanged."""
    if geom is None:
        return None
    if not isinstance(geom, dict) or geom.get("type") not in GEOMETRY_TYPES:
        raise ValueError(f"boundary must be a GeoJSON geometry of type {' or '.join(GEOMETRY_TYPES)}")
    from shapely.geometry import shape

    try:
        g = shape(geom)
    except Exception as e:  # shapely raises several types for malformed coordinates
        raise ValueError(f"boundary coordinates are malformed: {e}") from None
    if g.is_empty or g.area <= 0:
        raise ValueError("boundary has no area")
    if not g.is_valid:
        raise ValueError("boundary is not a valid polygon (self-intersecting or badly nested rings)")
    minx, miny, maxx, maxy = g.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise ValueError("boundary coordinates must be [lon, lat] in degrees")
    return geom


class GridUnitConfig(Strict):
    """One unit of the hierarchy at any level."""

    code: str = Field(pattern=CODE_PATTERN, description="Unique code across the hierarchy, e.g. 310101-001-03-12.")
    name: str = Field(min_length=1, max_length=200, description="English (or romanized) name.")
    name_zh: str | None = Field(None, max_length=200, description="Chinese name (the dashboard shows it in zh-CN).")
    team: str | None = Field(
        None, max_length=128,
        description="Squad responsible at this level: a case escalated to this unit is reassigned to it.",
    )
    boundary: dict[str, Any] | None = Field(
        None, description="GeoJSON Polygon or MultiPolygon in [lon, lat]; cells with boundaries locate cases by "
        "position and draw on the map.",
    )

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_geometry(v)


class CellConfig(GridUnitConfig):
    """A grid cell (网格): the unit cases belong to."""


class CommunityConfig(GridUnitConfig):
    """A community (社区) and its grid cells."""

    cells: list[CellConfig] = Field(default_factory=list, description="Grid cells of this community.")


class StreetConfig(GridUnitConfig):
    """A street (街道, sub-district) and its communities."""

    communities: list[CommunityConfig] = Field(default_factory=list, description="Communities of this street.")


class DistrictConfig(GridUnitConfig):
    """A district (区) and its streets."""

    streets: list[StreetConfig] = Field(default_factory=list, description="Streets of this district.")


class GridConfig(Strict):
    """The grid hierarchy. Units can also be imported into the database (``gridwatch-central grid import``, CSV
    or GeoJSON); a code defined here wins over an imported one."""

    districts: list[DistrictConfig] = Field(default_factory=list, description="Districts, each with its streets.")

    @model_validator(mode="after")
    def _unique_codes(self) -> GridConfig:
        seen: set[str] = set()
        for unit in self.walk():
            if unit[1].code in seen:
                raise ValueError(f"grid code {unit[1].code!r} appears more than once")
            seen.add(unit[1].code)
        return self

    def walk(self) -> list[tuple[str, GridUnitConfig, str | None]]:
        """(level, unit, parent code) for every unit, top-down."""
        out: list[tuple[str, GridUnitConfig, str | None]] = []
        for d in self.districts:
            out.append(("district", d, None))
            for s in d.streets:
                out.append(("street", s, d.code))
                for c in s.communities:
                    out.append(("community", c, s.code))
                    out.extend(("cell", cell, c.code) for cell in c.cells)
        return out


class LevelLimit(Strict):
    """The time a level has to resolve a case escalated to it."""

    limit_h: float = Field(gt=0, description="Hours from the escalation to this level until it escalates again.")
    unit: Literal["working", "calendar"] = Field(
        "working", description="Working hours on the `calendar`, or calendar hours."
    )


class EscalationConfig(Strict):
    """Three-level linkage (三级联动): small problems stay in the grid, ordinary ones in the community, serious ones
    in the street; stubborn ones go up to the district in time.

    A case at the cell level escalates when the deadline of one of ``stages`` passes; at a higher level when that
    level's ``limit_h`` since the escalation passes. A handler or dispatcher may also escalate a case the level
    cannot deal with (``POST /api/v1/cases/{id}/escalate``). Each escalation re-dispatches the case to the team of
    the next level's unit (when it has one), writes an ``escalate`` audit entry and publishes ``case.escalated``.
    """

    enabled: bool = Field(
        False, description="Run the escalation sweep (every `tick_s` in `serve`; `gridwatch-central escalate` once)."
    )
    stages: list[Literal["dispatch", "handle"]] = Field(
        default_factory=lambda: ["handle"],
        description="Stages whose deadline, when passed at the cell level, escalates the case to the community.",
    )
    tick_s: float = Field(60.0, ge=1, le=3600, description="Seconds between escalation sweeps in `serve`.")
    community: LevelLimit = Field(LevelLimit(limit_h=8), description="Time limit at the community level.")
    street: LevelLimit = Field(LevelLimit(limit_h=16), description="Time limit at the street level.")
    district: LevelLimit = Field(
        LevelLimit(limit_h=40), description="Time limit at the district (top) level: past it the case stays overdue."
    )

    def limit(self, level: str) -> LevelLimit:
        return getattr(self, level)


class CatalogueLimits(Strict):
    """Time limits per stage in hours (the entry's ``unit``); None where the standard sets none."""

    file: float | None = Field(None, gt=0, description="Reported → filed (report / accept).")
    dispatch: float | None = Field(None, gt=0, description="Filed → dispatched.")
    handle: float | None = Field(None, gt=0, description="Dispatched → handled (disposal).")
    verify: float | None = Field(None, gt=0, description="Handled → closed (verification).")


class CatalogueEntry(Strict):
    """One disposal standard of the category catalogue (e.g. one of a city's 56)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$", description="Catalogue code, e.g. A-01-03.")
    class_code: str = Field(
        alias="class", min_length=1, max_length=16,
        description="Class of the matter: A-D (or the site's own classes).",
    )
    name: str = Field(min_length=1, max_length=200, description="English name.")
    name_zh: str | None = Field(None, max_length=200, description="Chinese name.")
    standard: str | None = Field(None, max_length=8000, description="The disposal standard text (处置标准).")
    department: str | None = Field(None, max_length=128, description="Department responsible.")
    unit: Literal["working", "calendar"] = Field("working", description="Unit of the limits.")
    limits: CatalogueLimits = Field(CatalogueLimits(), description="Time limits per stage.")
    incident_types: list[str] = Field(
        default_factory=list, description="Camera incident types (category codes) filed under this entry.",
    )


class CatalogueConfig(Strict):
    """The category standard. Entries may also be imported from CSV (``gridwatch-central catalogue import``);
    a code defined here wins over an imported one."""

    entries: list[CatalogueEntry] = Field(default_factory=list, description="Catalogue entries.")

    @model_validator(mode="after")
    def _unique(self) -> CatalogueConfig:
        codes = [e.code for e in self.entries]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"duplicate catalogue codes: {dup}")
        types = [t for e in self.entries for t in e.incident_types]
        dup = sorted({t for t in types if types.count(t) > 1})
        if dup:
            raise ValueError(f"incident types mapped to more than one catalogue entry: {dup}")
        return self
