"""Command center: the grid hierarchy, escalation (three-level linkage), the category catalogue, evaluation tables
(JSON, CSV, XLSX) and automatic findings (JSON, HTML). See docs/api.md § Command center."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ConfigDict, Field

from central.api.analytics import _period
from central.api.deps import iso, parse_when
from central.api.errors import ApiError, error_responses
from central.api.inputs import CaseId, SafeBody
from central.auth import CurrentPrincipal, DbSession, Principal, require, require_any
from central.command_config import ESCALATION_LEVELS, LEVELS
from central.db import Case
from central.grid import GridIndex, load_grid

router = APIRouter(tags=["command center"])

UnitCode = Annotated[str, Path(min_length=1, max_length=64, description="A grid unit code.")]
GridUnitQuery = Annotated[str | None, Query(max_length=64, description="Only cases in this grid unit (any level).")]


def grid_of(request: Request, session: Any) -> GridIndex:
    return load_grid(session, request.app.state.config)


def cells_for(grid: GridIndex, grid_unit: str | None) -> list[str] | None:
    """The cells of ``grid_unit`` (None: no filter); 422 naming the parameter for an unknown unit."""
    if grid_unit is None or grid_unit == "":
        return None
    if grid.get(grid_unit) is None:
        raise ApiError(422, f"query.grid_unit: unknown grid unit {grid_unit[:64]!r}", "validation_error")
    return grid.cells_under(grid_unit)


# --------------------------------------------------------------------------- grid


@router.get("/grid", summary="The grid hierarchy as a tree (district → street → community → cell)")
def grid_tree(request: Request, session: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    g = grid_of(request, session)
    counts = {lvl: len(g.of_level(lvl)) for lvl in LEVELS}
    return {"levels": list(LEVELS), "counts": counts, "districts": g.tree(), "problems": g.problems()}


@router.get("/grid/units", summary="Grid units of one level (or all), flat")
def grid_units(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    level: Literal["district", "street", "community", "cell"] | None = None,
    parent: Annotated[str | None, Query(max_length=64, description="Only the children of this unit.")] = None,
) -> dict[str, Any]:
    g = grid_of(request, session)
    units = [u for lvl in ([level] if level else LEVELS) for u in g.of_level(lvl)]
    if parent:
        units = [u for u in units if u.parent == parent]
    return {"items": [u.as_dict() for u in units], "total": len(units)}


@router.get("/grid/units/{code}", summary="One grid unit: ancestors, children, cells and its boundary",
            responses=error_responses(404))
def grid_unit(request: Request, code: UnitCode, session: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    g = grid_of(request, session)
    u = g.get(code)
    if u is None:
        raise ApiError(404, f"grid unit {code[:64]!r} not found", "not_found")
    chain = []
    cur = g.get(u.parent)
    while cur is not None:
        chain.append(cur.as_dict())
        cur = g.get(cur.parent)
    return {**u.as_dict(boundary=True), "ancestors": list(reversed(chain)), "children_codes": u.children,
            "cells": len(g.cells_under(code))}


@router.get("/grid/geojson", summary="Boundaries of one level as a GeoJSON FeatureCollection (for the map)")
def grid_geojson(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    level: Literal["district", "street", "community", "cell"] = "cell",
) -> dict[str, Any]:
    return grid_of(request, session).geojson(level)


@router.get("/grid/locate", summary="The grid cell containing a point (cells with boundaries)")
def grid_locate(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    lat: Annotated[float, Query(ge=-90, le=90)], lon: Annotated[float, Query(ge=-180, le=180)],
) -> dict[str, Any]:
    g = grid_of(request, session)
    cell = g.locate(lon, lat)
    return {"cell": cell, "ancestors": g.ancestors(cell) if cell else None}


# --------------------------------------------------------------------------- escalation


class EscalateIn(SafeBody):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000, description="Why the level cannot resolve the case.")


def _case(session: Any, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise ApiError(404, f"case {case_id} not found", "case_not_found")
    return case


@router.get("/cases/{case_id}/escalation", summary="A case's level, its level deadline and its escalations",
            responses=error_responses(404))
def case_escalation(request: Request, case_id: CaseId, session: DbSession,
                    principal: CurrentPrincipal) -> dict[str, Any]:
    from central.escalation import level_view

    case = _case(session, case_id)
    g = grid_of(request, session)
    anc = g.ancestors(case.grid_cell)
    return {"case_id": case.id, "grid_cell": case.grid_cell, "grid": anc,
            "grid_names": {lvl: (g.get(c).name if g.get(c) else None) for lvl, c in anc.items()},
            **level_view(session, case)}


@router.post("/cases/{case_id}/escalate", summary="Escalate a case its level cannot resolve (up one level)",
             responses=error_responses(404, 409))
def case_escalate(
    request: Request, case_id: CaseId, body: EscalateIn, session: DbSession,
    principal: Annotated[Principal, Depends(require_any("dispatcher", "handler"))],
) -> dict[str, Any]:
    from central.escalation import EscalationRefused, escalate, escalation_json, level_view, record_escalation
    from central.workflow import CaseService

    st = request.app.state
    svc = CaseService(session, st.config, st.clock, st.store, st.bus)
    svc._lock_for_write()
    case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
    if case is None:
        session.rollback()
        raise ApiError(404, f"case {case_id} not found", "case_not_found")
    try:
        row = escalate(session, case, reason="beyond_powers", actor=principal.actor, now=st.clock.now(),
                       config=st.config, sla=svc.sla, grid=grid_of(request, session), note=body.note.strip())
        session.flush()
        info = escalation_json(row)
        record_escalation(session, svc, case, info)
        session.commit()
    except EscalationRefused as e:
        session.rollback()
        raise ApiError(409, str(e), "escalation_refused") from None
    st.bus.poke()
    return {"escalation": info, "case": svc.summary(case), **{k: v for k, v in level_view(session, case).items()
                                                              if k != "escalations"}}


@router.post("/escalation/run", summary="Admin: run one escalation sweep now")
def escalation_run(request: Request, principal: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    from central.escalation import escalation_tick

    st = request.app.state
    return escalation_tick(st.session_factory, st.config, st.clock, st.bus).as_dict()


@router.get("/kpis/levels", summary="Cases resolved at each level (cell, community, street, district) per period")
def kpis_levels(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    since: str | None = None, until: str | None = None,
    bucket: Literal["day", "week", "month"] | None = None, grid_unit: GridUnitQuery = None,
) -> dict[str, Any]:
    from central.escalation import resolved_by_level

    start, end = _period(request, since, until)
    st = request.app.state
    end = min(end, st.clock.now()) if end > st.clock.now() > start else end
    cells = cells_for(grid_of(request, session), grid_unit)
    rows = resolved_by_level(session, start, end, cells=cells, bucket=bucket, tz=st.config.tz)
    return {"since": iso(start), "until": iso(end), "bucket": bucket, "grid_unit": grid_unit,
            "levels": list(ESCALATION_LEVELS), "rows": rows}


# --------------------------------------------------------------------------- catalogue


@router.get("/catalogue", summary="The category standard: classes, codes, names, disposal standards, limits")
def catalogue(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    class_code: Annotated[str | None, Query(alias="class", max_length=16)] = None,
) -> dict[str, Any]:
    from central.catalogue import load_catalogue

    cat = load_catalogue(session, request.app.state.config)
    items = [e for e in cat.as_list() if class_code is None or e["class"] == class_code]
    return {"items": items, "total": len(items), "incident_types": cat.by_type}


@router.get("/catalogue/{code}", summary="One catalogue entry", responses=error_responses(404))
def catalogue_entry(request: Request, session: DbSession, principal: CurrentPrincipal,
                    code: Annotated[str, Path(min_length=1, max_length=48)]) -> dict[str, Any]:
    from central.catalogue import entry_json, load_catalogue

    cat = load_catalogue(session, request.app.state.config)
    e = cat.entries.get(code)
    if e is None:
        raise ApiError(404, f"catalogue entry {code[:48]!r} not found", "not_found")
    return entry_json(e, cat.sources.get(code, "config"))


# --------------------------------------------------------------------------- evaluation & findings


EvalBy = Literal["person", "squad", "cell", "community", "street", "district", "level", "category", "class"]


def _stamp(start: datetime, end: datetime, tz: Any) -> str:
    return f"{start.astimezone(tz):%Y%m%d}-{end.astimezone(tz):%Y%m%d}"


@router.get("/evaluation", summary="Ranked evaluation of persons, squads, grid units, levels or categories",
            response_model=None,
            responses={200: {"content": {"application/json": {}, "text/csv": {},
                                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
                             "description": "Rows (JSON), or the same table as CSV / XLSX"}})
def evaluation(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    by: EvalBy = "squad",
    since: Annotated[str | None, Query(description="ISO 8601 or relative (30d); default 7 days before until")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or relative; default now")] = None,
    grid_unit: GridUnitQuery = None,
    trend: Annotated[bool, Query(description="Add the previous period's figures (same length).")] = True,
    format: Literal["json", "csv", "xlsx"] = "json",  # noqa: A002 - the query parameter's name
) -> dict[str, Any] | Response:
    from central.catalogue import load_catalogue
    from central.evaluation import COLUMNS, evaluate, to_csv, to_xlsx

    start, end = _period(request, since, until)
    st = request.app.state
    g = grid_of(request, session)
    cells_for(g, grid_unit)
    rows = evaluate(session, start, end, by, config=st.config, clock=st.clock, grid=g,
                    catalogue=load_catalogue(session, st.config), grid_unit=grid_unit or None, trend=trend)
    name = f"gridwatch-evaluation-{by}-{_stamp(start, end, st.config.tz)}"
    if format == "csv":
        return Response(to_csv(rows, by), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if format == "xlsx":
        return Response(to_xlsx(rows, by, since=start, until=end, tz=st.config.tz),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return {"since": iso(start), "until": iso(end), "by": by, "grid_unit": grid_unit, "columns": list(COLUMNS),
            "rows": rows}


@router.get("/findings", summary="Automatic findings: hotspots, categories that close worst, escalation-heavy "
            "areas, sudden rises — sentences with the figures and tests", response_model=None,
            responses={200: {"content": {"application/json": {}, "text/html": {}},
                             "description": "The report (JSON), or as a self-contained HTML page"}})
def findings(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    since: str | None = None, until: str | None = None,
    level: Literal["cell", "community", "street", "district"] = "community",
    format: Literal["json", "html"] = "json",  # noqa: A002 - the query parameter's name
    lang: Literal["en", "zh-CN"] = "en",
) -> dict[str, Any] | HTMLResponse:
    from central import findings as fnd

    start, end = _period(request, since, until)
    st = request.app.state
    report = fnd.findings(session, start, end, config=st.config, grid=grid_of(request, session), clock=st.clock,
                          level=level)
    if format == "html":
        title = "GridWatch 自动发现" if lang == "zh-CN" else "GridWatch findings"
        name = f"gridwatch-findings-{_stamp(start, end, st.config.tz)}.html"
        return HTMLResponse(fnd.to_html(report, lang=lang, title=title),
                            headers={"Content-Disposition": f'inline; filename="{name}"'})
    return report


@router.get("/findings/runs", summary="Stored findings runs (weekly schedule and on demand), newest first")
def findings_runs(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from central.command_models import FindingsRun
    from central.findings_runs import next_slot, run_json

    st = request.app.state
    sch = st.config.findings
    runs = session.scalars(select(FindingsRun).order_by(FindingsRun.id.desc()).limit(limit)).all()
    nxt = next_slot(sch, st.clock.now(), st.config.tz)
    return {"items": [run_json(r) for r in runs], "total": session.scalar(select(func.count(FindingsRun.id))),
            "schedule": {**sch.model_dump(), "timezone": st.config.timezone,
                         "next_run": nxt.astimezone(st.config.tz).isoformat() if sch.enabled else None}}


@router.post("/findings/runs", status_code=201, summary="Run the findings analysis now and store the run",
             responses=error_responses(422))
def findings_run_now(
    request: Request, session: DbSession,
    principal: Annotated[Principal, Depends(require_any("dispatcher", "admin"))],
    since: Annotated[str | None, Query(description="ISO 8601 or relative (28d); default findings.period_days "
                                       "before until")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or relative; default now")] = None,
    level: Literal["cell", "community", "street", "district"] | None = None,
) -> dict[str, Any]:
    from central.findings_runs import run_findings, run_json

    st = request.app.state
    sch = st.config.findings
    end = parse_when("until", until, request) or st.clock.now()
    start = parse_when("since", since, request) or end - timedelta(days=sch.period_days)
    start, end = _period(request, iso(start), iso(end))
    run = run_findings(session, st.config, st.clock, since=start, until=end, level=level or sch.level,
                       trigger="manual", actor=principal.actor)
    return run_json(run, report=True)


@router.get("/findings/runs/{run_id}", summary="One stored findings run: JSON, or the report as self-contained HTML",
            response_model=None, responses={**error_responses(404),
                                            200: {"content": {"application/json": {}, "text/html": {}},
                                                  "description": "The run with its report, or the HTML report"}})
def findings_run(
    request: Request, session: DbSession, principal: CurrentPrincipal,
    run_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    format: Literal["json", "html"] = "json",  # noqa: A002 - the query parameter's name
    lang: Literal["en", "zh-CN"] = "en",
) -> dict[str, Any] | HTMLResponse:
    from central import findings as fnd
    from central.command_models import FindingsRun
    from central.findings_runs import run_json

    run = session.get(FindingsRun, run_id)
    if run is None:
        raise ApiError(404, f"findings run {run_id} not found", "not_found")
    if format == "html":
        tz = request.app.state.config.tz
        title = "GridWatch 自动发现" if lang == "zh-CN" else "GridWatch findings"
        title += f" #{run.id}"
        name = f"gridwatch-findings-{run.id}-{_stamp(run.since, run.until, tz)}.html"
        return HTMLResponse(fnd.to_html(run.report_json, lang=lang, title=title),
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return run_json(run, report=True)


# --------------------------------------------------------------------------- map


@router.get("/map/config", summary="The map page's settings: the internal tile server, if the site has one")
def map_config(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    m = request.app.state.config.map
    return {"tile_url": m.tile_url, "attribution": m.attribution, "bounds": list(m.bounds) if m.bounds else None,
            "min_zoom": m.min_zoom, "max_zoom": m.max_zoom}


# --------------------------------------------------------------------------- field reports


@router.get("/reports/categories", summary="What a field report may be filed under (catalogue entries, categories)")
def report_categories(request: Request, session: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    from central.reports import report_categories as options

    return {"items": options(session, request.app.state.config)}


@router.post("/reports", status_code=201, summary="A field report from an inspector's phone becomes a case",
             description="Multipart form: `category` (a catalogue entry or category code), `note`, the position "
             "(`lat`, `lon`: browser geolocation) and/or `grid_cell`, `address`, and an optional `photo` (JPEG / "
             "PNG, decoded and re-encoded without metadata). The case then follows the same loop as a camera case.",
             responses=error_responses(415))
def post_report(
    request: Request, session: DbSession,
    principal: Annotated[Principal, Depends(require_any("dispatcher", "handler"))],
    category: Annotated[str, Form(min_length=1, max_length=48)],
    note: Annotated[str | None, Form(max_length=4000)] = None,
    lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Form(ge=-180, le=180)] = None,
    grid_cell: Annotated[str | None, Form(max_length=64)] = None,
    address: Annotated[str | None, Form(max_length=512)] = None,
    photo: Annotated[UploadFile | None, File(description="JPEG or PNG photo of the problem")] = None,
) -> dict[str, Any]:
    from central.images import ImageRefused, sanitize_upload
    from central.reports import Report, ReportError, create_report
    from central.workflow import CaseService

    st = request.app.state
    data = None
    if photo is not None and photo.filename is not None:
        limit = st.config.max_upload_bytes
        raw = photo.file.read(limit + 1)
        photo.file.close()
        if len(raw) > limit:
            raise ApiError(413, f"photo exceeds the upload limit of {limit} bytes", "payload_too_large")
        if raw:
            try:
                data = sanitize_upload(raw, st.store.max_bytes).data
            except ImageRefused as e:
                raise ApiError(e.status, e.message.replace("file:", "photo:", 1), e.code) from None
    svc = CaseService(session, st.config, st.clock, st.store, st.bus)
    svc._lock_for_write()
    try:
        case, _events = create_report(session, st.config, st.clock, st.store, Report(
            category=category.strip(), note=(note or "").strip() or None, lat=lat, lon=lon,
            grid_cell=(grid_cell or "").strip() or None, address=(address or "").strip() or None, photo=data,
        ), principal.actor)
    except ReportError as e:
        session.rollback()
        raise ApiError(422, f"form.{e}", "validation_error") from None
    st.bus.poke()  # its case.created was committed to the outbox with the case
    return svc.summary(case)


# --------------------------------------------------------------------------- parking supply (central/api/parking.py)

from central.api.parking import router as _parking_router  # noqa: E402

router.include_router(_parking_router)
