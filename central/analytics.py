"""KPIs and hotspots for a period [since, until). Definitions (also in docs/central.md):

- horizon = min(until, now): nothing after "now" has happened yet.
- incidents: incidents whose ``started_at`` is in the period (silenced ones included).
- cases_filed: cases whose ``filed_at`` is in the period.
- due: cases (not rejected, not duplicate) whose overall deadline ``due_at`` fell in [since, horizon) OR that were
  closed in [since, horizon). A case closed before its deadline therefore counts in the period it was closed.
- closed: due cases whose ``closed_at`` is in [since, horizon).
- on_time: closed cases with closed_at <= due_at.
- closure_rate = closed / due; on_time_rate = on_time / due; rework_rate = failed verifications (sum of
  rework_count) / due — it can exceed 1 when cases fail verification repeatedly.
- avg_handling_h: mean of closed_at − reported_at over closed cases, in calendar hours.
- avg_overtime_multiple: mean over due cases of max(0, (H − L) / L), where L is the category's total limit (sum of
  stage limits) and H the handling time reported_at → closed_at (or → horizon when not closed by then), both in the
  category's unit (working hours on the configured calendar, or calendar hours). 0 = on time; 1.0 = took twice the
  limit.
Rates are None when due = 0; averages are None when they have no cases.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from central.clock import Clock, SystemClock
from central.config import CentralConfig
from central.db import Case, Incident
from central.sla import Sla

GROUPS = {"grid_cell": "grid_cell", "squad": "squad", "camera": "camera_id", "category": "category"}
INCIDENT_GROUPS = {"grid_cell": Incident.grid_cell, "camera": Incident.camera_id, "category": Incident.type}
NOT_CASES = ("rejected", "duplicate")
LEVEL_GROUPS = ("community", "street", "district")  # rolled up from grid cells through a central.grid.GridIndex


def _rate(n: float, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def kpis(
    session: Session,
    since: datetime,
    until: datetime,
    group_by: str | None = None,
    clock: Clock | None = None,
    config: CentralConfig | None = None,
    *,
    grid: Any = None,
    cells: list[str] | None = None,
) -> list[dict[str, Any]]:
    """KPI rows: one row ("group": "all") or one per group value (None = not set), sorted by due desc.

    ``group_by`` community / street / district rolls grid cells up through ``grid`` (a ``central.grid.GridIndex``);
    ``cells`` keeps only incidents and cases in those grid cells (``GridIndex.cells_under(unit)``)."""
    if group_by is not None and group_by not in GROUPS and group_by not in LEVEL_GROUPS:
        raise ValueError(f"group_by must be one of {', '.join((*GROUPS, *LEVEL_GROUPS))}, not {group_by!r}")
    if group_by in LEVEL_GROUPS and grid is None:
        raise ValueError(f"group_by={group_by} needs the grid hierarchy")
    config = config or CentralConfig()
    sla = Sla(config)
    now = (clock or SystemClock()).now()
    horizon = min(until, now)
    level = group_by if group_by in LEVEL_GROUPS else None
    attr = "grid_cell" if level else GROUPS.get(group_by or "")

    def up(value: Any) -> Any:
        return grid.unit_at(value, level) if level else value

    def key_of(obj: Any) -> Any:
        return "all" if attr is None else up(getattr(obj, attr))

    def in_cells(stmt: Any, col: Any) -> Any:
        return stmt if cells is None else stmt.where(col.in_(cells) if cells else false())

    rows: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "incidents": 0, "cases_filed": 0, "due": 0, "closed": 0, "on_time": 0, "reworks": 0,
        "_handling": [], "_overtime": [],
    })

    # incidents (grouped by the incident's own fields; by the case's squad for group_by=squad)
    inc_stmt = select(Incident.started_at).where(Incident.started_at >= since, Incident.started_at < until)
    if group_by == "squad":
        inc_stmt = select(Case.squad).select_from(Incident).outerjoin(Case, Case.id == Incident.case_id).where(
            Incident.started_at >= since, Incident.started_at < until)
    elif group_by is not None:
        inc_stmt = select(INCIDENT_GROUPS[attr if level else group_by]).where(
            Incident.started_at >= since, Incident.started_at < until)
    for (value,) in session.execute(in_cells(inc_stmt, Incident.grid_cell)):
        rows["all" if group_by is None else up(value)]["incidents"] += 1

    # columns, not ORM objects: a year of cases is tens of thousands of rows
    cols = (Case.id, Case.squad, Case.grid_cell, Case.camera_id, Case.category, Case.rework_count, Case.closed_at,
            Case.reported_at, Case.due_at)
    filed_stmt = in_cells(select(*cols).where(Case.filed_at >= since, Case.filed_at < until), Case.grid_cell)
    for case in session.execute(filed_stmt):
        rows[key_of(case)]["cases_filed"] += 1

    cat_limits = {c.code: (c, sla.total_limit(c.code)) for c in config.categories}
    due_stmt = select(*cols).where(
        Case.state.not_in(NOT_CASES),
        or_(
            and_(Case.due_at >= since, Case.due_at < horizon),
            and_(Case.closed_at >= since, Case.closed_at < horizon),
        ),
    )
    for case in session.execute(in_cells(due_stmt, Case.grid_cell)):
        r = rows[key_of(case)]
        r["due"] += 1
        r["reworks"] += case.rework_count
        closed_in = case.closed_at is not None and since <= case.closed_at < horizon
        if closed_in:
            r["closed"] += 1
            r["_handling"].append((case.closed_at - case.reported_at).total_seconds() / 3600.0)
            if case.due_at is None or case.closed_at <= case.due_at:
                r["on_time"] += 1
        cat, limit = cat_limits.get(case.category, (None, None))
        if cat is not None and limit:
            end = case.closed_at if closed_in else horizon
            handling = sla.elapsed(case.reported_at, end, cat.unit)
            r["_overtime"].append(max(0.0, (handling - limit) / limit))

    out: list[dict[str, Any]] = []
    for group, r in rows.items():
        due = r["due"]
        out.append({
            "group_by": group_by, "group": group, "incidents": r["incidents"], "cases_filed": r["cases_filed"],
            "due": due, "closed": r["closed"], "on_time": r["on_time"], "failed_verifications": r["reworks"],
            "closure_rate": _rate(r["closed"], due), "on_time_rate": _rate(r["on_time"], due),
            "rework_rate": _rate(r["reworks"], due), "avg_handling_h": _mean(r["_handling"]),
            "avg_overtime_multiple": _mean(r["_overtime"]),
        })
    if group_by is None and not out:
        out.append({
            "group_by": None, "group": "all", "incidents": 0, "cases_filed": 0, "due": 0, "closed": 0, "on_time": 0,
            "failed_verifications": 0, "closure_rate": None, "on_time_rate": None, "rework_rate": None,
            "avg_handling_h": None, "avg_overtime_multiple": None,
        })
    out.sort(key=lambda x: (-x["due"], -x["incidents"], str(x["group"])))
    return out


def _position_cell(x: float | None, y: float | None, grid: float = 0.05) -> tuple[int, int] | None:
    if x is None or y is None:
        return None
    return round(x / grid), round(y / grid)


def hotspots(
    session: Session,
    since: datetime,
    until: datetime,
    tz: str | ZoneInfo = "Asia/Shanghai",
    *,
    top: int = 20,
    include_silenced: bool = False,
) -> dict[str, Any]:
    """Where and when incidents happen: zone × local hour, zone × weekday (0 = Monday), top locations (camera, zone,
    type and the subject position on a 0.05 grid), and the change per zone against the previous period of equal
    length. Silenced incidents (permitted markets, roadworks) are left out unless asked for."""
    zone_tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    span = until - since
    prev_since = since - span

    def fetch(a: datetime, b: datetime) -> list[Any]:
        stmt = select(
            Incident.camera_id, Incident.zone, Incident.type, Incident.grid_cell, Incident.started_at,
            Incident.position_x, Incident.position_y,
        ).where(Incident.started_at >= a, Incident.started_at < b)
        if not include_silenced:
            stmt = stmt.where(Incident.silenced.is_(False))
        return list(session.execute(stmt))

    current = fetch(since, until)
    previous = fetch(prev_since, since)
    by_hour: Counter[tuple[str, str, str, int]] = Counter()
    by_weekday: Counter[tuple[str, str, str, int]] = Counter()
    locations: Counter[tuple[str, str, str, tuple[int, int] | None]] = Counter()
    loc_info: dict[tuple[str, str, str, tuple[int, int] | None], dict[str, Any]] = {}
    zones_now: Counter[tuple[str, str, str]] = Counter()
    for cam, zone, typ, grid_cell, started, px, py in current:
        local = started.astimezone(zone_tz)
        by_hour[(cam, zone, typ, local.hour)] += 1
        by_weekday[(cam, zone, typ, local.weekday())] += 1
        key = (cam, zone, typ, _position_cell(px, py))
        locations[key] += 1
        loc_info.setdefault(key, {"grid_cell": grid_cell, "position": [px, py] if px is not None else None})
        zones_now[(cam, zone, typ)] += 1
    zones_before: Counter[tuple[str, str, str]] = Counter((cam, zone, typ) for cam, zone, typ, *_ in previous)

    def rows(counter: Counter[Any], label: str) -> list[dict[str, Any]]:
        return [
            {"camera_id": k[0], "zone": k[1], "type": k[2], label: k[3], "count": n}
            for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1], kv[0][2], kv[0][3]))
        ]

    change = []
    for k in set(zones_now) | set(zones_before):
        now_n, before_n = zones_now.get(k, 0), zones_before.get(k, 0)
        pct = round(100.0 * (now_n - before_n) / before_n, 1) if before_n else None
        change.append({
            "camera_id": k[0], "zone": k[1], "type": k[2], "count": now_n, "previous": before_n,
            "delta": now_n - before_n, "change_pct": pct,
        })
    change.sort(key=lambda c: (-abs(c["delta"]), c["camera_id"], c["zone"], c["type"]))
    top_locations = [
        {"camera_id": k[0], "zone": k[1], "type": k[2], "count": n, **loc_info[k]}
        for k, n in sorted(locations.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1], kv[0][2]))[:top]
    ]
    return {
        "timezone": str(zone_tz), "total": len(current), "previous_total": len(previous),
        "previous_since": prev_since, "by_zone_hour": rows(by_hour, "hour"),
        "by_zone_weekday": rows(by_weekday, "weekday"), "top_locations": top_locations,
        "change_vs_previous": change,
    }
