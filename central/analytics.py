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

import numpy as np
from sqlalchemy import and_, case, false, func, or_, select
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
    ``cells`` keeps only incidents and cases in those grid cells (``GridIndex.cells_under(unit)``).

    Counts are aggregated in SQL (GROUP BY); the due cases come back as plain tuples with epoch seconds and their
    working hours are computed for all at once (``evaluation.working_seconds``): a year of 40,000 cases takes a
    fraction of a second instead of a Python loop over datetimes."""
    from central.evaluation import epoch, working_seconds

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
    dialect = session.get_bind().dialect.name

    def up(value: Any) -> Any:
        return grid.unit_at(value, level) if level else value

    def in_cells(stmt: Any, col: Any) -> Any:
        return stmt if cells is None else stmt.where(col.in_(cells) if cells else false())

    rows: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "incidents": 0, "cases_filed": 0, "due": 0, "closed": 0, "on_time": 0, "reworks": 0,
        "_handling": 0.0, "_overtime": 0.0, "_timed": 0,
    })
    case_col = getattr(Case, attr) if attr else Case.category  # any column when not grouped: the key is "all"

    def grouped(col: Any, stmt: Any) -> Any:
        return stmt.group_by(col) if group_by is not None else stmt

    # incidents (grouped by the incident's own fields; by the case's squad for group_by=squad)
    inc_period = and_(Incident.started_at >= since, Incident.started_at < until)
    if group_by == "squad":
        inc_stmt = (select(Case.squad, func.count()).select_from(Incident)
                    .outerjoin(Case, Case.id == Incident.case_id).where(inc_period).group_by(Case.squad))
    else:
        inc_col = INCIDENT_GROUPS["grid_cell" if level else group_by] if group_by else Incident.type
        inc_stmt = grouped(inc_col, select(func.min(inc_col), func.count()).where(inc_period))
    for value, n in session.execute(in_cells(inc_stmt, Incident.grid_cell)):
        if not n:
            continue  # the one ungrouped row of an empty period
        rows["all" if group_by is None else up(value)]["incidents"] += n

    filed_stmt = select(func.min(case_col), func.count()).where(Case.filed_at >= since, Case.filed_at < until)
    for value, n in session.execute(grouped(case_col, in_cells(filed_stmt, Case.grid_cell))):
        rows["all" if group_by is None else up(value)]["cases_filed"] += n

    # due cases: the period tests in SQL, durations as epoch seconds
    closed_in = and_(Case.closed_at.is_not(None), Case.closed_at >= since, Case.closed_at < horizon)
    due_stmt = select(
        case_col, Case.category, Case.rework_count, case((closed_in, 1), else_=0),
        case((and_(closed_in, or_(Case.due_at.is_(None), Case.closed_at <= Case.due_at)), 1), else_=0),
        epoch(Case.reported_at, dialect), epoch(Case.closed_at, dialect),
    ).where(
        Case.state.not_in(NOT_CASES),
        or_(and_(Case.due_at >= since, Case.due_at < horizon), closed_in),
    )
    due = session.execute(in_cells(due_stmt, Case.grid_cell)).all()
    if due:
        values, categories, rework, closed, on_time, rep_s, closed_s = zip(*due, strict=True)
        key_cache: dict[Any, Any] = {}
        keys = [key_cache[v] if v in key_cache else key_cache.setdefault(v, "all" if group_by is None else up(v))
                for v in values]
        groups = list(dict.fromkeys(keys))
        index = {g: i for i, g in enumerate(groups)}
        gi = np.fromiter((index[k] for k in keys), np.int64, len(keys))
        closed_a = np.array(closed, dtype=bool)
        rep_a = np.array(rep_s, dtype=float)
        end_a = np.where(closed_a, np.array([x if x is not None else np.nan for x in closed_s], dtype=float),
                         horizon.timestamp())
        limits = {c.code: (sla.total_limit(c.code) or 0.0, c.unit == "working") for c in config.categories}
        lim_a = np.array([limits.get(k, (0.0, False))[0] for k in categories], dtype=float)
        work_a = np.array([limits.get(k, (0.0, False))[1] for k in categories], dtype=bool)
        hours = np.maximum(0.0, end_a - rep_a) / 3600.0
        if (work_a & (lim_a > 0)).any():
            sel = work_a & (lim_a > 0)
            xs, ys = working_seconds(sla, float(rep_a[sel].min()), float(end_a[sel].max()))
            hours[sel] = np.maximum(0.0, (np.interp(end_a[sel], xs, ys) - np.interp(rep_a[sel], xs, ys)) / 3600.0)
        timed = lim_a > 0
        over = np.where(timed, np.maximum(0.0, (hours - np.where(timed, lim_a, 1.0)) / np.where(timed, lim_a, 1.0)),
                        0.0)
        n = len(groups)

        def total(weights: Any) -> list[float]:
            return np.bincount(gi, weights=weights, minlength=n).tolist()

        sums = {
            "due": total(None), "closed": total(closed_a), "on_time": total(np.array(on_time, dtype=float)),
            "reworks": total(np.array([x or 0 for x in rework], dtype=float)),
            "_handling": total(np.where(closed_a, (end_a - rep_a) / 3600.0, 0.0)),
            "_overtime": total(over), "_timed": total(timed),
        }
        for i, g in enumerate(groups):
            r = rows[g]
            for name, col in sums.items():
                r[name] = col[i] if name in ("_handling", "_overtime") else int(round(col[i]))

    out: list[dict[str, Any]] = []
    for group, r in rows.items():
        n_due = r["due"]
        out.append({
            "group_by": group_by, "group": group, "incidents": r["incidents"], "cases_filed": r["cases_filed"],
            "due": n_due, "closed": r["closed"], "on_time": r["on_time"], "failed_verifications": r["reworks"],
            "closure_rate": _rate(r["closed"], n_due), "on_time_rate": _rate(r["on_time"], n_due),
            "rework_rate": _rate(r["reworks"], n_due),
            "avg_handling_h": round(r["_handling"] / r["closed"], 4) if r["closed"] else None,
            "avg_overtime_multiple": round(r["_overtime"] / r["_timed"], 4) if r["_timed"] else None,
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
