"""Cases API against real databases: the full loop through the API, 409 on an illegal transition, filters and
pagination, notes, attachment limits and type checks, evidence path traversal, validation error format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from central.db import upgrade
from tests.central_support import TINY_JPEG, incident_payload
from tests.test_api_support import TINY_PNG, ApiEnv, make_api


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiEnv]:
    """SQLite and PostgreSQL (db_url is parametrised by central-core's fixture)."""
    env = make_api(db_url, tmp_path)
    with env.client:
        yield env


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[ApiEnv]:
    """SQLite only, for tests about HTTP handling rather than storage."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env = make_api(url, tmp_path, {"max_upload_bytes": 50_000})
    with env.client:
        yield env


def _t(env: ApiEnv, case_id: int, role: str, action: str, **body: object) -> dict:
    r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": action, **body},
                        headers=env.auth(role))
    assert r.status_code == 200, r.text
    return r.json()


def test_full_loop_via_api_and_illegal_transition(api: ApiEnv) -> None:
    env = api
    case_id = env.new_case("illegal_parking", snapshot=True)  # auto-filed by the category rule
    detail = env.client.get(f"/api/v1/cases/{case_id}", headers=env.auth("dispatcher")).json()
    assert detail["state"] == "filed"
    assert detail["before"][0]["sha256"] == hashlib.sha256(TINY_JPEG).hexdigest()
    assert "dispatch" in detail["allowed_actions"] and "start" not in detail["allowed_actions"]
    assert [a["action"] for a in detail["audit"]][:2] == ["report", "file"]

    # Illegal: a filed case cannot be archived → 409 naming the state and the action.
    r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": "archive"},
                        headers=env.auth("admin"))
    assert r.status_code == 409
    assert r.json()["code"] == "illegal_transition"
    assert "'archive'" in r.json()["detail"] and "'filed'" in r.json()["detail"]

    assert _t(env, case_id, "dispatcher", "dispatch", squad="squad-7", note="nearest squad")["state"] == "dispatched"
    env.central.clock.advance(minutes=20)
    assert _t(env, case_id, "handler", "start")["state"] == "in_progress"
    up = env.client.post(f"/api/v1/cases/{case_id}/attachments", files={"file": ("after.png", TINY_PNG, "image/png")},
                         data={"kind": "after"}, headers=env.auth("handler"))
    assert up.status_code == 201, up.text
    sha = up.json()["sha256"]
    # stored as a re-encoded JPEG (central.images): the hash is the stored copy's, not the upload's
    assert up.json()["content_type"] == "image/jpeg" and sha != hashlib.sha256(TINY_PNG).hexdigest()
    assert hashlib.sha256(env.central.store.open(sha)).hexdigest() == sha
    assert _t(env, case_id, "handler", "feedback", note="car towed", attachments=[sha])["state"] == "handled"
    assert _t(env, case_id, "handler", "submit_verification")["state"] == "verifying"
    # verify_fail needs a reason: 422, not a state change.
    r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": "verify_fail"},
                        headers=env.auth("dispatcher"))
    assert r.status_code == 422 and "note" in r.json()["detail"]
    out = _t(env, case_id, "dispatcher", "verify_fail", note="car still there")
    assert out["state"] == "dispatched" and out["rework_count"] == 1
    for role, action in (("handler", "start"), ("handler", "feedback"), ("dispatcher", "submit_verification"),
                         ("dispatcher", "verify_pass"), ("dispatcher", "archive")):
        _t(env, case_id, role, action)
    detail = env.client.get(f"/api/v1/cases/{case_id}", headers=env.auth("viewer")).json()
    assert detail["state"] == "archived" and detail["allowed_actions"] == []
    assert detail["after"] and detail["after"][0]["sha256"] == sha
    steps = [(a["action"], a["from_state"], a["to_state"]) for a in detail["audit"]]
    assert ("verify_fail", "verifying", "dispatched") in steps and steps[-1] == ("archive", "closed", "archived")
    assert any(a["actor"].startswith("test-handler#") for a in detail["audit"])
    assert env.client.get("/api/v1/cases/999999", headers=env.auth("viewer")).status_code == 404


def test_filters_and_pagination(api: ApiEnv) -> None:
    env = api
    ids = [env.new_case("street_vending", camera_id="cam-a", grid_cell="440305-001-01") for _ in range(5)]
    env.central.clock.advance(hours=2)
    ids += [env.new_case("illegal_parking", camera_id="cam-b", grid_cell="440305-002-01") for _ in range(3)]
    h = env.auth("viewer")

    def get(**params: object) -> dict:
        r = env.client.get("/api/v1/cases", params=params, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    everything = get(limit=100)
    assert everything["total"] == 8 and [c["id"] for c in everything["items"]] == sorted(ids, reverse=True)
    assert get(category="street_vending")["total"] == 5
    assert get(camera_id="cam-b")["total"] == 3
    assert get(grid_cell="440305-002")["total"] == 3  # prefix match
    assert get(state="reported")["total"] == 5 and get(state="filed")["total"] == 3
    assert get(state="reported,filed")["total"] == 8
    since = (env.central.clock.now() - timedelta(hours=1)).isoformat()
    assert get(since=since)["total"] == 3
    assert get(until=since)["total"] == 5
    assert get(since="1h")["total"] == 3  # relative
    # street_vending 'file' stage limit is 1 working hour; 2 h later those cases are overdue (Monday 10:00 → 12:00).
    overdue = get(overdue="true")
    assert overdue["total"] == 5 and all(c["sla"]["colour"] == "red" for c in overdue["items"])
    # pagination: 3 pages of 3, no overlap, stable order
    pages = [get(limit=3, offset=o) for o in (0, 3, 6)]
    seen = [c["id"] for p in pages for c in p["items"]]
    assert seen == sorted(ids, reverse=True) and all(p["total"] == 8 for p in pages)
    # keyset pagination gives the same order
    first = get(limit=3)
    second = get(limit=3, before_id=first["next_before_id"])
    assert [c["id"] for c in second["items"]] == seen[3:6]


def test_bad_query_parameters_are_422_with_field_paths(lite: ApiEnv) -> None:
    h = lite.auth("viewer")
    r = lite.client.get("/api/v1/cases", params={"limit": 0}, headers=h)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_error" and body["errors"][0]["loc"] == "query.limit"
    assert "query.limit" in body["detail"]
    r = lite.client.get("/api/v1/cases", params={"state": "nonsense"}, headers=h)
    assert r.status_code == 422 and "query.state" in r.json()["detail"]
    r = lite.client.get("/api/v1/cases", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 422 and "query.since" in r.json()["detail"]
    case_id = lite.new_case()
    r = lite.client.post(f"/api/v1/cases/{case_id}/transitions", json={"note": "no action"},
                         headers=lite.auth("admin"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body.action"
    r = lite.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": "teleport"},
                         headers=lite.auth("admin"))
    assert r.status_code == 422 and "teleport" in r.json()["detail"]


def test_notes(lite: ApiEnv) -> None:
    case_id = lite.new_case()
    r = lite.client.post(f"/api/v1/cases/{case_id}/notes", json={"note": "vendor left at 19:40"},
                         headers=lite.auth("handler"))
    assert r.status_code == 201 and r.json()["action"] == "note"
    detail = lite.client.get(f"/api/v1/cases/{case_id}", headers=lite.auth("viewer")).json()
    assert [n["note"] for n in detail["notes"]] == ["vendor left at 19:40"]
    r = lite.client.post(f"/api/v1/cases/{case_id}/notes", json={"note": ""}, headers=lite.auth("handler"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body.note"
    r = lite.client.post(f"/api/v1/cases/{case_id}/notes", json={"note": "x", "attachments": ["0" * 64]},
                         headers=lite.auth("handler"))
    assert r.status_code == 422 and "not uploaded" in r.json()["detail"]


def test_attachment_size_and_type_checks(lite: ApiEnv) -> None:
    case_id = lite.new_case()
    h = lite.auth("handler")
    url = f"/api/v1/cases/{case_id}/attachments"
    # The type comes from the bytes: a PNG named .jpg with a lying content type is decoded as PNG (and stored as a
    # re-encoded JPEG) …
    r = lite.client.post(url, files={"file": ("photo.jpg", TINY_PNG, "image/jpeg")}, headers=h)
    assert r.status_code == 201 and r.json()["content_type"] == "image/jpeg"
    # … and an HTML file claiming to be a JPEG is refused.
    r = lite.client.post(url, files={"file": ("x.jpg", b"<html><script>alert(1)</script>", "image/jpeg")}, headers=h)
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = lite.client.post(url, files={"file": ("x.gif", b"GIF89a" + b"\0" * 100, "image/gif")}, headers=h)
    assert r.status_code == 415
    r = lite.client.post(url, files={"file": ("empty.png", b"", "image/png")}, headers=h)
    assert r.status_code == 422
    # max_upload_bytes is 50 000 here: one byte over → 413, exactly at the limit → accepted.
    at_limit = TINY_JPEG + b"\0" * (50_000 - len(TINY_JPEG))
    r = lite.client.post(url, files={"file": ("big.jpg", at_limit, "image/jpeg")}, headers=h)
    assert r.status_code == 201, r.text
    r = lite.client.post(url, files={"file": ("big.jpg", at_limit + b"\0", "image/jpeg")}, headers=h)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    # Far over: refused by the body-size middleware before the route reads it.
    r = lite.client.post(url, files={"file": ("huge.jpg", TINY_JPEG + b"\0" * 2_000_000, "image/jpeg")}, headers=h)
    assert r.status_code == 413
    r = lite.client.post(url, files={"file": ("x.png", TINY_PNG, "image/png")}, data={"kind": "before"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body.kind"
    # The stored file name is the hash, never the client's name.
    stored = [p.name for p in Path(lite.central.config.evidence_dir).rglob("*") if p.is_file()]
    assert not any("photo" in n or "big" in n or n.endswith(".jpg") for n in stored)


def test_evidence_download_and_traversal(lite: ApiEnv, tmp_path: Path) -> None:
    case_id = lite.new_case(snapshot=True)
    sha = hashlib.sha256(TINY_JPEG).hexdigest()
    h = lite.auth("viewer")
    r = lite.client.get(f"/api/v1/evidence/{sha}", headers=h)
    assert r.status_code == 200 and r.content == TINY_JPEG and r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert lite.client.get(f"/api/v1/evidence/{sha}").status_code == 401
    # The signed URL in the case view works without a header (for <img src>), and only for that file.
    detail = lite.client.get(f"/api/v1/cases/{case_id}", headers=h).json()
    signed = detail["before"][0]["url"]
    assert lite.client.get(signed).content == TINY_JPEG
    tampered = signed.replace(sha, "f" * 64)
    assert lite.client.get(tampered).status_code == 401
    # A secret file next to the store must never be reachable.
    secret = Path(lite.central.config.evidence_dir).parent / "secret.txt"
    secret.write_text("TOP SECRET")
    attempts = [
        "../secret.txt", "..%2fsecret.txt", "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt", "..%5csecret.txt",
        "%2e%2e", "..", "/etc/passwd", "%2fetc%2fpasswd", "z" * 64, sha[:63], sha + "0", sha.upper()[:-1] + "G",
        "....//....//secret.txt", "%252e%252e%252fsecret.txt",
    ]
    for a in attempts:
        r = lite.client.get(f"/api/v1/evidence/{a}", headers=h)
        assert r.status_code in (400, 404), (a, r.status_code)
        assert b"TOP SECRET" not in r.content and b"root:" not in r.content
    missing = "0" * 64
    r = lite.client.get(f"/api/v1/evidence/{missing}", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "evidence_not_found"
    r = lite.client.get("/api/v1/evidence/not-hex", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "invalid_evidence_id"


def test_health_board_categories_and_silences(lite: ApiEnv) -> None:
    env = lite
    env.central.send(incident_payload(type="street_vending", camera_id="cam-9", zone="gate", snapshot=True))
    ingest = env.central.ingest
    ingest.handle("gridwatch/v1/edge-test-01/heartbeat",
                  json.dumps({"edge_id": "edge-test-01", "at": "2026-11-23T02:00:00Z",
                              "cameras": [{"camera_id": "cam-9", "input_fps": 12.5, "reconnects": 2}]}).encode())
    ingest.handle("gridwatch/v1/edge-test-01/crowd",
                  json.dumps({"edge_id": "edge-test-01", "camera_id": "cam-9", "zone": "plaza", "count": 31,
                              "density": 0.4, "level": "high"}).encode())
    cams = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()
    cam = next(c for c in cams["items"] if c["camera_id"] == "cam-9")
    assert cam["open_incidents"] == 1 and cam["latest_snapshot_sha256"] == hashlib.sha256(TINY_JPEG).hexdigest()
    assert cam["health"]["input_fps"] == 12.5 and cam["edge_online"] is True
    assert cam["crowd"] == [{"zone": "plaza", "at": cam["crowd"][0]["at"], "count": 31, "density": 0.4,
                             "level": "high"}]
    assert env.client.get(cam["latest_snapshot_url"]).status_code == 200
    edges = env.client.get("/api/v1/edges", headers=env.auth("viewer")).json()
    edge = next(e for e in edges["items"] if e["edge_id"] == "edge-test-01")
    assert edge["online"] is True and edge["cameras"] == 1
    env.central.clock.advance(minutes=10)  # silent for 10 minutes → shown offline
    edges = env.client.get("/api/v1/edges", headers=env.auth("viewer")).json()
    assert edges["items"][0]["online"] is False
    cats = env.client.get("/api/v1/categories", headers=env.auth("viewer")).json()
    assert {c["code"] for c in cats["items"]} == {"illegal_parking", "street_vending", "crowd_density"}

    h = env.auth("dispatcher")
    r = env.client.post("/api/v1/silences", json={"category": "street_vending", "camera_id": "cam-9", "zone": "gate",
                                                   "duration_h": 3, "reason": "permitted night market"}, headers=h)
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["created_by"].startswith("test-dispatcher#")
    # The silence is real: a new vending incident there opens no case.
    later = env.central.clock.advance(minutes=5)
    res = env.central.send(incident_payload(type="street_vending", camera_id="cam-9", zone="gate",
                                            position=(0.9, 0.1), at=later))
    assert res.outcome == "silenced" and res.case_id is None
    listed = env.client.get("/api/v1/silences", params={"active": "true"}, headers=h).json()
    assert [s["id"] for s in listed["items"]] == [silence["id"]]
    bad = env.client.post("/api/v1/silences", json={"category": "nope", "zone": "z", "duration_h": 1}, headers=h)
    assert bad.status_code == 422 and "category" in bad.json()["detail"]
    bad = env.client.post("/api/v1/silences", json={"category": "street_vending", "duration_h": 1}, headers=h)
    assert bad.status_code == 422 and "camera_id, zone or grid_cell" in bad.json()["detail"]
    bad = env.client.post("/api/v1/silences", json={"category": "street_vending", "zone": "z"}, headers=h)
    assert bad.status_code == 422 and "ends_at or duration_h" in bad.json()["detail"]
    assert env.client.delete(f"/api/v1/silences/{silence['id']}", headers=h).status_code == 204
    assert env.client.delete(f"/api/v1/silences/{silence['id']}", headers=h).status_code == 404
