"""Parking supply and demand per area and hour of day, and the finding "parking demand exceeds supply".

Inputs: the occupancy figures of legal parking zones (``parking_occupancy``, from edge/rules/occupancy.py) and the
``illegal_parking`` cases (camera incidents and field reports alike; rejected and duplicate cases excluded). An
*area* is a grid unit at ``level`` (cell, community, street, district) or one parking zone (``zone``: its grid
cell is "nearby"). Hours are local hours of day in the configured time zone; a figure belongs to the hour of the
middle of its interval (``parking_occupancy.hour``, set at ingest; exact for time zones whose offset is whole
hours). For each area and hour, over the period [since, horizon):

- ``supply``: spaces — the sum over the area's parking zones of each zone's mean ``capacity`` in that hour. A zone
  with no figure in that hour adds nothing (outside its schedule its spaces are not legal bays).
- ``occupied``: the sum over those zones of their mean occupied spaces (``occupied_mean``) in that hour.
- ``illegal_parking``: the mean number of illegally parked vehicles in the area's cells in that hour: each
  illegal-parking case is one vehicle, present from the case's report until it was handled (``handled_at``, else
  ``closed_at``, else the horizon), at most ``MAX_CASE_HOURS``; vehicle-hours per hour of day / days of the period.
  A lower bound: a vehicle nobody reported is not counted. ``illegal_parking_cases`` is the number of cases
  reported in that hour.
- ``demand`` = occupied + illegal_parking; ``shortfall`` = max(0, demand − supply); ``spare`` = max(0, supply −
  demand); ``occupancy_rate`` = occupied / supply.

A zone's cell that the grid does not know is an area of its own at every level; a zone without a grid cell is
left out (``level=zone`` lists it). Only areas with at least one parking zone reporting in the period are listed:
elsewhere the supply is not known (no camera watches its bays), not zero.

The finding (``parking_shortfall``), per area with supply × hour band (the bands of central/findings.py): the legal
spaces are nearly full through the band (occupied / supply ≥ ``min_occupancy``, default 0.9), illegal parking in the
area in that band is significantly above what the rest of the district's rate predicts for an area of its size
(the hotspot test of central/findings.py: Poisson upper tail, λ = illegal-parking cases of the band elsewhere ×
cells(area) / cells(elsewhere), n ≥ ``min_count``, n / λ ≥ ``min_ratio``, Bonferroni over the area × band tests),
and the band's mean demand exceeds its mean supply. Full bays alone (a busy office car
park by day) or illegal parking alone (an area with free bays) is not a finding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from scipy.stats import poisson
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.db import Case
from central.evaluation import epoch
from central.grid import GridIndex
from central.parking_models import ParkingOccupancy

LEVELS = ("cell", "community", "street", "district", "zone")
NOT_CASES = ("rejected", "duplicate")
ILLEGAL = "illegal_parking"
MAX_CASE_HOURS = 12.0  # an illegal-parking case counts as a vehicle present for at most this long


@dataclass
class _Hour:
    supply: float = 0.0
    occupied: float = 0.0
    figures: int = 0
    zones: set[tuple[str, str]] = field(default_factory=set)


def offset_segments(since: datetime, horizon: datetime, tz: Any) -> list[tuple[datetime, datetime, int]]:
    """[since, horizon) cut where the time zone's UTC offset changes: (start, end, offset in whole hours)."""
    out: list[tuple[datetime, datetime, int]] = []
    t = since.replace(minute=0, second=0, microsecond=0)
    seg_start, seg_offset = since, None
    while t < horizon:
        off = int(round(t.astimezone(tz).utcoffset().total_seconds() / 3600.0))
        if seg_offset is None:
            seg_offset = off
        elif off != seg_offset:
            out.append((seg_start, t, seg_offset))
            seg_start, seg_offset = t, off
        t += timedelta(hours=1)
    if seg_offset is not None:
        out.append((seg_start, horizon, seg_offset))
    return out


