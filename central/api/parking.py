"""Parking supply and demand per area and hour of day (central/parking.py). See docs/api.md § Command center."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from central.api.analytics import _period
from central.api.deps import iso
from central.auth import CurrentPrincipal, DbSession

router = APIRouter(tags=["command center"])


class SupplyRow(BaseModel):
    area: str = Field(description="Grid unit code at `level`, or `<camera>/<zone>` for level zone.")
    area_name: str | None = Field(description="The grid unit's name (None for a zone or a cell not in the grid).")
    hour: int = Field(ge=0, le=23, description="Local hour of day (central's time zone).")
    supply: float = Field(description="Legal spaces: sum of the area's parking zones' mean capacity in that hour.")
    occupied: float = Field(description="Mean occupied spaces in that hour.")
    occupancy_rate: float | None = Field(description="occupied / supply (None without supply).")
    illegal_parking: float = Field(description="Mean illegally parked vehicles in the area's cells in that hour.")
    illegal_parking_cases: int = Field(description="Illegal-parking cases reported in that hour in the period.")
    demand: float = Field(description="occupied + illegal_parking.")
    shortfall: float = Field(description="max(0, demand - supply).")
    spare: float = Field(description="max(0, supply - demand).")
    zones: int = Field(description="Parking zones that reported in that hour.")
    figures: int = Field(description="Occupancy figures behind the hour's means.")


class SupplyReport(BaseModel):
    since: str
    until: str
    level: str
    grid_unit: str | None
    days: float = Field(description="Length of the period up to now, in days (the divisor of the per-day means).")
    rows: list[SupplyRow] = Field(description="24 rows per area with parking zones, by area then hour.")
    areas: dict[str, list[str]] = Field(description="Area → the grid cells whose illegal parking counts as nearby.")


@router.get(
    "/parking/supply",
    response_model=SupplyReport,
    summary="Parking supply (legal spaces), demand (occupied + illegally parked) and shortfall per area and "
    "hour of day",
)
def parking_supply(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    since: Annotated[str | None, Query(description="ISO 8601 or relative (30d); default 7 days before until")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or relative; default now")] = None,
    level: Literal["cell", "community", "street", "district", "zone"] = "community",
    grid_unit: Annotated[str | None, Query(max_length=64, description="Only parking zones in this grid unit.")] = None,
) -> SupplyReport:
    from central.api.command import cells_for, grid_of
    from central.parking import supply_demand

    start, end = _period(request, since, until)
    st = request.app.state
    grid = grid_of(request, session)
    cells = cells_for(grid, grid_unit)
    horizon = max(start, min(end, st.clock.now()))  # nothing after now has happened yet; a future period is empty
    out = supply_demand(session, start, horizon, config=st.config, grid=grid, level=level, cells=cells)
    rows = []
    for r in out["rows"]:
        unit = grid.get(r["area"]) if level != "zone" else None
        rows.append(SupplyRow(area_name=unit.name if unit else None, **r))
    return SupplyReport(
        since=iso(start),
        until=iso(end),
        level=level,
        grid_unit=grid_unit,
        days=out["days"],
        rows=rows,
        areas=out["areas"],
    )
