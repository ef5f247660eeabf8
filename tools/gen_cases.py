"""Seeded generator of a realistic year of cases over a district of ~600 grid cells, with planted patterns.

    .venv/bin/python tools/gen_cases.py --database-url sqlite:///var/gen.db --cases 40000 [--seed 7] [--bench]

Grid: 1 district → 6 streets → 10 communities each → 10 cells each (600 cells, square boundaries on a lon/lat
lattice, a team per community, street and district). Cases are spread uniformly over the cells and over the year,
with a diurnal profile shared by every cell; most close on time. Planted (``Plan``):

- a **night-time parking hotspot**: extra ``illegal_parking`` cases in one community between 19:00 and 07:00;
- a **badly closing category**: ``street_vending`` closes in ``bad_closure`` of cases instead of ``closure``;
- an **escalation-heavy community**: ``heavy_escalation`` of its cases go up (to the community, some further)
  instead of ``escalation``;
- optionally (``rise_extra``) a **sudden rise**: extra ``street_vending`` cases in one community in the last week;
- **parking occupancy** (``parking``): hourly figures of a few legal parking zones (``PARKING_ZONES``) for the
  whole year. The zone in the hotspot community is full every night (a **night-time parking shortfall** where the
  night-time illegal parking is); the others are not findings: an office car park full by day, a residents' car park
  full at night with ordinary illegal parking around it, one with spare spaces.

The rows are bulk-inserted (grid_units, cases, case_escalations, a ``feedback`` audit row per handled case,
parking_occupancy). With ``--bench`` the tool times the analytics (KPIs, evaluation, findings, parking supply) on the
generated data.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from central.command_models import CaseEscalation, GridUnit  # noqa: E402
from central.config import CentralConfig  # noqa: E402
from central.db import Case, CaseAudit  # noqa: E402
from central.parking_models import ParkingOccupancy  # noqa: E402
from central.sla import Sla  # noqa: E402

DISTRICT = "330102"
# Relative weight of each local hour of day (a city's day: quiet at night, busy 8-20)
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 4, 7, 9, 9, 9, 9, 8, 8, 9, 9, 9, 9, 8, 7, 6, 5, 4, 3]
NIGHT_HOURS = [19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6]
MIX = {"illegal_parking": 0.5, "street_vending": 0.3, "crowd_density": 0.2}
DAY_HOURS = list(range(8, 18))


@dataclass(frozen=True)
class ParkingZone:
    """A legal parking zone of the generated district: where it is, its spaces and its share taken by hour."""

    cell: str  # "<street>-<community>-<cell>" under DISTRICT
    zone: str
    capacity: int
    night: float  # mean share of spaces taken 19:00-07:00 (1.0: full)
    day: float  # 08:00-18:00
    other: float  # the hours between

    def share(self, hour: int) -> float:
        return self.night if hour in NIGHT_HOURS else self.day if hour in DAY_HOURS else self.other


# the first is in the hotspot community (Plan.hotspot_community) and full every night: the planted shortfall
PARKING_ZONES = (
    ParkingZone("003-04-02", "night-lot", 40, night=1.0, day=0.55, other=0.8),
    ParkingZone("001-05-03", "office-lot", 60, night=0.15, day=1.0, other=0.6),
    ParkingZone("006-09-01", "residents-lot", 20, night=1.0, day=0.4, other=0.7),
    ParkingZone("004-02-05", "market-bays", 30, night=0.8, day=0.45, other=0.6),
)


@dataclass
class Plan:
    seed: int = 7
    cases: int = 40_000
    start: datetime = datetime(2025, 12, 31, 16, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Shanghai
    days: int = 365
    streets: int = 6
    communities: int = 10  # per street
    cells: int = 10  # per community
    hotspot_community: str = f"{DISTRICT}-003-04"
    hotspot_extra: float = 0.02  # extra night parking cases, as a share of ``cases``
    bad_category: str = "street_vending"
    closure: float = 0.985
    bad_closure: float = 0.86
    on_time: float = 0.96
    escalation_community: str = f"{DISTRICT}-005-07"
    escalation: float = 0.03
    heavy_escalation: float = 0.30
    rework: float = 0.04
    rise_community: str = f"{DISTRICT}-002-02"
    rise_extra: int = 0  # extra street_vending cases in the rise community in the last 7 days
    parking: bool = True  # hourly occupancy figures of PARKING_ZONES
    handlers_per_community: int = 2
    audit: bool = True

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


@dataclass
class Generated:
    plan: Plan
    cells: list[str] = field(default_factory=list)
    cases: int = 0
    escalations: int = 0
    occupancy: int = 0
    seconds: float = 0.0


def grid_rows(plan: Plan, now: datetime) -> list[dict[str, Any]]:
    """District → streets → communities → cells with square boundaries (0.002° cells) and teams."""
    rows = [{"code": DISTRICT, "level": "district", "parent_code": None, "name": "Shangcheng", "name_zh": "上城区",
             "team": "district-command", "boundary_json": None, "updated_at": now}]
    lon0, lat0, step = 120.15, 30.25, 0.002
    for s in range(1, plan.streets + 1):
        sc = f"{DISTRICT}-{s:03d}"
        rows.append({"code": sc, "level": "street", "parent_code": DISTRICT, "name": f"Street {s}",
                     "name_zh": f"第{s}街道", "team": f"street-{s:03d}", "boundary_json": None, "updated_at": now})
        for c in range(1, plan.communities + 1):
            cc = f"{sc}-{c:02d}"
            rows.append({"code": cc, "level": "community", "parent_code": sc, "name": f"Community {s}-{c}",
                         "name_zh": f"{s}街道第{c}社区", "team": f"community-{s:03d}-{c:02d}", "boundary_json": None,
                         "updated_at": now})
            for g in range(1, plan.cells + 1):
                # a street is a band two cells high; its communities sit side by side, each 5 × 2 cells
                x = lon0 + ((c - 1) * ((plan.cells + 1) // 2) + (g - 1) // 2) * step
                y = lat0 + (s - 1) * step * 2 + ((g - 1) % 2) * step
                ring = [[x, y], [x + step, y], [x + step, y + step], [x, y + step], [x, y]]
                rows.append({"code": f"{cc}-{g:02d}", "level": "cell", "parent_code": cc,
                             "name": f"Cell {s}-{c}-{g}", "name_zh": f"{s}-{c}-{g}号网格",
                             "team": f"grid-{s:03d}-{c:02d}", "boundary_json": {"type": "Polygon",
                                                                                 "coordinates": [ring]},
                             "updated_at": now})
    return rows


def _hour(rng: random.Random) -> int:
    return rng.choices(range(24), weights=HOUR_WEIGHTS)[0]


def generate(session: Session, config: CentralConfig, plan: Plan | None = None) -> Generated:
    """Insert the grid and a year of cases into an empty, migrated database (commits)."""
    plan = plan or Plan()
    t0 = time.perf_counter()
    rng = random.Random(plan.seed)
    sla = Sla(config)
    tz = config.tz
    now = plan.end
    units = grid_rows(plan, now)
    session.execute(insert(GridUnit), units)
    cells = [u["code"] for u in units if u["level"] == "cell"]
    hotspot_cells = [c for c in cells if c.startswith(plan.hotspot_community + "-")]
    rise_cells = [c for c in cells if c.startswith(plan.rise_community + "-")]
    cats = list(MIX)
    weights = [MIX[c] for c in cats]
    specs: list[tuple[str, str, datetime]] = []  # (cell, category, reported_at)

    def at(day: float, hour: int) -> datetime:
        local = (plan.start.astimezone(tz) + timedelta(days=int(day))).replace(hour=hour, minute=rng.randrange(60),
                                                                              second=rng.randrange(60))
        return local.astimezone(UTC)

    for _ in range(plan.cases):
        specs.append((rng.choice(cells), rng.choices(cats, weights=weights)[0], at(rng.randrange(plan.days),
                                                                                  _hour(rng))))
    for _ in range(int(plan.cases * plan.hotspot_extra)):
        specs.append((rng.choice(hotspot_cells), "illegal_parking", at(rng.randrange(plan.days),
                                                                         rng.choice(NIGHT_HOURS))))
    for _ in range(plan.rise_extra):
        specs.append((rng.choice(rise_cells), "street_vending", at(plan.days - 1 - rng.randrange(7), _hour(rng))))
    specs.sort(key=lambda s: s[2])

    base_id = (session.scalar(select(func.max(Case.id))) or 0) + 1
    cases: list[dict[str, Any]] = []
    escs: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    totals = {c.code: sla.total_limit(c.code) for c in config.categories}
    for i, (cell, cat, reported) in enumerate(specs):
        cid = base_id + i
        community = cell.rsplit("-", 1)[0]
        street = community.rsplit("-", 1)[0]
        unit = config.category(cat).unit  # type: ignore[union-attr]
        limit = totals[cat] or 10.0
        due = sla.add(reported, limit, unit)
        close_p = plan.bad_closure if cat == plan.bad_category else plan.closure
        closed = rng.random() < close_p
        factor = rng.uniform(0.25, 0.95) if rng.random() < plan.on_time else rng.uniform(1.1, 3.0)
        esc_p = plan.heavy_escalation if community == plan.escalation_community else plan.escalation
        escalate = rng.random() < esc_p
        squad = f"grid-{cell.split('-')[1]}-{cell.split('-')[2]}"
        handler = f"inspector-{community[-6:]}-{rng.randrange(plan.handlers_per_community) + 1}"
        filed = reported + timedelta(minutes=rng.randrange(2, 20))
        dispatched = filed + timedelta(minutes=rng.randrange(2, 20))
        level_rank = 0
        if escalate:
            factor = max(factor, 1.05) + 0.5
            esc_at = sla.add(dispatched, (config.category(cat).limits.handle or 3.0), unit)  # type: ignore[union-attr]
            climbs = 1 + (rng.random() < 0.3) + (rng.random() < 0.2)
            frm, prev_squad = "cell", squad
            for step in range(climbs):
                to = ("community", "street", "district")[step]
                to_squad = {"community": f"community-{community.split('-', 1)[1]}", "street": f"street-{street[-3:]}",
                            "district": "district-command"}[to]
                escs.append({"case_id": cid, "at": esc_at, "from_level": frm, "to_level": to, "to_rank": step + 1,
                             "reason": "deadline", "actor": "system",
                             "unit_code": {"community": community, "street": street, "district": DISTRICT}[to],
                             "from_squad": prev_squad, "to_squad": to_squad,
                             "deadline_at": sla.add(esc_at, config.escalation.limit(to).limit_h, "working"),
                             "note": None})
                frm, prev_squad = to, to_squad
                esc_at = sla.add(esc_at, config.escalation.limit(to).limit_h, "working")
            squad, level_rank = prev_squad, climbs
        end = sla.add(reported, limit * factor, unit)
        handled = end - timedelta(minutes=rng.randrange(5, 60)) if closed else None
        if handled is not None and handled <= dispatched:
            handled = dispatched + timedelta(minutes=1)
        closed_at = max(end, (handled or end) + timedelta(minutes=1)) if closed else None
        if closed_at is not None and closed_at > now:
            closed, closed_at, handled = False, None, None
        state = "closed" if closed else ("dispatched" if level_rank else "in_progress")
        cases.append({
            "id": cid, "public_id": f"GW-{reported.astimezone(tz):%Y%m%d}-{cid:06d}", "category": cat, "state": state,
            "dedup_key": f"gen|{cid}", "camera_id": f"cam-{cell[-5:]}", "zone": "kerb", "grid_cell": cell,
            "department": config.category(cat).department, "squad": squad,  # type: ignore[union-attr]
            "assignee": handler, "reported_at": reported, "filed_at": filed, "dispatched_at": dispatched,
            "handled_at": handled, "verified_at": closed_at, "closed_at": closed_at, "stage_started_at": None,
            "stage_deadline_at": None, "due_at": due, "recurrence_count": 0,
            "rework_count": 1 if rng.random() < plan.rework else 0, "incident_count": 1, "title": f"{cat} {cell}",
            "updated_at": closed_at or dispatched,
        })
        if plan.audit and handled is not None:
            audits.append({"case_id": cid, "at": handled, "actor": f"{handler}#1", "action": "feedback",
                           "from_state": "in_progress", "to_state": "handled", "note": None})
    for chunk in range(0, len(cases), 5000):
        session.execute(insert(Case), cases[chunk:chunk + 5000])
    if escs:
        session.execute(insert(CaseEscalation), escs)
    for chunk in range(0, len(audits), 5000):
        session.execute(insert(CaseAudit), audits[chunk:chunk + 5000])
    figures = occupancy_rows(plan, tz) if plan.parking else []
    for chunk in range(0, len(figures), 5000):
        session.execute(insert(ParkingOccupancy), figures[chunk:chunk + 5000])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))"))
    session.commit()
    # planner statistics, as autovacuum would gather on a live database (without them PostgreSQL takes a bulk-loaded
    # table for empty and picks nested loops over tens of thousands of rows)
    for table in ("grid_units", "cases", "case_escalations", "case_audit", "parking_occupancy"):
        session.execute(text(f"ANALYZE {table}"))
    session.commit()
    return Generated(plan, cells, len(cases), len(escs), len(figures), time.perf_counter() - t0)


def occupancy_rows(plan: Plan, tz: Any) -> list[dict[str, Any]]:
    """One figure per zone and hour of the year (period 3600 s): the spaces taken are the zone's share for that local
    hour with noise; a full zone reports a fraction of a space short of capacity on average. Its own random stream:
    adding figures does not change the cases."""
    rng = random.Random(plan.seed + 1_000)
    rows = []
    for z in PARKING_ZONES:
        for h in range(plan.days * 24):
            end = plan.start + timedelta(hours=h + 1)
            share = z.share((end - timedelta(minutes=30)).astimezone(tz).hour)
            noise = -abs(rng.gauss(0, 0.3)) if share >= 1 else rng.gauss(0, 0.02 * z.capacity)
            mean = min(float(z.capacity), max(0.0, z.capacity * share + noise))
            rows.append({
                "camera_id": f"cam-{z.cell}", "zone": z.zone, "at": end, "hour": end - timedelta(hours=1),
                "edge_id": "edge-gen",
                "grid_cell": f"{DISTRICT}-{z.cell}", "capacity": z.capacity, "occupied": round(mean),
                "occupied_mean": round(mean, 3), "vehicles": round(mean), "samples": 60, "period_s": 3600.0,
                "method": "count", "received_at": end,
            })
    return rows


def bench(session: Session, config: CentralConfig, plan: Plan, repeat: int = 3) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds (this process) of the command-center analytics over the generated year."""
    from central.analytics import kpis
    from central.clock import FixedClock
    from central.evaluation import evaluate
    from central.findings import findings
    from central.grid import load_grid
    from central.parking import supply_demand

    clock = FixedClock(plan.end + timedelta(days=1))
    grid = load_grid(session, config)
    since, until = plan.start, plan.end
    jobs = {
        "kpis by street": lambda: kpis(session, since, until, "street", clock, config, grid=grid),
        "evaluation by squad": lambda: evaluate(session, since, until, "squad", config=config, clock=clock,
                                                grid=grid, trend=False),
        "evaluation by community (with trend)": lambda: evaluate(session, since, until, "community",
                                                                 config=config, clock=clock, grid=grid),
        "evaluation by person": lambda: evaluate(session, since, until, "person", config=config, clock=clock,
                                                 grid=grid, trend=False),
        "findings": lambda: findings(session, since, until, config=config, grid=grid, clock=clock),
        "parking supply by community": lambda: supply_demand(session, since, until, config=config, grid=grid),
    }
    out = {}
    for name, job in jobs.items():
        times = []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            job()
            times.append((time.perf_counter() - t, time.process_time() - c))
        out[name] = sorted(times)[len(times) // 2]
    return out


def main(argv: list[str] | None = None) -> int:
    from central.db import make_engine, make_session_factory, upgrade

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database-url", required=True, help="an empty database (migrated here)")
    p.add_argument("--cases", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rise", type=int, default=0, help="plant this many extra vending cases in the last week")
    p.add_argument("--bench", action="store_true", help="time the analytics afterwards")
    args = p.parse_args(argv)
    upgrade(args.database_url)
    config = CentralConfig(database_url=args.database_url)
    sf = make_session_factory(make_engine(args.database_url))
    plan = Plan(seed=args.seed, cases=args.cases, rise_extra=args.rise)
    with sf() as s:
        g = generate(s, config, plan)
        print(f"{g.cases} cases, {g.escalations} escalations, {g.occupancy} parking figures over {len(g.cells)} cells "
              f"in {g.seconds:.1f} s")
        if args.bench:
            print(f"  {'':40s} {'wall':>8s} {'cpu':>8s}   (load average {os.getloadavg()[0]:.1f})")
            for name, (wall, cpu) in bench(s, config, plan).items():
                print(f"  {name:40s} {1000 * wall:6.0f} ms {1000 * cpu:5.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