def zone_hours(
    session: Session, since: datetime, horizon: datetime, tz: Any
) -> dict[tuple[str, str, str | None], dict[int, tuple[float, float, int]]]:
    """Per parking zone (camera, zone, grid cell) and local hour: (mean capacity, mean occupied, figures).

    Grouped in SQL by the UTC hour of day of the stored ``hour``, once per stretch of constant UTC offset (one for
    most time zones, a few across daylight-saving changes), so the database returns 24 rows per zone, not one per
    figure."""
    dialect = session.get_bind().dialect.name
    col = ParkingOccupancy.hour
    utc_hour = (
        cast(func.strftime("%H", col), Integer) if dialect == "sqlite" else cast(func.extract("hour", col), Integer)
    )
    sums: dict[tuple[str, str, str | None], dict[int, list[float]]] = defaultdict(dict)
    for seg_start, seg_end, offset in offset_segments(since, horizon, tz):
        stmt = (
            select(
                ParkingOccupancy.camera_id,
                ParkingOccupancy.zone,
                ParkingOccupancy.grid_cell,
                utc_hour,
                func.sum(ParkingOccupancy.capacity),
                func.sum(ParkingOccupancy.occupied_mean),
                func.count(),
            )
            .where(ParkingOccupancy.at >= seg_start, ParkingOccupancy.at < seg_end)
            .group_by(ParkingOccupancy.camera_id, ParkingOccupancy.zone, ParkingOccupancy.grid_cell, utc_hour)
        )
        for cam, zone, cell, h, cap, occ, n in session.execute(stmt).tuples():
            acc = sums[(cam, zone, cell)].setdefault((int(h) + offset) % 24, [0.0, 0.0, 0])
            acc[0] += float(cap)
            acc[1] += float(occ)
            acc[2] += int(n)
    return {k: {h: (c / n, o / n, int(n)) for h, (c, o, n) in by_h.items()} for k, by_h in sums.items()}


