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


CROWD_LEVELS: tuple[str, ...] = ("elevated", "high", "critical")  # edge/rules/crowd.py's levels above normal


class CrowdPlan(Strict):
    """The response plan (应急预案) for one crowd zone at one warning level."""

    zone: str = Field(
        min_length=1, max_length=257,
        description="Zone name (`plaza-floor`), `camera_id/zone` for one camera's zone (wins over the name), or `*` "
        "for every crowd zone without a plan of its own.",
    )
    level: Literal["elevated", "high", "critical"] = Field(
        description="Crowd level the plan is for. A case at a level without a plan of its own shows the plan of the "
        "highest lower level that has one.",
    )
    plan: str = Field(min_length=1, max_length=8000, description="What to do (English).")
    plan_zh: str | None = Field(None, max_length=8000, description="What to do (Chinese; zh-CN dashboard).")
    notify: list[str] = Field(
        default_factory=list, max_length=50,
        description="Who is told (squad or department codes, duty desks): listed in the `crowd.response` event.",
    )
    dispatch: list[str] = Field(
        default_factory=list, max_length=50,
        description="Squads sent to the zone. When `squads` are configured these must be among them.",
    )


class CrowdResponseConfig(Strict):
    """Crowd response plans per zone and level. When a crowd case reaches a level with a plan, central writes a
    `response_plan` audit entry and publishes a `crowd.response` event (once per case and level) with the plan,
    `notify` and `dispatch`: a webhook with `events: [crowd.response]` carries it to the teams' duty system."""

    plans: list[CrowdPlan] = Field(default_factory=list, description="Plans; one per zone and level.")

    @model_validator(mode="after")
    def _unique(self) -> CrowdResponseConfig:
        keys = [(p.zone, p.level) for p in self.plans]
        dup = sorted({f"{z}@{lv}" for z, lv in keys if keys.count((z, lv)) > 1})
        if dup:
            raise ValueError(f"more than one plan for the same zone and level: {dup}")
        return self

    def plan_for(self, camera_id: str | None, zone: str | None, level: str | None) -> CrowdPlan | None:
        """The plan for a zone at ``level``: ``camera/zone`` before ``zone`` before ``*``; at the level itself or
        else the highest lower level that has one."""
        if level not in CROWD_LEVELS or not zone:
            return None
        keys = ([f"{camera_id}/{zone}"] if camera_id else []) + [zone, "*"]
        rank = CROWD_LEVELS.index(level)
        for key in keys:
            own = {p.level: p for p in self.plans if p.zone == key}
            for lv in reversed(CROWD_LEVELS[: rank + 1]):
                if lv in own:
                    return own[lv]
        return None


class MapConfig(Strict):
    """The map page. Without ``tile_url`` it draws vector boundaries only and requests nothing beyond central."""

    tile_url: str | None = Field(
        None, max_length=1000, pattern=r"^https?://[^/\s]+/\S*\{z\}\S*$",
        description="An internal tile server drawn under the grid, e.g. `https://tiles.internal/{z}/{x}/{y}.png` "
        "(Web Mercator XYZ tiles; `{z}`, `{x}`, `{y}` are replaced). Its origin is added to the pages' "
        "Content-Security-Policy `img-src`.",
    )
    attribution: str | None = Field(None, max_length=300, description="Shown under the map when tiles are drawn.")
    bounds: tuple[float, float, float, float] | None = Field(
        None, description="[west, south, east, north] in degrees: tiles are requested only inside these bounds.",
    )
    min_zoom: int = Field(0, ge=0, le=22, description="Lowest zoom level the tile server has.")
    max_zoom: int = Field(19, ge=0, le=22, description="Highest zoom level the tile server has.")

    @field_validator("tile_url", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return None if v == "" else v

    @model_validator(mode="after")
    def _check(self) -> MapConfig:
        if self.min_zoom > self.max_zoom:
            raise ValueError("min_zoom must not exceed max_zoom")
        if self.bounds is not None:
            w, s, e, n = self.bounds
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError("bounds must be [west, south, east, north] with west < east and south < north")
        return self

    def tile_origin(self) -> str | None:
        """scheme://host[:port] of the tile server (for the CSP), or None."""
        if not self.tile_url:
            return None
        scheme, _, rest = self.tile_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class FindingsScheduleConfig(Strict):
    """The weekly findings analysis: run by `serve` at ``weekday`` ``time`` in the site's ``timezone`` over the
    ``period_days`` before, and on demand (`POST /api/v1/findings/runs`). Every run is stored."""

    enabled: bool = Field(True, description="Run the weekly analysis in `serve`.")
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = Field("mon", description="Day of the run.")
    time: str = Field("07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Local time of the run (HH:MM).")
    period_days: int = Field(7, ge=1, le=366, description="Days analysed, ending at the run's scheduled time.")
    level: Literal["cell", "community", "street", "district"] = Field(
        "community", description="Grid level the findings name areas at."
    )
    catch_up_h: float = Field(
        24, ge=0, le=168, description="A run missed while central was down is made up if it is at most this old."
    )
    tick_s: float = Field(60, ge=1, le=3600, description="Seconds between checks for a due run.")
    keep: int = Field(104, ge=1, le=10_000, description="Stored runs kept (older ones are deleted): two years.")
