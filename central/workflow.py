"""Case workflow: states, legal transitions, deadlines at each stage and an append-only audit log.

The loop: reported → filed (or rejected) → dispatched → in_progress → handled → verifying → closed → archived;
a failed verification sends the case back to dispatched (rework); duplicate and suspended are side states.
``CaseService`` methods commit their own transaction, with its ``case.updated`` event in the outbox
(``central.event_outbox``), then wake this process's relay (``bus.poke()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, or_, select, text
from sqlalchemy.orm import Session

from central.clock import Clock
from central.config import CentralConfig
from central.db import Case, CaseAudit, CaseEvidence
from central.event_outbox import record
from central.events import EventBus
from central.sla import STAGE_OF_STATE, Sla
from central.store import EvidenceStore, check_sha256

STATES: tuple[str, ...] = (
    "reported", "filed", "rejected", "dispatched", "in_progress", "handled", "verifying", "closed", "archived",
    "duplicate", "suspended",
)
ACTIVE_STATES: frozenset[str] = frozenset(STAGE_OF_STATE)  # states with a running stage clock
OPEN_STATES: frozenset[str] = ACTIVE_STATES | {"suspended"}  # a repeat incident appends to a case in these
TERMINAL_STATES: frozenset[str] = frozenset({"rejected", "closed", "archived", "duplicate"})


@dataclass(frozen=True)
class Action:
    name: str
    sources: frozenset[str]
    target: str | None  # None: stays (reassign) or returns to the state before suspension (resume)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("file", frozenset({"reported"}), "filed"),
        Action("reject", frozenset({"reported"}), "rejected"),
        Action("dispatch", frozenset({"filed"}), "dispatched"),
        Action("start", frozenset({"dispatched"}), "in_progress"),
        Action("feedback", frozenset({"in_progress"}), "handled"),
        Action("submit_verification", frozenset({"handled"}), "verifying"),
        Action("verify_pass", frozenset({"verifying"}), "closed"),
        Action("verify_fail", frozenset({"verifying"}), "dispatched"),
        Action("archive", frozenset({"closed"}), "archived"),
        Action("mark_duplicate", frozenset({"reported", "filed"}), "duplicate"),
        Action("suspend", frozenset({"filed", "dispatched", "in_progress"}), "suspended"),
        Action("resume", frozenset({"suspended"}), None),
        Action("reassign", frozenset({"filed", "dispatched", "in_progress"}), None),
    )
}

_DISPATCHER = {
    "file", "reject", "dispatch", "reassign", "mark_duplicate", "suspend", "resume", "verify_pass", "verify_fail",
    "archive", "submit_verification",
}
_HANDLER = {"start", "feedback", "submit_verification"}
ACTION_ROLES: dict[str, set[str]] = {
    name: {"admin"} | ({"dispatcher"} if name in _DISPATCHER else set()) | ({"handler"} if name in _HANDLER else set())
    for name in ACTIONS
}
NOTE_REQUIRED: frozenset[str] = frozenset({"reject", "verify_fail"})


class WorkflowError(Exception):
    pass


class CaseNotFound(WorkflowError, LookupError):
    def __init__(self, case_id: int):
        self.case_id = case_id
        super().__init__(f"case {case_id} not found")


class IllegalTransition(WorkflowError):
    """The action is not allowed from the case's current state (HTTP 409)."""

    def __init__(self, case_id: int, action: str, state: str):
        self.case_id, self.action, self.state = case_id, action, state
        allowed = sorted(n for n, a in ACTIONS.items() if state in a.sources)
        super().__init__(
            f"case {case_id}: cannot {action!r} from state {state!r} (allowed: {', '.join(allowed) or '-'})"
        )


class TransitionInputError(WorkflowError, ValueError):
    """The action is legal but its input is not (missing note, unknown attachment): HTTP 422."""


@dataclass
class CaseFilters:
    state: str | list[str] | None = None
    category: str | None = None
    grid_cell: str | None = None  # prefix match
    camera_id: str | None = None
    since: datetime | None = None  # reported_at >= since
    until: datetime | None = None  # reported_at < until
    overdue: bool | None = None
    q: str | None = None
    squad: str | None = None
    before_id: int | None = None  # keyset pagination: ids below this (list is newest first)
    states: list[str] = field(default_factory=list)
    grid_cells: list[str] | None = None  # exact cells (a grid unit's cells: central.grid.GridIndex.cells_under)


