"""SLA: working calendar (lunch break, weekend, holiday, make-up workday), stage deadlines, colours, overdue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.config import CentralConfigError, WorkingCalendarConfig, parse_central_config
from central.sla import WorkingCalendar, sla_status
from central.workflow import CaseFilters
from tests.central_support import T0, incident_payload, make_central

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkingCalendarConfig(
    work_periods=["09:00-12:00", "13:30-18:00"], workdays="mon-fri",
    holidays=[date(2026, 11, 30)],  # Monday
    extra_workdays=[date(2026, 12, 5)],  # Saturday
)


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar(CAL, SH)


def test_lunch_break_is_skipped(cal: WorkingCalendar) -> None:
    # Mon 11:00 + 3 h: 11:00-12:00 (1 h), lunch 12:00-13:30 skipped, 13:30-15:30 (2 h)
    assert cal.add_working_hours(local(2026, 11, 23, 11), 3) == local(2026, 11, 23, 15, 30)
    # starting inside lunch counts from 13:30
    assert cal.add_working_hours(local(2026, 11, 23, 12, 30), 1) == local(2026, 11, 23, 14, 30)
    # before opening counts from 09:00; after closing from the next workday
    assert cal.add_working_hours(local(2026, 11, 23, 7), 0.5) == local(2026, 11, 23, 9, 30)
    assert cal.add_working_hours(local(2026, 11, 23, 20), 1) == local(2026, 11, 24, 10)


def test_weekend_and_holiday_are_skipped(cal: WorkingCalendar) -> None:
    # Fri 27th 17:00 + 3 h: Fri 17-18 (1 h), Sat/Sun off, Mon 30th holiday, Tue 1 Dec 09:00-11:00 (2 h)
    assert cal.add_working_hours(local(2026, 11, 27, 17), 3) == local(2026, 12, 1, 11)
    assert not cal.is_workday(date(2026, 11, 30)) and not cal.is_workday(date(2026, 11, 28))


def test_extra_workday_is_worked(cal: WorkingCalendar) -> None:
    # Fri 4 Dec 17:00 + 3 h: Fri 17-18 (1 h), Sat 5 Dec is a make-up workday: 09:00-11:00 (2 h)
    assert cal.is_workday(date(2026, 12, 5))
    assert cal.add_working_hours(local(2026, 12, 4, 17), 3) == local(2026, 12, 5, 11)


def test_working_hours_between(cal: WorkingCalendar) -> None:
    # Mon 08:00 → Mon 19:00: 3 h morning + 4.5 h afternoon
    assert cal.working_hours_between(local(2026, 11, 23, 8), local(2026, 11, 23, 19)) == pytest.approx(7.5)
    # Fri 27th 10:00 → Tue 1 Dec 10:00: Fri 10-12 (2) + 13:30-18 (4.5), Mon holiday, Tue 09-10 (1) = 7.5
    assert cal.working_hours_between(local(2026, 11, 27, 10), local(2026, 12, 1, 10)) == pytest.approx(7.5)
    assert cal.working_hours_between(local(2026, 11, 23, 10), local(2026, 11, 23, 9)) == 0.0


def test_bad_calendar_config_names_the_field() -> None:
    with pytest.raises(CentralConfigError, match=r"calendar.work_periods"):
        parse_central_config({"calendar": {"work_periods": ["9-12"]}}, "central.yaml")
    with pytest.raises(CentralConfigError, match=r"calendar.workdays"):
        parse_central_config({"calendar": {"workdays": "mon-funday"}}, "central.yaml")


def test_parking_case_deadlines_colours_and_overdue(db_url: str, tmp_path: Path) -> None:
    # T0 = Mon 23 Nov 10:00 Shanghai. Default illegal_parking: working hours, file 0.5, dispatch 0.5, handle 3,
    # verify 2 → total 6 h. Auto-filed at T0, so the dispatch stage (0.5 working h) runs from 10:00 to 10:30.
    cal = {"work_periods": ["09:00-12:00", "13:30-18:00"], "workdays": "mon-fri", "holidays": ["2026-11-24"]}
    c = make_central(db_url, tmp_path, {"calendar": cal})
    r = c.send(incident_payload())
    svc = c.cases()
    case = svc.get_case(r.case_id)
    assert case.stage_deadline_at == local(2026, 11, 23, 10, 30)
    # due: 10:00-12:00 (2 h) + 13:30-17:30 (4 h) = 6 working hours → Mon 17:30
    assert case.due_at == local(2026, 11, 23, 17, 30)

    def status() -> dict:  # type: ignore[type-arg]
        return svc.sla_status(svc.get_case(r.case_id))

    c.clock.advance(minutes=20)  # 20/30 = 0.667
    assert (status()["colour"], status()["overdue"]) == ("green", False)
    c.clock.advance(minutes=4)  # 24/30 = 0.8 → yellow
    assert status()["colour"] == "yellow" and status()["used_fraction"] == pytest.approx(0.8)
    c.clock.advance(minutes=6)  # 30/30 = 1.0 → still yellow
    assert status()["colour"] == "yellow" and not status()["overdue"]
    assert svc.list_cases(CaseFilters(overdue=True))[1] == 0
    c.clock.advance(minutes=1)  # 31/30 → red, overdue
    assert (status()["colour"], status()["overdue"]) == ("red", True)
    assert [x.id for x in svc.list_cases(CaseFilters(overdue=True))[0]] == [r.case_id]
    assert svc.list_cases(CaseFilters(overdue=False))[1] == 0

    # Dispatch at 11:00 → handle stage 3 working hours: 11-12 (1 h) + 13:30-15:30 (2 h) → 15:30 the same day
    c.clock.set(local(2026, 11, 23, 11))
    svc.transition(r.case_id, "dispatch", "disp", squad="T1")
    case = svc.get_case(r.case_id)
    assert case.stage_deadline_at == local(2026, 11, 23, 15, 30)
    c.clock.set(local(2026, 11, 23, 13, 30))  # 2.5 calendar hours later but 1 working hour: 1/3 → green
    assert status()["used_fraction"] == pytest.approx(1 / 3, abs=1e-3) and status()["colour"] == "green"
    c.clock.set(local(2026, 11, 23, 15))  # 2.5/3 = 0.833 → yellow
    assert status()["colour"] == "yellow"
    # without the config, sla_status falls back to calendar time over the stored span: 4 h of 4.5 h
    assert sla_status(svc.get_case(r.case_id), c.clock.now())["used_fraction"] == pytest.approx(4 / 4.5, abs=1e-3)

    # Start at 17:00: over the night and the Tuesday holiday the stage clock does not run.
    # Feedback at 17:00 → verify stage 2 working h: 17-18 (1 h), Tue 24th holiday, Wed 25th 09-10 (1 h)
    c.clock.set(local(2026, 11, 23, 17))
    svc.transition(r.case_id, "start", "h")
    svc.transition(r.case_id, "feedback", "h", note="towed")
    assert svc.get_case(r.case_id).stage_deadline_at == local(2026, 11, 25, 10)
    c.clock.set(local(2026, 11, 24, 23))  # holiday: still 1 of 2 working hours used
    assert status()["used_fraction"] == pytest.approx(0.5)
    svc.session.close()
    c.session_factory.kw["bind"].dispose()


def test_calendar_hours_category(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, at=datetime(2026, 11, 28, 22, 0, tzinfo=UTC))  # Sunday 06:00 Shanghai
    r = c.send(incident_payload(type="crowd_density", zone="plaza", position=None,
                                at=datetime(2026, 11, 28, 22, 0, tzinfo=UTC)))
    svc = c.cases()
    case = svc.get_case(r.case_id)
    # crowd_density: calendar hours, auto-dispatched → handle stage 1 h on a Sunday morning regardless of the calendar
    assert case.state == "dispatched"
    assert case.stage_deadline_at == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    # total 0.25 + 0.25 + 1 + 1 = 2.5 calendar hours
    assert case.due_at == datetime(2026, 11, 29, 0, 30, tzinfo=UTC)
    c.clock.advance(minutes=61)
    assert svc.sla_status(svc.get_case(r.case_id))["colour"] == "red"
    svc.session.close()
    c.session_factory.kw["bind"].dispose()


def test_t0_is_monday_ten_local() -> None:
    assert T0.astimezone(SH) == local(2026, 11, 23, 10) and T0.astimezone(SH).weekday() == 0
    assert timedelta(0) == T0 - local(2026, 11, 23, 10)