def illegal_cases(
    session: Session, since: datetime, horizon: datetime, tz: Any
) -> tuple[dict[tuple[str | None, int], int], dict[tuple[str | None, int], float]]:
    """Illegal-parking cases reported in [since, horizon), per (grid cell, local hour): (cases reported in that hour,
    vehicle-hours present in that hour of day) — see the module doc."""
    from central.findings import local_hours

    dialect = session.get_bind().dialect.name
    raw = list(
        session.execute(
            select(
                Case.grid_cell,
                epoch(Case.reported_at, dialect),
                epoch(func.coalesce(Case.handled_at, Case.closed_at), dialect),
            ).where(
                Case.category == ILLEGAL,
                Case.reported_at >= since,
                Case.reported_at < horizon,
                Case.state.not_in(NOT_CASES),
            )
        ).tuples()
    )
    counts: dict[tuple[str | None, int], int] = defaultdict(int)
    present: dict[tuple[str | None, int], float] = defaultdict(float)
    if not raw:
        return counts, present
    names, code = np.unique(np.array([r[0] or "" for r in raw], dtype=object), return_inverse=True)  # "" = no cell
    start = np.array([float(r[1]) for r in raw])
    stop = np.array([float(r[2]) if r[2] is not None else np.inf for r in raw])
    stop = np.maximum(
        start, np.minimum.reduce([stop, start + MAX_CASE_HOURS * 3600.0, np.full(len(raw), horizon.timestamp())])
    )
    # spread each case over the UTC hours it spans, with the part of each hour it covers; a case's first entry is the
    # hour it was reported in
    first, last = np.floor(start / 3600.0).astype(np.int64), np.floor(stop / 3600.0).astype(np.int64)
    lengths = last - first + 1
    offsets = np.cumsum(lengths) - lengths
    case_idx = np.repeat(np.arange(len(raw)), lengths)
    hour_idx = first[case_idx] + (np.arange(int(lengths.sum())) - np.repeat(offsets, lengths))
    part = np.minimum(stop[case_idx], (hour_idx + 1) * 3600.0) - np.maximum(start[case_idx], hour_idx * 3600.0)
    local = np.asarray(local_hours((hour_idx * 3600.0).tolist(), tz), dtype=np.int64)
    size = len(names) * 24
    reported = np.bincount(code * 24 + local[offsets], minlength=size)
    sums = np.bincount(code[case_idx] * 24 + local, weights=np.clip(part, 0.0, None) / 3600.0, minlength=size)
    for k in np.flatnonzero(reported):
        counts[(names[k // 24] or None, int(k % 24))] = int(reported[k])
    for k in np.flatnonzero(sums):
        present[(names[k // 24] or None, int(k % 24))] = float(sums[k])
    return counts, present


def _area(grid: GridIndex, level: str, cell: str | None) -> str | None:
    """The area at ``level`` of a zone's cell; a cell the grid does not know stands for itself (it is not dropped)."""
    if cell is None:
        return None
    if level == "cell":
        return cell
    return grid.unit_at(cell, level) or cell


def supply_demand(
    session: Session,
    since: datetime,
    horizon: datetime,
    *,
    config: CentralConfig,
    grid: GridIndex,
    level: str = "community",
    cells: list[str] | None = None,
) -> dict[str, Any]:
    """Supply, demand and shortfall per area and local hour over [since, horizon) (see the module doc): ``rows``
    (one per area with parking zones and hour 0-23), ``areas`` (area → its grid cells), ``days``.

    ``cells`` keeps only the zones in those grid cells (and so the areas they are in)."""
    return _supply_demand(session, since, horizon, config=config, grid=grid, level=level, cells=cells)[0]


def _supply_demand(
    session: Session,
    since: datetime,
    horizon: datetime,
    *,
    config: CentralConfig,
    grid: GridIndex,
    level: str = "community",
    cells: list[str] | None = None,
) -> tuple[dict[str, Any], dict[tuple[str | None, int], int]]:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    tz = config.tz
    days = max((horizon - since) / timedelta(days=1), 1e-9)
    keep = set(cells) if cells is not None else None
    zones = {k: v for k, v in zone_hours(session, since, horizon, tz).items() if keep is None or k[2] in keep}
    counts, present = illegal_cases(session, since, horizon, tz)
    hours: dict[str, dict[int, _Hour]] = defaultdict(lambda: defaultdict(_Hour))
    area_cells: dict[str, set[str]] = defaultdict(set)
    for (cam, zone, cell), by_h in zones.items():
        area = f"{cam}/{zone}" if level == "zone" else _area(grid, level, cell)
        if area is None:
            continue
        if cell is not None:
            area_cells[area].update([cell] if level in ("zone", "cell") else grid.cells_under(area) or [cell])
        for h, (cap, occ, n) in by_h.items():
            slot = hours[area][h]
            slot.supply += cap
            slot.occupied += occ
            slot.figures += n
            slot.zones.add((cam, zone))
    cell_areas: dict[str, list[str]] = defaultdict(list)
    for area, acells in area_cells.items():
        for c in acells:
            cell_areas[c].append(area)
    n_area: dict[tuple[str, int], int] = defaultdict(int)
    present_area: dict[tuple[str, int], float] = defaultdict(float)
    for (cell, h), n in counts.items():
        for area in cell_areas.get(cell or "", ()):
            n_area[(area, h)] += n
    for (cell, h), v in present.items():
        for area in cell_areas.get(cell or "", ()):
            present_area[(area, h)] += v
    rows = []
    for area in sorted(hours):
        for h in range(24):
            slot = hours[area].get(h, _Hour())
            ill = present_area.get((area, h), 0.0) / days
            demand = slot.occupied + ill
            rows.append(
                {
                    "area": area,
                    "hour": h,
                    "supply": round(slot.supply, 2),
                    "occupied": round(slot.occupied, 2),
                    "occupancy_rate": round(slot.occupied / slot.supply, 4) if slot.supply else None,
                    "illegal_parking": round(ill, 4),
                    "illegal_parking_cases": n_area.get((area, h), 0),
                    "demand": round(demand, 2),
                    "shortfall": round(max(0.0, demand - slot.supply), 2),
                    "spare": round(max(0.0, slot.supply - demand), 2),
                    "zones": len(slot.zones),
                    "figures": slot.figures,
                }
            )
    result = {
        "level": level,
        "days": round(days, 3),
        "rows": rows,
        "areas": {a: sorted(area_cells.get(a, ())) for a in sorted(hours)},
    }
    return result, counts


def shortfall_findings(
    session: Session,
    since: datetime,
    horizon: datetime,
    *,
    config: CentralConfig,
    grid: GridIndex,
    level: str,
    bands: tuple[Any, ...],
    name: Any,
    alpha: float = 0.05,
    min_count: int = 10,
    min_ratio: float = 1.5,
    min_occupancy: float = 0.9,
) -> tuple[list[dict[str, Any]], int]:
    """The ``parking_shortfall`` findings and the number of tests in the family (see the module doc).

    ``name(code)`` → (name, name_zh) of an area."""
    sd, illegal = _supply_demand(session, since, horizon, config=config, grid=grid, level=level)
    days = sd["days"]
    by_area: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in sd["rows"]:
        by_area[r["area"]][r["hour"]] = r
    areas = [a for a in sorted(by_area) if any(r["supply"] for r in by_area[a].values())]
    m = len(areas) * len(bands)
    if not m:
        return [], 0
    all_cells = {u.code for u in grid.of_level("cell")} or {c for c, _ in illegal if c is not None}
    band_of_hour = {h: b.name for b in bands for h in b.hours()}
    band_total: dict[str, int] = defaultdict(int)
    for (cell, h), n in illegal.items():
        if cell in all_cells:
            band_total[band_of_hour[h]] += n
    out: list[dict[str, Any]] = []
    for area in areas:
        cells_a = set(sd["areas"][area]) & all_cells
        rest_cells = len(all_cells) - len(cells_a)
        if not cells_a or rest_cells <= 0:
            continue
        for band in bands:
            hs = [by_area[area][h] for h in band.hours()]
            supply = sum(r["supply"] for r in hs) / len(hs)
            occupied = sum(r["occupied"] for r in hs) / len(hs)
            illegal_present = sum(r["illegal_parking"] for r in hs) / len(hs)
            n = sum(r["illegal_parking_cases"] for r in hs)
            if supply <= 0 or occupied / supply < min_occupancy or n < min_count:
                continue
            expected = (band_total[band.name] - n) * len(cells_a) / rest_cells
            if expected <= 0 or n / expected < min_ratio:
                continue
            demand = occupied + illegal_present
            if demand <= supply:
                continue
            p = float(poisson.sf(n - 1, expected))
            if p * m >= alpha:
                continue
            an, an_zh = name(area)
            rate, short, per_day = occupied / supply, demand - supply, n / days
            start, end = band.label[:5], band.label[-5:]
            out.append(
                {
                    "kind": "parking_shortfall",
                    "area": area,
                    "level": level,
                    "band": band.name,
                    "hours": band.label,
                    "category": ILLEGAL,
                    "supply": round(supply, 2),
                    "occupied": round(occupied, 2),
                    "occupancy_rate": round(rate, 4),
                    "illegal_parking": round(illegal_present, 3),
                    "illegal_parking_cases": n,
                    "illegal_parking_per_day": round(per_day, 3),
                    "expected": round(expected, 2),
                    "ratio": round(n / expected, 2),
                    "demand": round(demand, 2),
                    "shortfall": round(short, 2),
                    "p_value": p,
                    "tests": m,
                    "test": "Poisson upper tail, Bonferroni",
                    "text": (
                        f"Parking demand exceeds supply in {an} ({area}) between {start} and {end}: its {supply:.0f} "
                        f"legal spaces are {100 * rate:.1f}% occupied ({occupied:.1f} on average) while "
                        f"{illegal_present:.2f} vehicles on average stand illegally parked in its cells; "
                        f"{n} illegal-parking cases were reported there in those hours ({per_day:.2f} a day), "
                        f"{n / expected:.1f}× what the rest of the district's rate predicts for an area of "
                        f"{len(cells_a)} cells (Poisson test, p {_peq(p)}, Bonferroni over {m} area × band tests). "
                        f"Demand {demand:.1f} spaces against a supply of {supply:.1f}: a shortfall of {short:.2f}."
                    ),
                    "text_zh": (
                        f"{an_zh}（{area}）{start}至{end}停车需求超过供给：{supply:.0f} 个合法车位平均占用 "
                        f"{100 * rate:.1f}%（{occupied:.1f} 个），辖内另有平均 {illegal_present:.2f} 辆车违法停放；"
                        f"该时段共报违停案件 {n} 件（每天 {per_day:.2f} 件），为按其他区域发案率预期的 "
                        f"{n / expected:.1f} 倍（泊松检验，p {_peq(p)}，"
                        f"对 {m} 项区域 × 时段检验作 Bonferroni 校正）。"
                        f"需求 {demand:.1f} 个车位，供给 {supply:.1f} 个，缺口 {short:.2f} 个。"
                    ),
                    "score": n / expected,
                }
            )
    return out, m


def _peq(p: float) -> str:
    from central.findings import _peq as peq

    return peq(p)
