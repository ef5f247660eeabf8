"""Ingest on SQLite and PostgreSQL: idempotency, ordering, dead letters, dedup into cases, recurrence, silences."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central.db import Camera, Case, CaseAudit, CaseEvidence, CrowdFigure, DeadLetter, Edge, Incident, IncidentEvent
from central.silences import create_silence
from tests.central_support import T0, TINY_JPEG, encode, incident_payload, make_central, snapshot_block, topic


def count(c, model) -> int:  # type: ignore[no-untyped-def]
    with c.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_opened_event_creates_an_auto_filed_case_with_snapshot(central) -> None:  # type: ignore[no-untyped-def]
    p = incident_payload(snapshot=True)
    r = central.send(p)
    assert (r.outcome, r.case_created) == ("applied", True)
    with central.session_factory() as s:
        case = s.get(Case, r.case_id)
        assert case.state == "filed"  # illegal_parking is auto_file in the default categories
        assert case.department == "traffic_police"
        assert case.public_id == f"GW-20261123-{case.id:06d}"
        assert case.reported_at == T0 and case.filed_at == T0
        assert case.snapshot_sha256 == snapshot_block()["sha256"]
        ev = s.scalars(select(CaseEvidence).where(CaseEvidence.case_id == case.id)).all()
        assert [(e.kind, e.sha256) for e in ev] == [("before", case.snapshot_sha256)]
        actions = [a.action for a in s.scalars(select(CaseAudit).where(CaseAudit.case_id == case.id))]
        assert actions == ["report", "file"]
        cam = s.get(Camera, "cam-1")
        assert (cam.edge_id, cam.grid_cell, cam.lat) == ("edge-test-01", "440305-001-07", 22.54)
        inc = s.get(Incident, p["incident_id"])
        assert inc.payload_json["snapshot"].get("data") is None  # base64 not kept in the row
    assert central.store.open(case.snapshot_sha256) == TINY_JPEG
    kinds = [k for k, _ in central.events]
    assert kinds == ["incident.event", "case.created"]


def test_arrival_photo_and_closeup_are_stored_as_case_evidence(central) -> None:  # type: ignore[no-untyped-def]
    other = TINY_JPEG[:-2] + b"\x00\x00" + TINY_JPEG[-2:]  # a different byte string (sha256 differs)
    block = snapshot_block(other)
    p = {
        **incident_payload(snapshot=True),
        "evidence": [
            {"kind": "arrival", "at": "2026-11-23T01:58:00.000Z", "snapshot": block},
            {"kind": "closeup", "at": "2026-11-23T02:00:00.000Z", "snapshot": snapshot_block()},
        ],
    }
    r = central.send(p)
    assert r.outcome == "applied"
    with central.session_factory() as s:
        ev = s.scalars(select(CaseEvidence).where(CaseEvidence.case_id == r.case_id).order_by(CaseEvidence.id)).all()
        # the close-up has the snapshot's bytes here, so it is stored once (evidence is deduplicated by sha256)
        assert [e.kind for e in ev] == ["before", "arrival"]
        assert s.get(Case, r.case_id).snapshot_sha256 == snapshot_block()["sha256"]
        stored = s.get(Incident, p["incident_id"]).payload_json
        assert stored["evidence"][0]["kind"] == "arrival" and "data" not in stored["evidence"][0]["snapshot"]
    assert central.store.open(block["sha256"]) == other
    bad = {
        **incident_payload(),
        "incident_id": "0b2f4f9e-31a9-4b0e-9d35-7f3a1c2b9e11",
        "evidence": [{"kind": "arrival", "at": "2026-11-23T01:58:00.000Z", "snapshot": {**block, "sha256": "0" * 64}}],
    }
    assert central.send(bad).outcome == "dead_letter"


def test_duplicate_delivery_changes_nothing(central) -> None:  # type: ignore[no-untyped-def]
    p = incident_payload()
    first = central.send(p)
    second = central.send(p)
    assert first.outcome == "applied" and second.outcome == "duplicate"
    assert count(central, Case) == 1
    assert count(central, IncidentEvent) == 1
    assert count(central, CaseAudit) == 2  # report + auto file, nothing from the duplicate


def test_duplicates_inside_one_batch(central) -> None:  # type: ignore[no-untyped-def]
    p = incident_payload()
    u = incident_payload(event="updated", seq=2, incident_id=p["incident_id"])
    msgs = [(topic(), encode(p)), (topic(), encode(p)), (topic(), encode(u)), (topic(), encode(u))]
    outcomes = [r.outcome for r in central.ingest.handle_batch(msgs)]
    assert outcomes == ["applied", "duplicate", "applied", "duplicate"]
    assert count(central, IncidentEvent) == 2 and count(central, Case) == 1


def test_out_of_order_update_after_close_does_not_reopen(central) -> None:  # type: ignore[no-untyped-def]
    opened = incident_payload()
    iid = opened["incident_id"]
    closed = incident_payload(event="closed", seq=3, incident_id=iid, at=T0 + timedelta(minutes=5))
    late_update = incident_payload(event="updated", seq=2, incident_id=iid, at=T0 + timedelta(minutes=2))
    rogue_update = incident_payload(event="updated", seq=4, incident_id=iid, at=T0 + timedelta(minutes=6))
    assert central.send(opened).outcome == "applied"
    assert central.send(closed).outcome == "applied"  # seq 2 missing: gap tolerated
    assert central.send(late_update).outcome == "stale"
    assert central.send(rogue_update).outcome == "after_close"
    with central.session_factory() as s:
        inc = s.get(Incident, iid)
        assert inc.state == "closed" and inc.last_seq == 3
        assert inc.ended_at == T0 + timedelta(minutes=5)
        outcomes = dict(s.execute(select(IncidentEvent.seq, IncidentEvent.outcome)).all())
    assert outcomes == {1: "applied", 3: "applied", 2: "stale", 4: "after_close"}
    assert count(central, Case) == 1


def test_closed_event_arriving_first_still_files_a_case(central) -> None:  # type: ignore[no-untyped-def]
    iid = "7b0c5d1e-0000-4000-8000-000000000001"
    closed = incident_payload(event="closed", seq=2, incident_id=iid)
    opened = incident_payload(event="opened", seq=1, incident_id=iid)
    r = central.send(closed)
    assert r.case_created
    assert central.send(opened).outcome == "stale"
    assert count(central, Case) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"[1, 2, 3]", "malformed_json"),
        (encode({**incident_payload(), "schema": "gridwatch.incident/9"}), "unknown_version"),
        (encode({k: v for k, v in incident_payload().items() if k != "event_id"}), "schema"),
        (encode({**incident_payload(), "seq": "one"}), "schema"),
        (encode({**incident_payload(), "event": "exploded"}), "schema"),
        (encode({**incident_payload(), "edge_id": "someone-else"}), "topic_mismatch"),
        (encode({**incident_payload(), "snapshot": {**snapshot_block(), "sha256": "0" * 64}}), "bad_snapshot"),
        (encode({**incident_payload(), "snapshot": {**snapshot_block(), "data": "@@not base64@@"}}), "bad_snapshot"),
    ],
)
def test_bad_payloads_go_to_dead_letters(central, raw: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    r = central.ingest.handle(topic(), raw)
    assert (r.outcome, r.reason) == ("dead_letter", reason)
    with central.session_factory() as s:
        dl = s.scalars(select(DeadLetter)).one()
        assert dl.reason == reason and dl.topic == topic() and dl.size == len(raw) and dl.payload == raw
        assert dl.detail
    assert count(central, Case) == 0 and count(central, IncidentEvent) == 0
    # ingest keeps working after bad input
    assert central.send(incident_payload()).outcome == "applied"


def test_oversized_and_unknown_topic_dead_letters(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, {"max_payload_bytes": 5000})
    big = incident_payload(snapshot=True)
    big["snapshot"] = snapshot_block(TINY_JPEG * 40)
    raw = encode(big)
    assert len(raw) > 5000
    r = c.ingest.handle(topic(), raw)
    assert (r.outcome, r.reason) == ("dead_letter", "oversized")
    assert c.ingest.handle("gridwatch/v1/edge-test-01/selfie", b"{}").reason == "unknown_topic"
    assert c.ingest.handle("other/edge/incidents", b"{}").reason == "unknown_topic"
    with c.session_factory() as s:
        assert sorted(s.scalars(select(DeadLetter.reason))) == ["oversized", "unknown_topic", "unknown_topic"]
    c.session_factory.kw["bind"].dispose()


def test_repeats_append_to_open_case_and_recurrence_after_close(central) -> None:  # type: ignore[no-untyped-def]
    a = central.send(incident_payload(position=(0.41, 0.61)))
    # a different incident at nearly the same spot (same 0.05 grid cell) joins the open case
    b = central.send(incident_payload(position=(0.42, 0.62), snapshot=True))
    # a different spot in the same zone is a different case
    c2 = central.send(incident_payload(position=(0.80, 0.20)))
    assert a.case_created and not b.case_created and b.case_id == a.case_id
    assert c2.case_created and c2.case_id != a.case_id
    with central.session_factory() as s:
        case = s.get(Case, a.case_id)
        assert case.incident_count == 2 and case.snapshot_sha256 is not None
        audit = s.scalars(select(CaseAudit).where(CaseAudit.case_id == case.id))
        assert "incident_appended" in [x.action for x in audit]
    svc = central.cases()
    for action in ("dispatch", "start", "feedback", "submit_verification", "verify_pass"):
        svc.transition(a.case_id, action, "tester")
    svc.session.close()
    again = central.send(incident_payload(position=(0.42, 0.61)))
    assert again.case_created and again.case_id != a.case_id
    third_svc = central.cases()
    for action in ("dispatch", "start", "feedback", "submit_verification", "verify_pass", "archive"):
        third_svc.transition(again.case_id, action, "tester")
    third_svc.session.close()
    third = central.send(incident_payload(position=(0.42, 0.61)))
    with central.session_factory() as s:
        second = s.get(Case, again.case_id)
        assert second.previous_case_id == a.case_id and second.recurrence_count == 1
        latest = s.get(Case, third.case_id)
        assert latest.previous_case_id == again.case_id and latest.recurrence_count == 2


def test_one_batch_writes_each_case_audit_trail_and_evidence_in_order(central) -> None:  # type: ignore[no-untyped-def]
    """Audit and evidence rows go in as one bulk insert per batch (no ORM object each): every row as the workflow
    writes it, in order, also for a case opened, appended to and auto-dispatched inside the same batch."""
    parking = incident_payload(position=(0.41, 0.61), snapshot=True)
    repeat = incident_payload(position=(0.42, 0.62))  # same grid cell: appended to the case opened just before
    crowd = incident_payload(type="crowd_density", zone="plaza", position=None)
    results = central.ingest.handle_batch([(topic("edge-test-01"), encode(p)) for p in (parking, repeat, crowd)])
    assert [r.outcome for r in results] == ["applied"] * 3
    assert results[1].case_id == results[0].case_id and results[0].case_created and not results[1].case_created
    with central.session_factory() as s:
        rows = s.scalars(select(CaseAudit).order_by(CaseAudit.id)).all()
        got = [(a.case_id, a.actor, a.action, a.from_state, a.to_state, a.note, a.at) for a in rows]
        parking_case, crowd_case = results[0].case_id, results[2].case_id
        assert got == [
            (parking_case, "system", "report", None, "reported", f"incident {parking['incident_id']}", T0),
            (parking_case, "system", "file", "reported", "filed", "auto-filed (category rule)", T0),
            (parking_case, "system", "incident_appended", "filed", "filed", f"repeat incident {repeat['incident_id']}",
             T0),
            (crowd_case, "system", "report", None, "reported", f"incident {crowd['incident_id']}", T0),
            (crowd_case, "system", "file", "reported", "filed", "auto-filed (category rule)", T0),
            (crowd_case, "system", "dispatch", "filed", "dispatched", "auto-dispatched (category rule)", T0),
        ]
        assert all(a.attachments_json is None for a in rows)
        ev = s.scalars(select(CaseEvidence)).all()
        assert [(e.case_id, e.kind, e.sha256, e.incident_id, e.event_id, e.actor, e.bytes) for e in ev] == [
            (parking_case, "before", snapshot_block()["sha256"], parking["incident_id"], parking["event_id"], "system",
             len(TINY_JPEG)),
        ]
        assert s.get(Case, crowd_case).state == "dispatched" and s.get(Case, parking_case).incident_count == 2


def test_the_ingest_transition_row_matches_apply_action(central) -> None:  # type: ignore[no-untyped-def]
    """``apply_action_row`` (the ingest's automatic file and dispatch) changes a case exactly as ``apply_action``
    does and returns the audit row ``apply_action`` would have added."""
    from central.workflow import apply_action, apply_action_row

    def fresh() -> Case:
        return Case(id=7, category="crowd_density", state="reported", dedup_key="k", camera_id="c", zone="z",
                    reported_at=T0, updated_at=T0, due_at=T0, recurrence_count=0, rework_count=0, incident_count=1,
                    title="t")

    sla = central.ingest.sla
    with central.session_factory() as s:
        a, b = fresh(), fresh()
        for action, note in (("file", "auto-filed"), ("dispatch", "auto-dispatched")):
            audit = apply_action(s, a, action, "system", T0, sla, note=note)
            row = apply_action_row(b, action, "system", T0, sla, note=note)
            assert row == {k: getattr(audit, k) for k in row}
        s.expunge_all()
    fields = ("state", "filed_at", "dispatched_at", "stage_started_at", "stage_deadline_at", "updated_at")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


def test_crowd_incident_is_auto_dispatched(central) -> None:  # type: ignore[no-untyped-def]
    r = central.send(incident_payload(type="crowd_density", zone="plaza", position=None))
    with central.session_factory() as s:
        case = s.get(Case, r.case_id)
        assert case.state == "dispatched" and case.department == "public_security"
        assert case.dispatched_at == T0
        # calendar unit: 0.25 h dispatch limit was used up instantly, handle stage runs 1 calendar hour
        assert case.stage_deadline_at == T0 + timedelta(hours=1)


def test_silenced_incident_is_stored_but_opens_no_case(central) -> None:  # type: ignore[no-untyped-def]
    with central.session_factory() as s:
        create_silence(
            s,
            category="street_vending",
            zone="market-lane",
            starts_at=T0 - timedelta(hours=1),
            ends_at=T0 + timedelta(hours=2),
            now=T0,
            reason="permitted night market",
            created_by="op",
        )
        s.commit()
    r = central.send(incident_payload(type="street_vending", zone="market-lane"))
    assert r.outcome == "silenced" and r.case_id is None
    # other zones and other categories are not silenced
    assert central.send(incident_payload(type="street_vending", zone="other-lane")).case_created
    assert central.send(incident_payload(type="illegal_parking", zone="market-lane")).case_created
    # after the window the same zone opens cases again
    later = T0 + timedelta(hours=3)
    assert central.send(incident_payload(type="street_vending", zone="market-lane", at=later)).case_created
    with central.session_factory() as s:
        silenced = s.scalars(select(Incident).where(Incident.silenced.is_(True))).all()
        assert len(silenced) == 1 and silenced[0].case_id is None
    assert count(central, Case) == 3


def test_edge_status_heartbeat_and_crowd_figures(central) -> None:  # type: ignore[no-untyped-def]
    status = {"edge_id": "edge-test-01", "state": "online", "at": "2026-11-23T02:00:00Z", "version": "0.1.0"}
    hb = {
        "edge_id": "edge-test-01",
        "at": "2026-11-23T02:00:30Z",
        "uptime_s": 30,
        "cameras": [{"id": "cam-1", "name": "Gate", "state": "ok", "fps": 9.5}],
        "counters": {},
        "outbox": {"pending": 0},
    }
    crowd1 = {
        "edge_id": "edge-test-01",
        "camera_id": "cam-1",
        "zone": "plaza",
        "at": "2026-11-23T02:00:10Z",
        "count": 12,
        "density": 0.03,
        "level": "normal",
    }
    crowd_old = {**crowd1, "at": "2026-11-23T01:59:00Z", "count": 99}
    crowd2 = {**crowd1, "at": "2026-11-23T02:00:20Z", "count": 40, "level": "high"}
    assert central.ingest.handle(topic(leaf="status"), json.dumps(status).encode()).outcome == "status"
    assert central.ingest.handle(topic(leaf="heartbeat"), json.dumps(hb).encode()).outcome == "heartbeat"
    for msg in (crowd1, crowd2, crowd_old):
        assert central.ingest.handle(topic(leaf="crowd"), json.dumps(msg).encode()).outcome == "crowd"
    bad = central.ingest.handle(topic(leaf="status"), b'{"state": "sleepy"}')
    assert (bad.outcome, bad.reason) == ("dead_letter", "schema")
    offline = central.ingest.handle(topic(leaf="status"), json.dumps({**status, "state": "offline"}).encode())
    assert offline.outcome == "status"
    with central.session_factory() as s:
        edge = s.get(Edge, "edge-test-01")
        assert edge.state == "offline" and edge.version == "0.1.0" and edge.heartbeat_json["uptime_s"] == 30
        assert s.get(Camera, "cam-1").health_json["fps"] == 9.5
        fig = s.get(CrowdFigure, ("cam-1", "plaza"))
        assert (fig.count, fig.level) == (40, "high")
