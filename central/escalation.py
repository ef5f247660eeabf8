"""Escalation (three-level linkage): a case its level cannot resolve in time goes up one level,
cell → community → street → district, each level with its own time limit (``escalation`` in central.yaml).

* At the cell level a case escalates when the deadline of one of ``escalation.stages`` (default: handle) passes.
* At a higher level it escalates again when that level's ``limit_h`` (counted from the escalation) passes.
* A handler or dispatcher may escalate a case the level cannot deal with ("beyond the level's powers").

Each escalation re-dispatches the case (state ``dispatched``, stage clock restarted with the level's limit as its
deadline) to the team of the unit at the new level when the grid names one, appends a ``case_escalations`` row and
an ``escalate`` audit entry, and publishes ``case.escalated`` and ``case.updated`` after the commit.

``escalation_tick`` is the sweep: ``serve`` runs it every ``tick_s`` (``EscalationTicker``), ``gridwatch-central
escalate`` runs it once (cron). It also places cases that have no grid cell but a position inside a cell boundary.
Each case is locked while it is escalated (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT … FOR UPDATE), and its level
re-read under the lock, so two instances sweeping at once escalate a case once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.command_config import ESCALATION_LEVELS
from central.command_models import CaseEscalation
from central.config import CentralConfig
from central.db import Case, CaseAudit
from central.event_outbox import record_many
from central.events import EventBus
from central.grid import GridIndex, load_grid
from central.sla import Sla
from central.workflow import CaseService, enter_state

log = logging.getLogger(__name__)

RANK: dict[str, int] = {lvl: i for i, lvl in enumerate(ESCALATION_LEVELS)}
TOP = len(ESCALATION_LEVELS) - 1
ESCALATABLE_STATES: frozenset[str] = frozenset({"filed", "dispatched", "in_progress"})
STAGE_STATES = {"dispatch": ("filed",), "handle": ("dispatched", "in_progress")}
REASONS = ("deadline", "beyond_powers")
SYSTEM_ACTOR = "system"


class EscalationRefused(Exception):
    """The case cannot go up (already at the district, or not in a state a level works on): HTTP 409."""


def levels_of(session: Session, case_ids: Iterable[int] | None = None) -> dict[int, int]:
    """case id → rank of its level (only escalated cases appear; the others are at rank 0, the cell)."""
    stmt = select(CaseEscalation.case_id, func.max(CaseEscalation.to_rank)).group_by(CaseEscalation.case_id)
    if case_ids is not None:
        ids = list(case_ids)
        if not ids:
            return {}
        stmt = stmt.where(CaseEscalation.case_id.in_(ids))
    return {cid: rank for cid, rank in session.execute(stmt)}


def history(session: Session, case_id: int) -> list[CaseEscalation]:
    return list(session.scalars(select(CaseEscalation).where(CaseEscalation.case_id == case_id)
                                .order_by(CaseEscalation.id)))


def level_view(session: Session, case: Case) -> dict[str, Any]:
    rows = history(session, case.id)
    last = rows[-1] if rows else None
    return {
        "level": last.to_level if last else ESCALATION_LEVELS[0],
        "rank": last.to_rank if last else 0,
        "level_deadline_at": last.deadline_at.isoformat() if last and last.deadline_at else None,
        "escalations": [escalation_json(r) for r in rows],
    }


def escalation_json(r: CaseEscalation) -> dict[str, Any]:
    return {
        "id": r.id, "case_id": r.case_id, "at": r.at.isoformat(), "from_level": r.from_level, "to_level": r.to_level,
        "reason": r.reason, "actor": r.actor, "unit_code": r.unit_code, "from_squad": r.from_squad,
        "to_squad": r.to_squad, "deadline_at": r.deadline_at.isoformat() if r.deadline_at else None, "note": r.note,
    }


def escalate(
    session: Session,
    case: Case,
    *,
    reason: str,
    actor: str,
    now: datetime,
    config: CentralConfig,
    sla: Sla,
    grid: GridIndex,
    note: str | None = None,
    rank: int | None = None,
) -> CaseEscalation:
    """Move ``case`` up one level in ``session`` (no commit). Raises EscalationRefused."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    if rank is None:
        rank = levels_of(session, [case.id]).get(case.id, 0)
    if rank >= TOP:
        raise EscalationRefused(f"case {case.id} is already at the {ESCALATION_LEVELS[TOP]} level")
    if case.state not in ESCALATABLE_STATES:
        raise EscalationRefused(
            f"case {case.id} is {case.state!r}; only {', '.join(sorted(ESCALATABLE_STATES))} cases can escalate")
    frm, to = ESCALATION_LEVELS[rank], ESCALATION_LEVELS[rank + 1]
    unit_code, team = grid.team_at(case.grid_cell, to)
    limit = config.escalation.limit(to)
    deadline = sla.add(now, limit.limit_h, limit.unit)
    before, from_squad = case.state, case.squad
    enter_state(case, "dispatched", now, sla)
    case.dispatched_at = now
    case.stage_deadline_at = deadline  # the level's own limit
    if team:
        case.squad, case.assignee = team, None
    why = "stage deadline passed" if reason == "deadline" else "beyond the level's powers"
    where = f" {unit_code}" if unit_code else " (cell not in the grid)"
    text = f"{frm} → {to}{where}: {why}; {to} limit {limit.limit_h:g} {limit.unit} h"
    if team:
        text += f"; squad={team}"
    if note:
        text += f" — {note}"
    row = CaseEscalation(case_id=case.id, at=now, from_level=frm, to_level=to, to_rank=rank + 1, reason=reason,
                         actor=actor, unit_code=unit_code, from_squad=from_squad, to_squad=case.squad,
                         deadline_at=deadline, note=note)
    session.add(row)
    session.add(CaseAudit(case_id=case.id, at=now, actor=actor, action="escalate", from_state=before,
                          to_state=case.state, note=text))
    return row