def public_id_for(case_id: int, reported_at: datetime, config: CentralConfig) -> str:
    return f"GW-{reported_at.astimezone(config.tz):%Y%m%d}-{case_id:06d}"


def case_summary(case: Case, sla: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready summary used in bus events and list views."""

    def iso(dt: datetime | None) -> str | None:
        return dt.isoformat() if dt else None

    out: dict[str, Any] = {
        "id": case.id, "public_id": case.public_id, "state": case.state, "category": case.category,
        "camera_id": case.camera_id, "edge_id": case.edge_id, "zone": case.zone, "grid_cell": case.grid_cell,
        "lat": case.lat, "lon": case.lon, "address": case.address, "department": case.department,
        "squad": case.squad, "assignee": case.assignee, "title": case.title,
        "reported_at": iso(case.reported_at), "filed_at": iso(case.filed_at), "dispatched_at": iso(case.dispatched_at),
        "handled_at": iso(case.handled_at), "closed_at": iso(case.closed_at), "updated_at": iso(case.updated_at),
        "stage_deadline_at": iso(case.stage_deadline_at), "due_at": iso(case.due_at),
        "previous_case_id": case.previous_case_id, "recurrence_count": case.recurrence_count,
        "rework_count": case.rework_count, "incident_count": case.incident_count,
        "snapshot_sha256": case.snapshot_sha256, "after_photo_sha256": case.after_photo_sha256,
    }
    if sla is not None:
        out["sla"] = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in sla.items()}
    return out


def enter_state(case: Case, state: str, now: datetime, sla: Sla) -> None:
    """Set the state and restart the stage clock (stage deadline) for it."""
    case.state = state
    case.updated_at = now
    stage = STAGE_OF_STATE.get(state)
    if stage is None:
        case.stage_started_at = None
        case.stage_deadline_at = None
    else:
        case.stage_started_at = now
        case.stage_deadline_at = sla.stage_deadline(case.category, stage, now)


def apply_action(
    session: Session,
    case: Case,
    action: str,
    actor: str,
    now: datetime,
    sla: Sla,
    *,
    note: str | None = None,
    squad: str | None = None,
    assignee: str | None = None,
    department: str | None = None,
    attachments: list[str] | None = None,
    store: EvidenceStore | None = None,
) -> CaseAudit:
    """Apply one action to ``case`` in ``session`` (no commit). Raises IllegalTransition / TransitionInputError."""
    _check_action(case, action, note)
    shas = [check_sha256(s.lower()) for s in (attachments or [])]
    for s in shas:
        if store is None or not store.exists(s):
            raise TransitionInputError(f"attachment {s} was not uploaded")
    row = _change_state(case, action, actor, now, sla, note=note, squad=squad, assignee=assignee,
                        department=department)
    kind = "after" if action == "feedback" else "attachment"
    linked = set(session.scalars(select(CaseEvidence.sha256).where(CaseEvidence.case_id == case.id))) if shas else set()
    for s in shas:
        if s not in linked:  # an upload via add_evidence is already linked
            ct = store.content_type(s) if store is not None else None
            size = store.path(s).stat().st_size if store is not None else None
            session.add(CaseEvidence(case_id=case.id, kind=kind, sha256=s, content_type=ct, bytes=size, at=now,
                                     actor=actor))
        if kind == "after":
            case.after_photo_sha256 = s
    audit = CaseAudit(**row, attachments_json=shas or None)
    session.add(audit)
    return audit


def apply_action_row(case: Case, action: str, actor: str, now: datetime, sla: Sla, *,
                     note: str | None = None) -> dict[str, Any]:
    """``apply_action`` without attachments or a session, for the ingest's automatic transitions (file, dispatch):
    the same checks and state change, and the audit row as a dict for the caller to insert in bulk (a ``CaseAudit``
    object per row is most of the cost of a unit of work that only inserts it)."""
    _check_action(case, action, note)
    return {**_change_state(case, action, actor, now, sla, note=note), "attachments_json": None}


def _check_action(case: Case, action: str, note: str | None) -> None:
    spec = ACTIONS.get(action)
    if spec is None:
        raise TransitionInputError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if case.state not in spec.sources:
        raise IllegalTransition(case.id, action, case.state)
    if action in NOTE_REQUIRED and not (note and note.strip()):
        raise TransitionInputError(f"{action!r} needs a note giving the reason")


def _change_state(
    case: Case, action: str, actor: str, now: datetime, sla: Sla, *, note: str | None = None,
    squad: str | None = None, assignee: str | None = None, department: str | None = None,
) -> dict[str, Any]:
    """The state change of a checked action; returns the audit row's fields (without attachments)."""
    spec = ACTIONS[action]
    before = case.state
    if action == "resume":
        enter_state(case, case.state_before_suspend or "filed", now, sla)
        case.state_before_suspend = None
    elif action == "reassign":
        if squad is None and assignee is None and department is None:
            raise TransitionInputError("reassign needs a squad, assignee or department")
        case.updated_at = now
    else:
        assert spec.target is not None
        if action == "suspend":
            case.state_before_suspend = case.state
        enter_state(case, spec.target, now, sla)
    if action == "file":
        case.filed_at = now
    elif action == "dispatch":
        case.dispatched_at = now
    elif action == "feedback":
        case.handled_at = now
    elif action == "verify_pass":
        case.verified_at = now
        case.closed_at = now
    elif action == "verify_fail":
        case.rework_count += 1
        case.dispatched_at = now
    elif action == "archive":
        case.archived_at = now
    if action in ("dispatch", "reassign"):
        if squad is not None:
            case.squad = squad
        if assignee is not None:
            case.assignee = assignee
        if department is not None:
            case.department = department
    if action in ("dispatch", "reassign") and (squad or assignee or department):
        extra = ", ".join(f"{k}={v}" for k, v in (("department", department), ("squad", squad),
                                                   ("assignee", assignee)) if v)
        note = f"{note} ({extra})" if note else extra
    return {"case_id": case.id, "at": now, "actor": actor, "action": action, "from_state": before,
            "to_state": case.state, "note": note}


class CaseService:
    def __init__(self, session: Session, config: CentralConfig, clock: Clock, store: EvidenceStore, bus: EventBus):
        self.session = session
        self.config = config
        self.clock = clock
        self.store = store
        self.bus = bus
        self.sla = Sla(config)

    # ------------------------------------------------------------------ reads

    def get_case(self, case_id: int) -> Case:
        case = self.session.get(Case, case_id)
        if case is None:
            raise CaseNotFound(case_id)
        return case

    def _filtered(self, filters: CaseFilters) -> Any:
        stmt = select(Case)
        states = list(filters.states)
        if isinstance(filters.state, str):
            states += [s for s in filters.state.split(",") if s]
        elif filters.state:
            states += list(filters.state)
        if states:
            stmt = stmt.where(Case.state.in_(states)) if len(states) > 1 else stmt.where(Case.state == states[0])
        if filters.category:
            stmt = stmt.where(Case.category == filters.category)
        if filters.grid_cell:
            stmt = stmt.where(Case.grid_cell.startswith(filters.grid_cell, autoescape=True))
        if filters.grid_cells is not None:
            stmt = stmt.where(Case.grid_cell.in_(filters.grid_cells)) if filters.grid_cells else stmt.where(false())
        if filters.camera_id:
            stmt = stmt.where(Case.camera_id == filters.camera_id)
        if filters.squad:
            stmt = stmt.where(Case.squad == filters.squad)
        if filters.since:
            stmt = stmt.where(Case.reported_at >= filters.since)
        if filters.until:
            stmt = stmt.where(Case.reported_at < filters.until)
        if filters.overdue is not None:
            now = self.clock.now()
            late = (Case.stage_deadline_at < now) & Case.state.in_(ACTIVE_STATES)
            stmt = stmt.where(late) if filters.overdue else stmt.where(~late | Case.stage_deadline_at.is_(None))
        if filters.q:
            # autoescape: '%', '_' and the escape character in q are literal, not LIKE wildcards
            q = filters.q.strip()
            stmt = stmt.where(or_(*(col.icontains(q, autoescape=True)
                                    for col in (Case.public_id, Case.title, Case.address, Case.zone))))
        return stmt

    def list_cases(
        self, filters: CaseFilters | None = None, limit: int = 50, offset: int = 0, *, with_total: bool = True
    ) -> tuple[list[Case], int]:
        """Newest first. ``filters.before_id`` gives keyset pagination; ``offset`` works too (indexed by id)."""
        filters = filters or CaseFilters()
        limit = max(1, min(limit, 500))
        stmt = self._filtered(filters)
        total = -1
        if with_total:
            total = self.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        if filters.before_id is not None:
            stmt = stmt.where(Case.id < filters.before_id)
        items = list(self.session.scalars(stmt.order_by(Case.id.desc()).limit(limit).offset(max(0, offset))))
        return items, total

    def audit(self, case_id: int) -> list[CaseAudit]:
        self.get_case(case_id)
        return list(self.session.scalars(select(CaseAudit).where(CaseAudit.case_id == case_id).order_by(CaseAudit.id)))

    def evidence(self, case_id: int) -> list[CaseEvidence]:
        return list(
            self.session.scalars(select(CaseEvidence).where(CaseEvidence.case_id == case_id).order_by(CaseEvidence.id))
        )

    def sla_status(self, case: Case) -> dict[str, Any]:
        return self.sla.status(case, self.clock.now())

    def summary(self, case: Case) -> dict[str, Any]:
        return case_summary(case, self.sla_status(case))

    @staticmethod
    def allowed_actions(case: Case, role: str) -> list[str]:
        return [n for n, a in ACTIONS.items() if case.state in a.sources and role in ACTION_ROLES[n]]

    # ------------------------------------------------------------------ writes

    def _lock_for_write(self) -> None:
        """SQLite: take the write lock before reading the case (BEGIN IMMEDIATE), so two concurrent transitions of
        one case cannot both start from the same state. PostgreSQL uses SELECT … FOR UPDATE instead."""
        if self.session.get_bind().dialect.name != "sqlite":
            return
        raw = self.session.connection().connection.driver_connection
        if raw is not None and not raw.in_transaction:
            self.session.execute(text("BEGIN IMMEDIATE"))

    def transition(
        self,
        case_id: int,
        action: str,
        actor: str,
        *,
        note: str | None = None,
        squad: str | None = None,
        assignee: str | None = None,
        department: str | None = None,
        attachments: list[str] | None = None,
    ) -> Case:
        self._lock_for_write()
        case = self.session.get(Case, case_id, with_for_update=True, populate_existing=True)
        if case is None:
            self.session.rollback()
            raise CaseNotFound(case_id)
        try:
            apply_action(
                self.session, case, action, actor, self.clock.now(), self.sla, note=note, squad=squad,
                assignee=assignee, department=department, attachments=attachments, store=self.store,
            )
            record(self.session, "case.updated", {**self.summary(case), "action": action, "actor": actor})
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        self.bus.poke()
        return case

    def add_note(self, case_id: int, actor: str, note: str, attachments: list[str] | None = None) -> CaseAudit:
        case = self.get_case(case_id)
        if not note or not note.strip():
            raise TransitionInputError("a note cannot be empty")
        shas = [check_sha256(s.lower()) for s in (attachments or [])]
        for s in shas:
            if not self.store.exists(s):
                raise TransitionInputError(f"attachment {s} was not uploaded")
        now = self.clock.now()
        for s in shas:
            self.session.add(CaseEvidence(case_id=case.id, kind="attachment", sha256=s,
                                          content_type=self.store.content_type(s),
                                          bytes=self.store.path(s).stat().st_size, at=now, actor=actor))
        row = CaseAudit(case_id=case.id, at=now, actor=actor, action="note", from_state=case.state,
                        to_state=case.state, note=note.strip(), attachments_json=shas or None)
        self.session.add(row)
        case.updated_at = now
        record(self.session, "case.updated", {**self.summary(case), "action": "note", "actor": actor})
        self.session.commit()
        self.bus.poke()
        return row

    def add_evidence(self, case_id: int, actor: str, data: bytes, content_type: str, kind: str = "attachment") -> str:
        """Store an uploaded file and link it to the case; returns its sha256."""
        if kind not in ("after", "attachment"):
            raise TransitionInputError(f"evidence kind must be 'after' or 'attachment', not {kind!r}")
        case = self.get_case(case_id)
        sha = self.store.put(data, content_type)
        self.session.add(CaseEvidence(case_id=case.id, kind=kind, sha256=sha, content_type=content_type,
                                      bytes=len(data), at=self.clock.now(), actor=actor))
        if kind == "after":
            case.after_photo_sha256 = sha
        self.session.commit()
        return sha
