"""Evaluation of every person, squad, grid unit, level and category for a period [since, until): ranked tables
with the previous period's figures beside them (the trend), exportable as CSV and XLSX.

The population of a row is its **due cases**, exactly as in the KPIs (central.analytics): cases other than rejected
and duplicate ones whose overall deadline fell in [since, horizon) or that were closed in [since, horizon), with
horizon = min(until, now). Per row:

- ``cases`` — due cases; ``handled`` — of those, cases that reached ``handled`` before the horizon.
- ``closed`` / ``closure_rate`` = closed in [since, horizon) / cases; ``on_time`` / ``on_time_rate`` = closed by
  ``due_at`` / cases.
- ``avg_overtime_multiple`` — mean over the cases of max(0, (H − L) / L) (L the category's total limit, H the
  handling time to closing or to the horizon, in the category's unit), as in the KPIs.
- ``failed_verifications`` (sum of ``rework_count``) and ``rework_rate`` = failed verifications / cases.
- ``escalations`` — escalation steps of these cases before the horizon; ``escalated_cases`` — cases with any.
- ``median_handling_h`` / ``avg_handling_h`` — reported → closed in calendar hours over the closed cases.

Group keys (``by``): ``person`` (the handler who did the work: the token name of the last ``feedback`` before the
horizon; for a case not handled yet, its ``assignee``), ``squad``, ``cell``, ``community``, ``street``,
``district`` (through the grid hierarchy), ``level`` (the level the case is at — for a closed case, the level
that resolved it), ``category`` and ``class`` (the category standard's class, through the catalogue mapping).

Ranking: on-time rate (high first), then closure rate, then average overtime multiple (low first), then cases
(more first), then the key. ``rank`` is 1-based.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Float, and_, case, cast, false, func, or_, select
from sqlalchemy.orm import Session

from central.catalogue import Catalogue
from central.clock import Clock, SystemClock
from central.command_config import ESCALATION_LEVELS
from central.command_models import CaseEscalation
from central.config import CentralConfig
from central.db import Case, CaseAudit
from central.grid import GridIndex
from central.sla import Sla

BY = ("person", "squad", "cell", "community", "street", "district", "level", "category", "class")
NOT_CASES = ("rejected", "duplicate")
COLUMNS = ("rank", "key", "name", "name_zh", "cases", "handled", "closed", "closure_rate", "on_time", "on_time_rate",
           "avg_overtime_multiple", "failed_verifications", "rework_rate", "escalations", "escalated_cases",
           "median_handling_h", "avg_handling_h", "prev_cases", "prev_on_time_rate", "on_time_rate_change")
PERCENT_COLUMNS = ("closure_rate", "on_time_rate", "rework_rate", "prev_on_time_rate", "on_time_rate_change")


def due_condition(since: datetime, horizon: datetime) -> Any:
    return and_(Case.state.not_in(NOT_CASES), or_(
        and_(Case.due_at >= since, Case.due_at < horizon),
        and_(Case.closed_at >= since, Case.closed_at < horizon),
    ))


def _actor_name(actor: str | None) -> str | None:
    if not actor:
        return None
    return actor.rsplit("#", 1)[0] if "#" in actor else actor


def epoch(col: Any, dialect: str) -> Any:
    """Seconds since 1970 (UTC) of a stored naive-UTC timestamp, computed by the database (no datetime objects)."""
    if dialect == "sqlite":
        return (func.julianday(col) - 2440587.5) * 86400.0
    # double precision, not PostgreSQL's numeric: psycopg would make a Decimal of every value (slow for 40,000 rows)
    return cast(func.extract("epoch", col), Float)


def due_cases(session: Session, since: datetime, horizon: datetime, cells: list[str] | None = None) -> list[Any]:
    """The due cases as plain tuples: the period tests are done in SQL on the stored timestamps (exact); only
    durations come back, as epoch seconds, for the arithmetic."""
    cond = due_condition(since, horizon)
    if cells is not None:
        cond = and_(cond, Case.grid_cell.in_(cells)) if cells else false()
    dialect = session.get_bind().dialect.name
    closed_in = and_(Case.closed_at.is_not(None), Case.closed_at >= since, Case.closed_at < horizon)
    return list(session.execute(select(
        Case.id, Case.category, Case.squad, Case.assignee, Case.grid_cell, Case.rework_count,
        case((closed_in, 1), else_=0),
        case((and_(closed_in, or_(Case.due_at.is_(None), Case.closed_at <= Case.due_at)), 1), else_=0),
        case((and_(Case.handled_at.is_not(None), Case.handled_at < horizon), 1), else_=0),
        epoch(Case.reported_at, dialect), epoch(Case.closed_at, dialect),
    ).where(cond)).tuples())


def working_seconds(sla: Sla, lo: float, hi: float) -> tuple[Any, Any]:
    """Breakpoints (epoch seconds, cumulative working seconds) of the calendar from ``lo`` to ``hi``: the working
    time between two instants is ``interp(b) - interp(a)`` (numpy, for tens of thousands of cases at once)."""
    cal = sla.calendar
    day = datetime.fromtimestamp(lo, UTC).astimezone(cal.tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi, UTC).astimezone(cal.tz).date() + timedelta(days=1)
    # the first breakpoint precedes every interval (not ``lo``: when ``lo`` falls inside a working period, the
    # part of that period before ``lo`` would otherwise be spread over the interpolation and counted after it)
    first = datetime(day.year, day.month, day.day, tzinfo=cal.tz).timestamp() - 1.0
    xs, ys, cum = [min(lo, first) - 1.0], [0.0], 0.0
    while day <= last:
        for a, b in cal._day(day):
            ta, tb = a.timestamp(), b.timestamp()
            if ta > xs[-1]:
                xs.append(ta)
                ys.append(cum)
            cum += tb - ta
            xs.append(tb)
            ys.append(cum)
        day += timedelta(days=1)
    xs.append(max(hi, xs[-1]) + 1.0)
    ys.append(cum)
    return np.asarray(xs), np.asarray(ys)


def _compute(
    session: Session, since: datetime, until: datetime, by: str, *, config: CentralConfig, now: datetime,
    grid: GridIndex | None, catalogue: Catalogue | None, cells: list[str] | None,
) -> dict[Any, dict[str, Any]]:
    horizon = min(until, now)
    if horizon <= since:
        return {}
    cases = due_cases(session, since, horizon, cells)
    ids_sub = select(Case.id).where(due_condition(since, horizon))
    esc_count: dict[int, int] = defaultdict(int)
    rank_of: dict[int, int] = {}
    for cid, rank in session.execute(
        select(CaseEscalation.case_id, CaseEscalation.to_rank)
        .where(CaseEscalation.case_id.in_(ids_sub), CaseEscalation.at < horizon)
    ):
        esc_count[cid] += 1
        rank_of[cid] = max(rank_of.get(cid, 0), rank)
    handler: dict[int, str | None] = {}
    if by == "person":
        for cid, actor in session.execute(
            select(CaseAudit.case_id, CaseAudit.actor)
            .where(CaseAudit.case_id.in_(ids_sub), CaseAudit.action == "feedback", CaseAudit.at < horizon)
            .order_by(CaseAudit.at, CaseAudit.id)
        ).tuples():
            handler[cid] = _actor_name(actor)  # the last feedback wins

    def key_of(cid: int, category: str, squad: str | None, assignee: str | None, cell: str | None) -> Any:
        if by == "person":
            return handler.get(cid) or assignee
        if by == "squad":
            return squad
        if by == "category":
            return category
        if by == "class":
            return catalogue.class_of(category) if catalogue else None
        if by == "level":
            return ESCALATION_LEVELS[rank_of.get(cid, 0)]
        if by == "cell":
            return cell
        return grid.unit_at(cell, by) if grid is not None else None

    sla = Sla(config)
    limits = {cat.code: sla.total_limit(cat.code) for cat in config.categories}
    units = {cat.code: cat.unit for cat in config.categories}
    acc: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "cases": 0, "handled": 0, "closed": 0, "on_time": 0, "failed_verifications": 0, "escalations": 0,
        "escalated_cases": 0, "_handling": [], "_overtime": [],
    })
    h_end = horizon.timestamp()
    timed: list[tuple[dict[str, Any], float, float, float, str]] = []  # (row, start, end, limit, unit)
    for cid, category, squad, assignee, cell, rework, closed_in, on_time, handled, rep_s, closed_s in cases:
        r = acc[key_of(cid, category, squad, assignee, cell)]
        r["cases"] += 1
        r["failed_verifications"] += rework or 0
        r["handled"] += handled
        n_esc = esc_count.get(cid, 0)
        r["escalations"] += n_esc
        r["escalated_cases"] += 1 if n_esc else 0
        if closed_in:
            r["closed"] += 1
            r["_handling"].append((float(closed_s) - float(rep_s)) / 3600.0)
            r["on_time"] += on_time
        limit = limits.get(category)
        if limit:
            timed.append((r, float(rep_s), float(closed_s) if closed_in else h_end, limit, units[category]))
    if timed:
        start = np.fromiter((t[1] for t in timed), float, len(timed))
        end = np.fromiter((t[2] for t in timed), float, len(timed))
        limit_a = np.fromiter((t[3] for t in timed), float, len(timed))
        working = np.fromiter((t[4] == "working" for t in timed), bool, len(timed))
        hours = np.maximum(0.0, end - start) / 3600.0
        if working.any():
            xs, ys = working_seconds(sla, float(start[working].min()), float(end[working].max()))
            w = (np.interp(end[working], xs, ys) - np.interp(start[working], xs, ys)) / 3600.0
            hours[working] = np.maximum(0.0, w)
        over = np.maximum(0.0, (hours - limit_a) / limit_a)
        for (r, *_), o in zip(timed, over.tolist(), strict=True):
            r["_overtime"].append(o)
    return acc


def _finish(r: dict[str, Any]) -> dict[str, Any]:
    n = r["cases"]

    def rate(x: float) -> float | None:
        return round(x / n, 4) if n else None

    hand = r["_handling"]
    return {
        "cases": n, "handled": r["handled"], "closed": r["closed"], "closure_rate": rate(r["closed"]),
        "on_time": r["on_time"], "on_time_rate": rate(r["on_time"]),
        "avg_overtime_multiple": round(sum(r["_overtime"]) / len(r["_overtime"]), 4) if r["_overtime"] else None,
        "failed_verifications": r["failed_verifications"], "rework_rate": rate(r["failed_verifications"]),
        "escalations": r["escalations"], "escalated_cases": r["escalated_cases"],
        "median_handling_h": round(statistics.median(hand), 4) if hand else None,
        "avg_handling_h": round(sum(hand) / len(hand), 4) if hand else None,
    }


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    def neg(v: float | None) -> float:
        return -(v if v is not None else -1.0)

    ot = row["avg_overtime_multiple"]
    return (neg(row["on_time_rate"]), neg(row["closure_rate"]), ot if ot is not None else float("inf"),
            -row["cases"], str(row["key"]))


def display_names(by: str, key: Any, *, config: CentralConfig, grid: GridIndex | None) -> tuple[str | None, str | None]:
    """(English name, Chinese name) for a row key, where the configuration or the grid knows them."""
    if key is None:
        return None, None
    if by in ("cell", "community", "street", "district") and grid is not None:
        u = grid.get(key)
        return (u.name, u.name_zh) if u else (None, None)
    if by == "squad":
        sq = next((q for q in config.squads if q.code == key), None)
        return (sq.name, sq.name_zh) if sq else (None, None)
    if by == "category":
        cat = config.category(key)
        return (cat.name, cat.name_zh) if cat else (None, None)
    return None, None


def evaluate(
    session: Session,
    since: datetime,
    until: datetime,
    by: str,
    *,
    config: CentralConfig,
    clock: Clock | None = None,
    grid: GridIndex | None = None,
    catalogue: Catalogue | None = None,
    grid_unit: str | None = None,
    trend: bool = True,
) -> list[dict[str, Any]]:
    """Ranked evaluation rows for ``by`` (see the module doc). ``grid_unit`` limits the cases to one unit's cells."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}, not {by!r}")
    if by in ("community", "street", "district") and grid is None:
        raise ValueError(f"by={by} needs the grid hierarchy")
    now = (clock or SystemClock()).now()
    cells = None
    if grid_unit is not None:
        if grid is None or grid.get(grid_unit) is None:
            raise ValueError(f"unknown grid unit {grid_unit!r}")
        cells = grid.cells_under(grid_unit)
    kw = {"config": config, "now": now, "grid": grid, "catalogue": catalogue, "cells": cells}
    cur = _compute(session, since, until, by, **kw)  # type: ignore[arg-type]
    prev = _compute(session, since - (until - since), since, by, **kw) if trend else {}  # type: ignore[arg-type]
    rows = []
    for key, r in cur.items():
        name, name_zh = display_names(by, key, config=config, grid=grid)
        row = {"key": key, "name": name, "name_zh": name_zh, **_finish(r)}
        p = _finish(prev[key]) if key in prev else None
        row["prev_cases"] = p["cases"] if p else None
        row["prev_on_time_rate"] = p["on_time_rate"] if p else None
        row["on_time_rate_change"] = (round(row["on_time_rate"] - p["on_time_rate"], 4)
                                      if p and p["on_time_rate"] is not None and row["on_time_rate"] is not None
                                      else None)
        rows.append(row)
    rows.sort(key=_sort_key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


# --------------------------------------------------------------------------- export


def to_csv(rows: list[dict[str, Any]], by: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([by if c == "key" else c for c in COLUMNS])
    for r in rows:
        w.writerow(["" if r[c] is None else r[c] for c in COLUMNS])
    return "\ufeff" + buf.getvalue()  # a BOM so spreadsheet programs read the Chinese names as UTF-8


def to_xlsx(rows: list[dict[str, Any]], by: str, *, since: datetime, until: datetime, tz: Any = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = f"by {by}"[:31]
    a, b = (since.astimezone(tz), until.astimezone(tz)) if tz is not None else (since, until)
    ws.append([f"GridWatch evaluation by {by}: {a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M}"])
    ws["A1"].font = Font(bold=True, size=12)
    header = [by if c == "key" else c for c in COLUMNS]
    ws.append(header)
    for cell in ws[2]:
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="1F4E79")
    for r in rows:
        ws.append([r[c] for c in COLUMNS])
    for i, col in enumerate(COLUMNS, 1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(40, len(col) + 2))
        if col in PERCENT_COLUMNS:
            for cell in ws[letter][2:]:
                cell.number_format = "0.0%"
        elif col in ("avg_overtime_multiple", "median_handling_h", "avg_handling_h"):
            for cell in ws[letter][2:]:
                cell.number_format = "0.00"
    ws.freeze_panes = "C3"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
