"""When a zone's rule is active: weekday + time-of-day windows in the site's time zone.

A window belongs to the day it *starts* on. ``end`` < ``start`` crosses midnight, so
``{days: fri, start: "22:00", end: "06:00"}`` is active Friday 22:00 → Saturday 06:00.
``end == start`` means a full 24 h from ``start``. No schedule (None or []) means always active.
The engine passes frame timestamps (epoch seconds), so tests control the clock by choosing timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.config import ScheduleWindow

_DAY_MIN = 24 * 60


@dataclass(frozen=True, slots=True)
class _Window:
    days: frozenset[int]
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight; may be <= start (crosses midnight)

    def contains(self, weekday: int, minute: float) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # crosses midnight (or a full 24 h when start == end)
        yesterday = (weekday - 1) % 7
        return (weekday in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)


class Schedule:
    """Pre-parsed schedule; ``is_active(ts)`` costs one datetime conversion."""

    def __init__(self, windows: list[ScheduleWindow] | None, timezone: str | ZoneInfo = "UTC"):
        self.tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.windows = [_parse(w) for w in windows or []]

    @property
    def always(self) -> bool:
        return not self.windows

    def is_active(self, timestamp: float) -> bool:
        if not self.windows:
            return True
        local = datetime.fromtimestamp(timestamp, self.tz)
        minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
        wd = local.weekday()
        return any(w.contains(wd, minute) for w in self.windows)


def _parse(w: ScheduleWindow) -> _Window:
    start = w.start_time()
    end = w.end_time()
    start_min = start.hour * 60 + start.minute
    end_min = _DAY_MIN if end is None else end.hour * 60 + end.minute
    return _Window(frozenset(w.weekday_set()), start_min, end_min)


def is_active(windows: list[ScheduleWindow] | None, timestamp: float, timezone: str = "UTC") -> bool:
    """Convenience wrapper; the engine keeps a ``Schedule`` per zone instead."""
    return Schedule(windows, timezone).is_active(timestamp)