@dataclass
class TickResult:
    escalated: list[dict[str, Any]]
    located: int

    def as_dict(self) -> dict[str, Any]:
        return {"escalated": self.escalated, "located": self.located}


def _candidates(session: Session, config: CentralConfig, now: datetime) -> list[tuple[int, int]]:
    """(case id, rank) of cases whose level's time is up."""
    escalated = select(CaseEscalation.case_id)
    cell_states = [s for st in config.escalation.stages for s in STAGE_STATES[st]]
    out = [(cid, 0) for cid in session.scalars(
        select(Case.id).where(Case.state.in_(cell_states), Case.stage_deadline_at < now, Case.id.not_in(escalated))
        .order_by(Case.id))]
    last = (select(CaseEscalation.case_id, func.max(CaseEscalation.id).label("last_id"))
            .group_by(CaseEscalation.case_id).subquery())
    stmt = (select(Case.id, CaseEscalation.to_rank)
            .join(last, last.c.case_id == Case.id)
            .join(CaseEscalation, CaseEscalation.id == last.c.last_id)
            .where(Case.state.in_(ESCALATABLE_STATES), CaseEscalation.deadline_at < now,
                   CaseEscalation.to_rank < TOP)
            .order_by(Case.id))
    out += [(cid, rank) for cid, rank in session.execute(stmt)]
    return out


def _due(case: Case, rank: int, config: CentralConfig, now: datetime, session: Session) -> bool:
    """Re-check under the lock that the case's level is (still) out of time."""
    if rank == 0:
        cell_states = {s for st in config.escalation.stages for s in STAGE_STATES[st]}
        return case.state in cell_states and case.stage_deadline_at is not None and case.stage_deadline_at < now
    last = session.scalars(select(CaseEscalation).where(CaseEscalation.case_id == case.id)
                           .order_by(CaseEscalation.id.desc()).limit(1)).first()
    return (last is not None and last.to_rank == rank and case.state in ESCALATABLE_STATES
            and last.deadline_at is not None and last.deadline_at < now)


def locate_cases(session: Session, grid: GridIndex, actor: str = SYSTEM_ACTOR, now: datetime | None = None) -> int:
    """Cases without a grid cell but with a position inside a cell boundary get that cell (and its team when they
    have no squad). Returns how many were placed (no commit)."""
    if not any(u.boundary for u in grid.units.values() if u.level == "cell"):
        return 0
    n = 0
    for case in session.scalars(select(Case).where(Case.grid_cell.is_(None), Case.lat.is_not(None),
                                                   Case.lon.is_not(None), Case.state.not_in(("closed", "archived")))
                                .limit(500)):
        cell = grid.locate(case.lon, case.lat)
        if cell is None:
            continue
        case.grid_cell = cell
        team = grid.get(cell).team if grid.get(cell) else None
        extra = ""
        if case.squad is None and team:
            case.squad = team
            extra = f"; squad={team}"
        if now is not None:
            case.updated_at = now
            session.add(CaseAudit(case_id=case.id, at=now, actor=actor, action="locate", from_state=case.state,
                                  to_state=case.state, note=f"placed in grid cell {cell} by position{extra}"))
        n += 1
    return n


