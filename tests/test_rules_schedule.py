"""Schedules: weekday + time windows in the site time zone, including windows across midnight."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.config import ScheduleWindow
from edge.schedule import Schedule

SH = ZoneInfo("Asia/Shanghai")


def ts(text: str, tz: ZoneInfo = SH) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def sched(*windows: dict, tz: str = "Asia/Shanghai") -> Schedule:
    return Schedule([ScheduleWindow(**w) for w in windows], tz)


@pytest.mark.parametrize(
    "when,expected",
    [
        ("2025-11-24 06:59:59", False),  # Monday, before
        ("2025-11-24 07:00:00", True),  # start is inclusive
        ("2025-11-24 18:59:59", True),
        ("2025-11-24 19:00:00", False),  # end is exclusive
        ("2025-11-22 12:00:00", False),  # Saturday
        ("2025-11-28 12:00:00", True),  # Friday
    ],
)
def test_weekday_daytime_window(when, expected):
    assert sched({"days": "mon-fri", "start": "07:00", "end": "19:00"}).is_active(ts(when)) is expected


@pytest.mark.parametrize(
    "when,expected",
    [
        ("2025-11-28 21:59:00", False),  # Friday before the start
        ("2025-11-28 22:00:00", True),  # Friday night
        ("2025-11-29 05:59:00", True),  # Saturday early morning belongs to Friday's window
        ("2025-11-29 06:00:00", False),
        ("2025-11-29 23:00:00", False),  # Saturday night: no window starts on Saturday
        ("2025-11-24 03:00:00", True),  # Monday 03:00 belongs to Sunday's window
    ],
)
def test_window_across_midnight_belongs_to_its_start_day(when, expected):
    assert sched({"days": "fri,sun", "start": "22:00", "end": "06:00"}).is_active(ts(when)) is expected


def test_site_time_zone_decides_and_no_schedule_is_always_active():
    s_sh = sched({"days": "mon", "start": "09:00", "end": "10:00"})
    s_utc = sched({"days": "mon", "start": "09:00", "end": "10:00"}, tz="UTC")
    t = ts("2025-11-24 09:30:00")  # Monday 09:30 in Shanghai = 01:30 UTC
    assert s_sh.is_active(t) and not s_utc.is_active(t)
    assert Schedule(None, "UTC").is_active(t) and Schedule([], "UTC").always


def test_full_day_and_end_of_day_forms():
    assert sched({"days": "sat", "start": "00:00", "end": "24:00"}).is_active(ts("2025-11-22 23:59:59"))
    same = sched({"days": "sat", "start": "08:00", "end": "08:00"})  # 24 h from 08:00
    assert same.is_active(ts("2025-11-23 07:59:00")) and not same.is_active(ts("2025-11-23 08:00:00"))
    assert not same.is_active(ts("2025-11-22 07:59:00"))
