"""Case workflow on SQLite and PostgreSQL: every legal transition, illegal ones refused, audit log, evidence."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from central.db import CaseAudit
from central.workflow import (
    ACTION_ROLES,
    ACTIONS,
    STATES,
    CaseFilters,
    CaseNotFound,
    IllegalTransition,
    TransitionInputError,
)
from tests.central_support import T0, TINY_JPEG, incident_payload

_zone = itertools.count()


def new_reported_case(central) -> int:  # type: ignore[no-untyped-def]
    """street_vending is not auto-filed, so a fresh zone gives a case in state 'reported'."""
    r = central.send(incident_payload(type="street_vending", zone=f"lane-{next(_zone)}"))
    assert r.case_created
    return r.case_id


PATHS: dict[str, list[str]] = {
    # how to reach each state from 'reported'
    "reported": [],
    "filed": ["file"],
    "rejected": ["reject"],
    "dispatched": ["file", "dispatch"],
    "in_progress": ["file", "dispatch", "start"],
    "handled": ["file", "dispatch", "start", "feedback"],
    "verifying": ["file", "dispatch", "start", "feedback", "submit_verification"],
    "closed": ["file", "dispatch", "start", "feedback", "submit_verification", "verify_pass"],
    "archived": ["file", "dispatch", "start", "feedback", "submit_verification", "verify_pass", "archive"],
    "duplicate": ["mark_duplicate"],
    "suspended": ["file", "suspend"],
}

LEGAL: dict[tuple[str, str], str] = {
    # (action, from) → to, written out by hand from the state list
    ("file", "reported"): "filed",
    ("reject", "reported"): "rejected",
    ("dispatch", "filed"): "dispatched",
    ("start", "dispatched"): "in_progress",
    ("feedback", "in_progress"): "handled",
    ("submit_verification", "handled"): "verifying",
    ("verify_pass", "verifying"): "closed",
    ("verify_fail", "verifying"): "dispatched",
    ("archive", "closed"): "archived",
    ("mark_duplicate", "reported"): "duplicate",
    ("mark_duplicate", "filed"): "duplicate",
    ("suspend", "filed"): "suspended",
    ("suspend", "dispatched"): "suspended",
    ("suspend", "in_progress"): "suspended",
    ("reassign", "filed"): "filed",
    ("reassign", "dispatched"): "dispatched",
    ("reassign", "in_progress"): "in_progress",
}

KW = {"reject": {"note": "not a vendor"}, "verify_fail": {"note": "still there"}, "reassign": {"squad": "B2"}}


def drive(svc, case_id: int, actions: list[str]) -> None:  # type: ignore[no-untyped-def]
    for a in actions:
        svc.transition(case_id, a, "tester", **KW.get(a, {}))


def test_table_matches_the_workflow_module() -> None:
    declared = {(name, src) for name, a in ACTIONS.items() for src in a.sources}
    assert declared - {("resume", "suspended")} == set(LEGAL)
    assert set(PATHS) == set(STATES)


@pytest.mark.parametrize(("action", "source"), sorted(LEGAL))
def test_every_legal_transition(central, action: str, source: str) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    cid = new_reported_case(central)
    drive(svc, cid, PATHS[source])
    audit_before = len(svc.audit(cid))
    central.clock.advance(minutes=5)
    case = svc.transition(cid, action, "alice", **KW.get(action, {}))
    assert case.state == LEGAL[(action, source)]
    last = svc.audit(cid)[-1]
    assert len(svc.audit(cid)) == audit_before + 1
    assert (last.actor, last.action, last.from_state, last.to_state) == ("alice", action, source, case.state)
    assert last.at == T0 + timedelta(minutes=5)
    svc.session.close()


@pytest.mark.parametrize("source", ["filed", "dispatched", "in_progress"])
def test_resume_returns_to_the_state_before_suspension(central, source: str) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    cid = new_reported_case(central)
    drive(svc, cid, PATHS[source] + ["suspend"])
    central.clock.advance(hours=1)
    case = svc.transition(cid, "resume", "bob")
    assert case.state == source and case.state_before_suspend is None
    assert case.stage_started_at == T0 + timedelta(hours=1)  # the stage clock restarts on resume
    svc.session.close()


def test_illegal_transitions_are_refused_without_side_effects(central) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    legal_sources = {(a, s) for a, s in LEGAL} | {("resume", "suspended")}
    refused = 0
    for state, path in PATHS.items():
        cid = new_reported_case(central)
        drive(svc, cid, path)
        n_audit = len(svc.audit(cid))
        for action in ACTIONS:
            if (action, state) in legal_sources:
                continue
            with pytest.raises(IllegalTransition) as exc:
                svc.transition(cid, action, "mallory", **KW.get(action, {}))
            assert exc.value.state == state and action in str(exc.value)
            refused += 1
        assert svc.get_case(cid).state == state
        assert len(svc.audit(cid)) == n_audit
    assert refused == len(STATES) * len(ACTIONS) - len(legal_sources)
    svc.session.close()


def test_inputs_and_not_found(central) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    cid = new_reported_case(central)
    with pytest.raises(TransitionInputError, match="note"):
        svc.transition(cid, "reject", "x")
    with pytest.raises(TransitionInputError, match="unknown action"):
        svc.transition(cid, "teleport", "x")
    with pytest.raises(CaseNotFound):
        svc.transition(999_999, "file", "x")
    drive(svc, cid, ["file"])
    with pytest.raises(TransitionInputError, match="squad"):
        svc.transition(cid, "reassign", "x")
    with pytest.raises(TransitionInputError, match="not uploaded"):
        svc.transition(cid, "dispatch", "x", attachments=["a" * 64])
    assert svc.get_case(cid).state == "filed"
    svc.session.close()


def test_rework_feedback_photo_and_manual_reassignment(central) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    cid = new_reported_case(central)
    drive(svc, cid, ["file"])
    svc.transition(cid, "dispatch", "disp", squad="A1", assignee="wang")
    svc.transition(cid, "reassign", "disp", squad="B2", note="A1 is busy")
    svc.transition(cid, "start", "wang")
    after = svc.add_evidence(cid, "wang", TINY_JPEG, "image/jpeg", kind="after")
    case = svc.transition(cid, "feedback", "wang", note="vendor moved on", attachments=[after])
    assert case.after_photo_sha256 == after and case.squad == "B2" and case.assignee == "wang"
    drive(svc, cid, ["submit_verification", "verify_fail", "start", "feedback", "submit_verification", "verify_pass"])
    case = svc.get_case(cid)
    assert case.state == "closed" and case.rework_count == 1 and case.closed_at == T0
    kinds = [(e.kind, e.sha256) for e in svc.evidence(cid)]
    assert kinds == [("after", after)]  # uploaded once, linked once
    audit = svc.audit(cid)
    reassign = next(a for a in audit if a.action == "reassign")
    assert reassign.note == "A1 is busy (squad=B2)"
    feedback = next(a for a in audit if a.action == "feedback")
    assert feedback.attachments_json == [after] and feedback.note == "vendor moved on"
    note = svc.add_note(cid, "chief", "good job")
    assert note.action == "note" and note.from_state == note.to_state == "closed"
    with central.session_factory() as s:  # audit rows are append-only and ordered
        ids = list(s.scalars(select(CaseAudit.id).where(CaseAudit.case_id == cid).order_by(CaseAudit.at, CaseAudit.id)))
        assert ids == sorted(ids)
    svc.session.close()


def test_roles_and_allowed_actions(central) -> None:  # type: ignore[no-untyped-def]
    svc = central.cases()
    cid = new_reported_case(central)
    case = svc.get_case(cid)
    assert svc.allowed_actions(case, "viewer") == []
    assert svc.allowed_actions(case, "handler") == []
    assert set(svc.allowed_actions(case, "dispatcher")) == {"file", "reject", "mark_duplicate"}
    drive(svc, cid, ["file", "dispatch"])
    assert svc.allowed_actions(svc.get_case(cid), "handler") == ["start"]
    assert all("admin" in roles for roles in ACTION_ROLES.values())
    svc.session.close()


def test_list_filters_and_pagination(central) -> None:  # type: ignore[no-untyped-def]
    ids = [new_reported_case(central) for _ in range(5)]
    park = central.send(incident_payload(type="illegal_parking", camera_id="cam-9", grid_cell="440305-009-01"))
    svc = central.cases()
    items, total = svc.list_cases(CaseFilters(category="street_vending"), limit=2)
    assert total == 5 and [c.id for c in items] == ids[::-1][:2]
    page2, _ = svc.list_cases(CaseFilters(category="street_vending", before_id=items[-1].id), limit=2)
    assert [c.id for c in page2] == ids[::-1][2:4]
    off, _ = svc.list_cases(CaseFilters(category="street_vending"), limit=2, offset=2)
    assert [c.id for c in off] == [c.id for c in page2]
    assert [c.id for c in svc.list_cases(CaseFilters(camera_id="cam-9"))[0]] == [park.case_id]
    assert [c.id for c in svc.list_cases(CaseFilters(grid_cell="440305-009"))[0]] == [park.case_id]
    assert svc.list_cases(CaseFilters(state="filed"))[1] == 1
    assert svc.list_cases(CaseFilters(state=["filed", "reported"]))[1] == 6
    assert svc.list_cases(CaseFilters(since=T0 + timedelta(seconds=1)))[1] == 0
    assert svc.list_cases(CaseFilters(q="lane-"))[1] >= 5
    svc.session.close()


def test_concurrent_transitions_of_one_case(central) -> None:  # type: ignore[no-untyped-def]
    import threading

    cid = new_reported_case(central)
    svc = central.cases()
    drive(svc, cid, ["file"])
    svc.session.close()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        s = central.cases()
        barrier.wait()
        try:
            s.transition(cid, "dispatch", f"dispatcher-{i}", squad=f"S{i}")
            outcomes.append("ok")
        except IllegalTransition:
            outcomes.append("illegal")
        finally:
            s.session.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["illegal", "illegal", "illegal", "ok"]
    svc = central.cases()
    assert [a.action for a in svc.audit(cid)].count("dispatch") == 1
    svc.session.close()