def escalation_tick(
    session_factory: sessionmaker[Session], config: CentralConfig, clock: Clock, bus: EventBus | None = None,
) -> TickResult:
    """One sweep: place unlocated cases, then escalate every case whose level is out of time (one level each)."""
    now = clock.now()
    bus = bus or EventBus()
    sla = Sla(config)
    with session_factory() as session:
        grid = load_grid(session, config)
        located = locate_cases(session, grid, now=now)
        session.commit()
        done: list[dict[str, Any]] = []
        if not config.escalation.enabled:
            return TickResult(done, located)
        for case_id, rank in _candidates(session, config, now):
            svc = CaseService(session, config, clock, store=None, bus=bus)  # type: ignore[arg-type]
            try:
                svc._lock_for_write()
                case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
                cur = levels_of(session, [case_id]).get(case_id, 0)
                if case is None or cur != rank or not _due(case, rank, config, now, session):
                    session.rollback()
                    continue
                row = escalate(session, case, reason="deadline", actor=SYSTEM_ACTOR, now=now, config=config,
                               sla=sla, grid=grid, rank=rank)
                session.flush()  # the escalation row's id, for its event
                info = escalation_json(row)
                record_escalation(session, svc, case, info)
                session.commit()
            except EscalationRefused:
                session.rollback()
                continue
            except Exception:
                session.rollback()
                log.exception("escalation of case %s failed", case_id)
                continue
            done.append(info)
            bus.poke()
    return TickResult(done, located)


def record_escalation(session: Session, svc: CaseService, case: Case, info: dict[str, Any]) -> None:
    """The escalation's case events, into the outbox of the session's transaction (commit them with it)."""
    summary = svc.summary(case)
    record_many(session, [("case.escalated", {**summary, "escalation": info}),
                          ("case.updated", {**summary, "action": "escalate", "actor": info["actor"]})])


class EscalationTicker:
    """Runs ``escalation_tick`` every ``config.escalation.tick_s`` in a daemon thread (started by ``serve``)."""

    def __init__(self, session_factory: sessionmaker[Session], config: CentralConfig, clock: Clock, bus: EventBus):
        self.session_factory, self.config, self.clock, self.bus = session_factory, config, clock, bus
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="escalation-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.escalation.tick_s):
            try:
                escalation_tick(self.session_factory, self.config, self.clock, self.bus)
                self.runs += 1
                self.last_error = None
            except Exception as e:  # the database may be down for a while; try again next tick
                self.last_error = str(e)[:200]
                log.warning("escalation sweep failed: %s", self.last_error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


# --------------------------------------------------------------------------- KPIs


def resolved_by_level(
    session: Session, since: datetime, until: datetime, *, cells: list[str] | None = None,
    bucket: str | None = None, tz: Any = None,
) -> list[dict[str, Any]]:
    """Closed cases with ``closed_at`` in [since, until), by the level they were resolved at, per period bucket
    (None: one row; "day" | "week" | "month" in ``tz``). Each row: period, closed, per level count and share,
    ``escalated`` (closed above the cell) and ``resolved_locally`` (share closed at the cell level)."""
    stmt = select(Case.id, Case.closed_at).where(Case.closed_at >= since, Case.closed_at < until,
                                                 Case.state.in_(("closed", "archived")))
    if cells is not None:
        stmt = stmt.where(Case.grid_cell.in_(cells)) if cells else stmt.where(false())
    rows = list(session.execute(stmt))
    ranks = levels_of(session, [r[0] for r in rows]) if len(rows) < 5000 else levels_of(session)
    groups: dict[str, list[int]] = {}
    for cid, closed in rows:
        key = _bucket(closed, bucket, tz)
        groups.setdefault(key, []).append(ranks.get(cid, 0))
    out = []
    for key in sorted(groups):
        rk = groups[key]
        n = len(rk)
        counts = {lvl: sum(1 for r in rk if r == i) for i, lvl in enumerate(ESCALATION_LEVELS)}
        out.append({
            "period": key, "closed": n, "by_level": counts,
            "share": {lvl: round(c / n, 4) for lvl, c in counts.items()},
            "escalated": n - counts[ESCALATION_LEVELS[0]], "resolved_locally": round(counts["cell"] / n, 4),
        })
    return out


def _bucket(at: datetime, bucket: str | None, tz: Any) -> str:
    if bucket is None:
        return "all"
    local = at.astimezone(tz) if tz is not None else at
    if bucket == "day":
        return f"{local:%Y-%m-%d}"
    if bucket == "week":
        y, w, _ = local.isocalendar()
        return f"{y}-W{w:02d}"
    if bucket == "month":
        return f"{local:%Y-%m}"
    raise ValueError(f"bucket must be day, week or month, not {bucket!r}")
