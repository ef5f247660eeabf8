"""Crowd response plans (应急预案): per crowd zone and level, what to do and who is notified or dispatched
(``crowd_response`` in central.yaml, ``central.command_config.CrowdResponseConfig``).

- ``plan_view`` gives a crowd case's plan for its current level (the case page and ``GET /cases/{id}`` show it).
- ``CrowdResponder`` listens on the event bus for crowd incident events; when a crowd case reaches a level that has
  a plan, it writes one ``response_plan`` audit entry for that case and level and publishes ``case.updated`` with
  ``action: response_plan`` and the plan (``response_plan``: level, plan text, notify, dispatch) — the same event
  a webhook subscribed to ``case.updated`` receives, so the teams' duty system is told through the existing
  webhook delivery (through the case-event outbox where it exists, else the in-process bus). The work runs in its
  own thread: the ingest thread that published the incident event never waits.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.command_config import CrowdPlan
from central.config import CentralConfig
from central.db import Case, CaseAudit, Incident
from central.events import EventBus

log = logging.getLogger(__name__)
CROWD_TYPE = "crowd_density"
ACTION = "response_plan"
ACTOR = "system:crowd-response"


def latest_crowd(session: Session, case_id: int) -> dict[str, Any] | None:
    """The crowd block (count, level, forecast, …) of the case's newest crowd incident event."""
    row = session.execute(
        select(Incident.payload_json)
        .where(Incident.case_id == case_id, Incident.type == CROWD_TYPE)
        .order_by(Incident.last_seen_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    crowd = row.get("crowd") if isinstance(row, dict) else None
    return crowd if isinstance(crowd, dict) else None


def plan_json(plan: CrowdPlan, level: str) -> dict[str, Any]:
    return {
        "level": level,
        "plan_level": plan.level,
        "zone": plan.zone,
        "plan": plan.plan,
        "plan_zh": plan.plan_zh,
        "notify": list(plan.notify),
        "dispatch": list(plan.dispatch),
    }


def plan_view(config: CentralConfig, case: Case, crowd: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plan for the case's current crowd level, or None (no crowd figure, normal level, or no plan)."""
    level = crowd.get("level") if crowd else None
    plan = config.crowd_response.plan_for(case.camera_id, case.zone, level if isinstance(level, str) else None)
    return plan_json(plan, str(level)) if plan is not None else None


def notified_levels(session: Session, case_id: int) -> set[str]:
    """Levels whose plan has already been sent for this case (from its ``response_plan`` audit entries)."""
    notes = session.scalars(select(CaseAudit.note).where(CaseAudit.case_id == case_id, CaseAudit.action == ACTION))
    return {n.split(":", 1)[0].removeprefix("level ") for n in notes if n}


def _durable_recorder() -> Any:
    """``central.event_outbox.record`` where the durable case-event outbox exists (case events are then written in
    the transaction and reach webhooks from the database), else None (they go on the in-process bus)."""
    try:
        from central.event_outbox import record  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return record


def respond(
    session: Session, config: CentralConfig, clock: Clock, case_id: int, bus: EventBus | None = None
) -> dict[str, Any] | None:
    """Record the plan for the case's current level if it has one not yet sent, with its ``case.updated`` event
    (``action: response_plan``); returns the plan or None. Commits."""
    from central.workflow import case_summary

    case = session.get(Case, case_id)
    if case is None or case.category != CROWD_TYPE:
        return None
    view = plan_view(config, case, latest_crowd(session, case_id))
    if view is None or view["level"] in notified_levels(session, case_id):
        return None
    who = ", ".join(view["notify"] + [f"dispatch {d}" for d in view["dispatch"]]) or "nobody listed"
    now = clock.now()
    session.add(
        CaseAudit(
            case_id=case.id,
            at=now,
            actor=ACTOR,
            action=ACTION,
            from_state=case.state,
            to_state=case.state,
            note=f"level {view['level']}: plan for {view['plan_level']} sent to {who}. {view['plan']}"[:4000],
        )
    )
    case.updated_at = now
    session.flush()
    event = {**case_summary(case), "action": ACTION, "actor": ACTOR, "response_plan": view}
    record = _durable_recorder()
    if record is not None:
        record(session, "case.updated", event)
    session.commit()
    if bus is not None:
        if record is None:
            bus.publish("case.updated", event)
        elif hasattr(bus, "poke"):
            bus.poke()  # the outbox relay reads the event now
    return view


class CrowdResponder:
    """Bus listener → queue → thread: applies the response plans of crowd cases as their level changes."""

    def __init__(self, session_factory: sessionmaker[Session], config: CentralConfig, clock: Clock, bus: EventBus):
        self.session_factory, self.config, self.clock, self.bus = session_factory, config, clock, bus
        self._queue: queue.Queue[int | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self.sent = 0
        self.last_error: str | None = None

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Bus callback (the publishing thread): only enqueues. A full queue drops the event (logged)."""
        if kind != "incident.event" or data.get("type") != CROWD_TYPE or not isinstance(data.get("case_id"), int):
            return
        if data.get("outcome") != "applied":
            return
        try:
            self._queue.put_nowait(data["case_id"])
        except queue.Full:
            log.warning("crowd response queue full; case %s not checked", data["case_id"])

    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe(self.on_event)
        self._thread = threading.Thread(target=self._run, name="crowd-response", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (case_id := self._queue.get()) is not None:
            try:
                with self.session_factory() as s:
                    if respond(s, self.config, self.clock, case_id, self.bus) is not None:
                        self.sent += 1
                self.last_error = None
            except Exception as e:  # one bad case must not stop the plans of the others
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("crowd response for case %s failed", case_id)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
