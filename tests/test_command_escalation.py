"""Escalation (three-level linkage) driven by the sweep on the controllable clock, manual escalation through the
API, and the share of cases resolved at each level."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from central.db import CaseAudit
from central.escalation import EscalationTicker, escalation_tick, levels_of, resolved_by_level
from tests.central_support import T0, incident_payload, make_central
from tests.test_api_support import make_api
from tests.test_command_grid import GRID

CONFIG = {"grid": GRID, "escalation": {"enabled": True, "community": {"limit_h": 8},
                                       "street": {"limit_h": 16}, "district": {"limit_h": 40}}}


def Z(day: int, hour: int, minute: int = 0) -> datetime:  # noqa: N802 - reads like a timestamp literal
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_a_case_escalates_at_each_level_deadline(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, CONFIG)
    res = c.send(incident_payload(type="illegal_parking", grid_cell="440305-001-07"))
    case_id = res.case_id
    svc = c.cases()
    svc.transition(case_id, "dispatch", "ops#1", squad="grid-a", assignee="li")
    # Monday 10:00 local + 3 working hours (lunch 12:00-13:30) = 14:30 local = 06:30Z
    assert svc.get_case(case_id).stage_deadline_at == Z(23, 6, 30)

    c.clock.set(Z(23, 6, 29))
    assert escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated == []
    c.clock.set(Z(23, 6, 31))
    c.events.clear()
    out = escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated
    assert [(e["case_id"], e["from_level"], e["to_level"], e["unit_code"], e["to_squad"]) for e in out] == [
        (case_id, "cell", "community", "C1", "t-comm-1")]
    # community limit: 8 working hours from Mon 14:31 local = Tue 15:01 local = 07:01Z
    assert out[0]["deadline_at"] == Z(24, 7, 1).isoformat()
    svc = c.cases()
    case = svc.get_case(case_id)
    assert (case.state, case.squad, case.assignee, case.stage_deadline_at) == ("dispatched", "t-comm-1", None,
                                                                                Z(24, 7, 1))
    kinds = [k for k, _ in c.events]
    assert kinds == ["case.escalated", "case.updated"]
    assert c.events[0][1]["escalation"]["to_level"] == "community" and c.events[0][1]["id"] == case_id
    with c.session_factory() as s:
        audit = s.scalars(select(CaseAudit).where(CaseAudit.case_id == case_id, CaseAudit.action == "escalate")).all()
        assert len(audit) == 1 and audit[0].actor == "system" and audit[0].from_state == "dispatched"
        assert audit[0].note.startswith("cell → community C1: stage deadline passed; community limit 8 working h")

    # the community team starts work: the level's own deadline still rules
    c.clock.set(Z(24, 6, 0))
    svc.transition(case_id, "start", "t-comm-1-handler#2")
    assert escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated == []
    c.clock.set(Z(24, 7, 2))
    out = escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated
    assert [(e["to_level"], e["unit_code"], e["to_squad"]) for e in out] == [("street", "S1", "t-street-1")]
    assert escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated == []  # once per deadline
    c.clock.advance(days=30)
    out = escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated
    assert [(e["to_level"], e["unit_code"], e["to_squad"]) for e in out] == [("district", "D1", "t-district")]
    c.clock.advance(days=30)
    assert escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated == []  # the top level
    with c.session_factory() as s:
        assert levels_of(s) == {case_id: 3}

    # resolved at the district
    svc = c.cases()
    for action in ("start", "feedback", "submit_verification", "verify_pass"):
        svc.transition(case_id, action, "ops#1")
    with c.session_factory() as s:
        rows = resolved_by_level(s, T0, c.clock.now() + timedelta(hours=1))
    assert rows == [{"period": "all", "closed": 1, "by_level": {"cell": 0, "community": 0, "street": 0,
                                                                   "district": 1},
                     "share": {"cell": 0.0, "community": 0.0, "street": 0.0, "district": 1.0}, "escalated": 1,
                     "resolved_locally": 0.0}]


def test_disabled_or_not_yet_dispatched_cases_do_not_escalate(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, {**CONFIG, "escalation": {"enabled": False}})
    case_id = c.send(incident_payload(type="illegal_parking", grid_cell="440305-001-07")).case_id
    c.cases().transition(case_id, "dispatch", "ops#1")
    c.clock.advance(days=3)
    assert escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated == []
    c2 = make_central(db_url, tmp_path, CONFIG)
    filed = c2.send(incident_payload(type="illegal_parking", grid_cell="440305-001-07", zone="z2")).case_id
    c2.clock.advance(days=3)  # filed: its dispatch deadline passed, but only the handle stage escalates
    assert [e["case_id"] for e in escalation_tick(c2.session_factory, c2.config, c2.clock, c2.bus).escalated] == [
        case_id]  # the first central's dispatched case (same database), not the filed one
    with c2.session_factory() as s:
        assert filed not in levels_of(s)


def test_unknown_cell_and_community_without_team_keep_the_squad(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, CONFIG)
    a = c.send(incident_payload(type="illegal_parking", grid_cell="440305-002-01", zone="a")).case_id
    b = c.send(incident_payload(type="illegal_parking", grid_cell="999-unknown", zone="b")).case_id
    for cid in (a, b):
        c.cases().transition(cid, "dispatch", "ops#1", squad="grid-x")
    c.clock.advance(hours=30)
    out = {e["case_id"]: e for e in escalation_tick(c.session_factory, c.config, c.clock, c.bus).escalated}
    assert (out[a]["unit_code"], out[a]["to_squad"]) == ("C2", "grid-x")
    assert (out[b]["unit_code"], out[b]["to_squad"]) == (None, "grid-x")


def test_ticker_thread_escalates(tmp_path: Path) -> None:
    c = make_central(f"sqlite:///{tmp_path / 't.db'}", tmp_path, {**CONFIG, "escalation": {
        "enabled": True, "tick_s": 1}})
    from central.db import upgrade

    upgrade(c.config.database_url)
    case_id = c.send(incident_payload(type="illegal_parking", grid_cell="440305-001-07")).case_id
    c.cases().transition(case_id, "dispatch", "ops#1")
    c.clock.advance(hours=30)
    ticker = EscalationTicker(c.session_factory, c.config, c.clock, c.bus)
    ticker.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(k == "case.escalated" for k, _ in c.events):
            time.sleep(0.05)
    finally:
        ticker.stop()
    assert any(k == "case.escalated" for k, _ in c.events) and ticker.runs >= 1


def test_manual_escalation_through_the_api(db_url: str, tmp_path: Path) -> None:
    env = make_api(db_url, tmp_path, CONFIG)
    c = env.central
    case_id = env.new_case(type="illegal_parking", grid_cell="440305-001-07")
    c.cases().transition(case_id, "dispatch", "ops#1", squad="grid-a")
    url = f"/api/v1/cases/{case_id}/escalate"
    body = {"note": "needs the street's law-enforcement team"}
    assert env.client.post(url, json=body, headers=env.auth("viewer")).status_code == 403
    assert env.client.post(url, json={}, headers=env.auth("handler")).status_code == 422
    assert env.client.post("/api/v1/cases/999999/escalate", json=body, headers=env.auth("handler")).status_code == 404
    r = env.client.post(url, json=body, headers=env.auth("handler"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["level"] == "community" and out["escalation"]["reason"] == "beyond_powers"
    assert out["escalation"]["actor"].startswith("test-handler#") and out["case"]["squad"] == "t-comm-1"
    for expected in ("street", "district"):
        r = env.client.post(url, json=body, headers=env.auth("dispatcher"))
        assert r.status_code == 200 and r.json()["level"] == expected
    r = env.client.post(url, json=body, headers=env.auth("dispatcher"))
    assert r.status_code == 409 and r.json()["code"] == "escalation_refused" and "district" in r.json()["detail"]
    view = env.client.get(f"/api/v1/cases/{case_id}/escalation", headers=env.auth("viewer")).json()
    assert [e["to_level"] for e in view["escalations"]] == ["community", "street", "district"]
    assert view["grid"]["street"] == "S1" and view["grid_names"]["community"] == "Community 1"
    detail = env.client.get(f"/api/v1/cases/{case_id}", headers=env.auth("viewer")).json()
    assert [a["action"] for a in detail["audit"]].count("escalate") == 3
    # a case that is closed (or not yet filed) cannot be escalated
    other = env.new_case(type="street_vending", grid_cell="440305-001-07")
    r = env.client.post(f"/api/v1/cases/{other}/escalate", json=body, headers=env.auth("dispatcher"))
    assert r.status_code == 409 and "reported" in r.json()["detail"]
    period = {"since": (T0 - timedelta(days=1)).isoformat(), "until": (T0 + timedelta(days=1)).isoformat()}
    r = env.client.get("/api/v1/kpis/levels", params=period, headers=env.auth("viewer"))
    assert r.status_code == 200 and r.json()["rows"] == []
