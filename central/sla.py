"""Service levels: working calendar, per-stage deadlines, overdue flags and green / yellow / red.

Stages and the states in which each runs (the clock of a stage starts when the case enters it):
  file      reported                 → filed
  dispatch  filed                    → dispatched
  handle    dispatched, in_progress  → handled
  verify    handled, verifying       → closed
The overall deadline ``due_at`` is ``reported_at`` plus the sum of the category's stage limits, in the
category's unit (working or calendar hours). Colours by share of the stage limit used: green < 80 %,
yellow 80–100 %, red > 100 % (overdue).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from central.config import STAGES, CategoryConfig, CentralConfig, WorkingCalendarConfig, parse_period, parse_workdays

if TYPE_CHECKING:
    from central.db import Case

STAGE_OF_STATE: dict[str, str] = {
    "reported": "file",
    "filed": "dispatch",
    "dispatched": "handle",
    "in_progress": "handle",
    "handled": "verify",
    "verifying": "verify",
}

YELLOW_AT = 0.8
_MAX_DAYS = 3 * 366  # a limit that cannot be met within three years of working days is a config error


class WorkingCalendar:
    """Working time in a local time zone: work periods on workdays, minus holidays, plus extra workdays."""

    def __init__(self, cfg: WorkingCalendarConfig, tz: ZoneInfo):
        self.tz = tz
        self.periods: list[tuple[time, time]] = sorted(parse_period(p) for p in cfg.work_periods)
        self.workdays = parse_workdays(cfg.workdays)
        self.holidays = set(cfg.holidays)
        self.extra_workdays = set(cfg.extra_workdays)
        # working_hours_between: per-day intervals and a prefix sum of working microseconds per day from _lo
        self._day_cache: dict[date, list[tuple[datetime, datetime]]] = {}
        self._lo: date | None = None
        self._prefix: list[int] = [0]
        self._lock = threading.Lock()

    def is_workday(self, d: date) -> bool:
        if d in self.extra_workdays:
            return True
        return d.weekday() in self.workdays and d not in self.holidays

    def _intervals(self, d: date) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(d):
            return []
        return [
            (datetime.combine(d, s, self.tz).astimezone(UTC), datetime.combine(d, e, self.tz).astimezone(UTC))
            for s, e in self.periods
        ]

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The instant when ``hours`` of working time have elapsed after ``start``."""
        remaining = timedelta(hours=hours)
        if remaining <= timedelta(0):
            return start
        day = start.astimezone(self.tz).date()
        for _ in range(_MAX_DAYS):
            for a, b in self._intervals(day):
                if b <= start:
                    continue
                a = max(a, start)
                span = b - a
                if span >= remaining:
                    return a + remaining
                remaining -= span
            day += timedelta(days=1)
        raise ValueError(f"{hours} working hours do not fit in {_MAX_DAYS} days of this calendar")

    def _day(self, d: date) -> list[tuple[datetime, datetime]]:
        iv = self._day_cache.get(d)
        if iv is None:
            iv = self._day_cache[d] = self._intervals(d)
        return iv

    def _days_between(self, first: date, last: date) -> int:
        """Working microseconds from the start of day ``first`` to the start of day ``last`` (first <= last)."""
        with self._lock:
            if self._lo is None or first < self._lo:
                lo = first - timedelta(days=31)
                if self._lo is None:
                    self._lo, self._prefix = lo, [0]
                else:  # extend downwards: rebuild from the new low day
                    days = (self._lo - lo).days + len(self._prefix) - 1
                    self._lo, self._prefix = lo, [0]
                    self._extend(days)
            need = (last - self._lo).days
            if need >= len(self._prefix):
                self._extend(need + 31 - (len(self._prefix) - 1))
            return self._prefix[need] - self._prefix[(first - self._lo).days]

    def _extend(self, days: int) -> None:
        assert self._lo is not None
        for _ in range(days):
            d = self._lo + timedelta(days=len(self._prefix) - 1)
            span = sum(((b - a) for a, b in self._day(d)), timedelta(0))
            self._prefix.append(self._prefix[-1] + span // timedelta(microseconds=1))

    def _within(self, d: date, t: datetime) -> int:
        """Working microseconds on day ``d`` before instant ``t``."""
        us = 0
        for a, b in self._day(d):
            if t <= a:
                break
            us += (min(b, t) - a) // timedelta(microseconds=1)
        return us

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours in [start, end): a prefix sum over days, so long spans cost no more than short ones
        (equal to ``_working_hours_between_slow``, which tests compare it with)."""
        if end <= start:
            return 0.0
        sd, ed = start.astimezone(self.tz).date(), end.astimezone(self.tz).date()
        us = self._days_between(sd, ed) + self._within(ed, end) - self._within(sd, start)
        return (us / 10**6) / 3600.0

    def _working_hours_between_slow(self, start: datetime, end: datetime) -> float:
        if end <= start:
            return 0.0
        total = timedelta(0)
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            for a, b in self._intervals(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 3600.0


class Sla:
    """Deadline arithmetic for a configuration (one calendar, the categories' limits and units)."""

    def __init__(self, config: CentralConfig):
        self.config = config
        self.calendar = WorkingCalendar(config.calendar, config.tz)

    def add(self, start: datetime, hours: float, unit: str) -> datetime:
        if unit == "calendar":
            return start + timedelta(hours=hours)
        return self.calendar.add_working_hours(start, hours)

    def elapsed(self, start: datetime, end: datetime, unit: str) -> float:
        """Hours between two instants in ``unit`` (0 when end <= start)."""
        if unit == "calendar":
            return max(0.0, (end - start).total_seconds() / 3600.0)
        return self.calendar.working_hours_between(start, end)

    def _category(self, code: str) -> CategoryConfig:
        cat = self.config.category(code)
        if cat is None:
            raise KeyError(f"unknown category {code!r}")
        return cat

    def stage_limit(self, category: str, stage: str) -> float | None:
        return getattr(self._category(category).limits, stage)

    def total_limit(self, category: str) -> float | None:
        limits = [getattr(self._category(category).limits, s) for s in STAGES]
        present = [x for x in limits if x is not None]
        return sum(present) if present else None

    def stage_deadline(self, category: str, stage: str | None, started: datetime) -> datetime | None:
        if stage is None:
            return None
        limit = self.stage_limit(category, stage)
        return None if limit is None else self.add(started, limit, self._category(category).unit)

    def due_at(self, category: str, reported_at: datetime) -> datetime | None:
        limit = self.total_limit(category)
        return None if limit is None else self.add(reported_at, limit, self._category(category).unit)

    def status(self, case: Case, now: datetime) -> dict[str, Any]:
        """SLA view of a case's current stage: stage, limit_h, used_fraction, colour, overdue, deadline."""
        stage = STAGE_OF_STATE.get(case.state)
        out: dict[str, Any] = {
            "stage": stage, "limit_h": None, "unit": None, "used_fraction": None, "colour": None,
            "overdue": False, "deadline": case.stage_deadline_at, "due_at": case.due_at,
        }
        cat = self.config.category(case.category)
        if stage is None or cat is None or case.stage_started_at is None:
            return out
        limit = getattr(cat.limits, stage)
        out["limit_h"], out["unit"] = limit, cat.unit
        if limit is None:
            out["colour"] = "green"
            return out
        used = self.elapsed(case.stage_started_at, now, cat.unit) / limit
        out["used_fraction"] = round(used, 4)
        out["colour"] = colour(used)
        out["overdue"] = used > 1.0
        return out


def colour(used_fraction: float) -> str:
    if used_fraction < YELLOW_AT:
        return "green"
    if used_fraction <= 1.0:
        return "yellow"
    return "red"


def sla_status(case: Case, now: datetime, config: CentralConfig | None = None) -> dict[str, Any]:
    """SLA of a case at ``now``. Without ``config`` the stored deadline is used with calendar time."""
    if config is not None:
        return Sla(config).status(case, now)
    stage = STAGE_OF_STATE.get(case.state)
    out: dict[str, Any] = {
        "stage": stage, "limit_h": None, "unit": "calendar", "used_fraction": None, "colour": None,
        "overdue": False, "deadline": case.stage_deadline_at, "due_at": case.due_at,
    }
    if stage is None or case.stage_started_at is None or case.stage_deadline_at is None:
        return out
    span = (case.stage_deadline_at - case.stage_started_at).total_seconds()
    used = (now - case.stage_started_at).total_seconds() / span if span > 0 else 0.0
    out["limit_h"] = span / 3600.0
    out["used_fraction"] = round(used, 4)
    out["colour"] = colour(used)
    out["overdue"] = used > 1.0
    return out
