"""KPIs and hotspots over a period (the same figures as ``gridwatch-central kpis``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from central.api.deps import iso, jsonable, parse_when
from central.api.errors import ApiError
from central.auth import CurrentPrincipal, DbSession

router = APIRouter(tags=["analytics"])

DEFAULT_PERIOD = timedelta(days=7)
MAX_PERIOD = timedelta(days=366)


def _period(request: Request, since: str | None, until: str | None) -> tuple[Any, Any]:
    now = request.app.state.clock.now()
    end = parse_when("until", until, request) or now
    start = parse_when("since", since, request) or end - DEFAULT_PERIOD
    if end <= start:
        raise ApiError(422, "query.until: must be after since", "validation_error")
    if end - start > MAX_PERIOD:
        raise ApiError(422, f"query.since: the period may be at most {MAX_PERIOD.days} days", "validation_error")
    return start, end


@router.get("/kpis", summary="KPIs for a period, overall or per grid cell, squad, camera or category")
def kpis(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    since: Annotated[str | None, Query(description="ISO 8601 or relative (7d); default 7 days before until")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or relative; default now")] = None,
    group_by: Literal["grid_cell", "squad", "camera", "category", "community", "street", "district"] | None = None,
    grid_unit: Annotated[str | None, Query(max_length=64, description="Only this grid unit (any level).")] = None,
) -> dict[str, Any]:
    from central import analytics
    from central.api.command import cells_for, grid_of

    start, end = _period(request, since, until)
    st = request.app.state
    grid = grid_of(request, session)
    cells = cells_for(grid, grid_unit)
    try:
        rows = analytics.kpis(session, start, end, group_by, st.clock, config=st.config, grid=grid, cells=cells)
    except ValueError as e:
        raise ApiError(422, f"query.group_by: {e}", "validation_error") from None
    return {"since": iso(start), "until": iso(end), "group_by": group_by, "grid_unit": grid_unit,
            "rows": [jsonable(r) for r in rows]}


@router.get("/hotspots", summary="Counts by zone × hour-of-day and × weekday, top locations, change vs previous")
def hotspots(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    from central import analytics

    start, end = _period(request, since, until)
    out = analytics.hotspots(session, start, end, request.app.state.config.timezone)
    return {"since": iso(start), "until": iso(end), **out}
