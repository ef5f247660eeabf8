"""The findings analysis as a stored, scheduled job: weekly in ``serve`` (``findings`` in central.yaml: weekday and
time in the site's time zone) and on demand (``POST /api/v1/findings/runs``). Each run keeps its report, so the
analytics page and the HTML export show what was found at the time, not a recomputation over changed data.

The schedule's slots are wall-clock times in the site's zone (``weekday`` at ``time``); a slot is run once: the run
row's ``scheduled_for`` is unique, so with several central instances the second insert fails and is dropped. A slot
missed while central was down is made up when it is at most ``catch_up_h`` old.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.command_config import WEEKDAYS, FindingsScheduleConfig
from central.command_models import FindingsRun
from central.config import CentralConfig

log = logging.getLogger(__name__)
SCHEDULE_ACTOR = "system:findings-schedule"


def last_slot(schedule: FindingsScheduleConfig, now: datetime, tz: Any) -> datetime:
    """The latest scheduled instant at or before ``now`` (aware UTC), computed on the local calendar so it stays
    at the same wall-clock time across daylight-saving changes."""
    local = now.astimezone(tz)
    hh, mm = (int(x) for x in schedule.time.split(":"))
    day = local.date() - timedelta(days=(local.weekday() - WEEKDAYS.index(schedule.weekday)) % 7)
    for back in (0, 7):
        d = day - timedelta(days=back)
        slot = datetime(d.year, d.month, d.day, hh, mm, tzinfo=tz)
        if slot <= local:
            return slot.astimezone(now.tzinfo)
    raise AssertionError("unreachable: a slot a week back is always before now")


def next_slot(schedule: FindingsScheduleConfig, now: datetime, tz: Any) -> datetime:
    """The first scheduled instant after ``now`` (the same wall-clock time a week after the last one)."""
    last = last_slot(schedule, now, tz).astimezone(tz)
    d = last.date() + timedelta(days=7)
    return datetime(d.year, d.month, d.day, last.hour, last.minute, tzinfo=tz).astimezone(now.tzinfo)


def run_json(run: FindingsRun, *, report: bool = False) -> dict[str, Any]:
    out = {
        "id": run.id,
        "trigger": run.trigger,
        "actor": run.actor,
        "scheduled_for": run.scheduled_for.isoformat() if run.scheduled_for else None,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "since": run.since.isoformat(),
        "until": run.until.isoformat(),
        "level": run.level,
        "cases": run.cases,
        "finding_count": run.finding_count,
    }
    if report:
        out["report"] = run.report_json
    return out


def run_findings(
    session: Session,
    config: CentralConfig,
    clock: Clock,
    *,
    since: datetime,
    until: datetime,
    level: str,
    trigger: str,
    actor: str,
    scheduled_for: datetime | None = None,
) -> FindingsRun:
    """Compute the findings for [since, until) and store the run (commits)."""
    from central import findings as fnd
    from central.grid import load_grid

    started = clock.now()
    report = fnd.findings(
        session, since, until, config=config, grid=load_grid(session, config), clock=clock, level=level
    )
    run = FindingsRun(
        trigger=trigger,
        actor=actor[:128],
        scheduled_for=scheduled_for,
        started_at=started,
        finished_at=clock.now(),
        since=since,
        until=until,
        level=level,
        cases=report["cases"],
        finding_count=len(report["findings"]),
        report_json=report,
    )
    session.add(run)
    session.flush()
    _prune(session, config.findings.keep)
    session.commit()
    return run


def _prune(session: Session, keep: int) -> None:
    cutoff = session.scalar(select(FindingsRun.id).order_by(FindingsRun.id.desc()).offset(keep).limit(1))
    if cutoff is not None:
        session.execute(delete(FindingsRun).where(FindingsRun.id <= cutoff))


def findings_tick(session_factory: sessionmaker[Session], config: CentralConfig, clock: Clock) -> FindingsRun | None:
    """Run the scheduled analysis if its latest slot is due and not yet stored; returns the new run or None."""
    sch = config.findings
    now = clock.now()
    slot = last_slot(sch, now, config.tz)
    if now - slot > timedelta(hours=sch.catch_up_h):
        return None
    with session_factory() as s:
        if s.scalar(select(FindingsRun.id).where(FindingsRun.scheduled_for == slot)) is not None:
            return None
        try:
            return run_findings(
                s,
                config,
                clock,
                since=slot - timedelta(days=sch.period_days),
                until=slot,
                level=sch.level,
                trigger="schedule",
                actor=SCHEDULE_ACTOR,
                scheduled_for=slot,
            )
        except IntegrityError:  # another instance stored this slot first
            s.rollback()
            return None


class FindingsScheduler:
    """Checks every ``findings.tick_s`` for a due weekly run, in a daemon thread (started by ``serve``)."""

    def __init__(self, session_factory: sessionmaker[Session], config: CentralConfig, clock: Clock):
        self.session_factory, self.config, self.clock = session_factory, config, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="findings-schedule", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                if findings_tick(self.session_factory, self.config, self.clock) is not None:
                    self.runs += 1
                self.last_error = None
            except Exception as e:  # keep the schedule alive; the next tick retries
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("scheduled findings run failed")
            if self._stop.wait(self.config.findings.tick_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
