"""Field reports become cases (catalogue category, photo, position or grid cell, note); the command-center, map and
report pages render under the CSP."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from central.db import CaseAudit, CaseEvidence
from tests.test_api_support import TINY_PNG, make_api
from tests.test_command_grid import GRID
from tests.test_dashboard_pages import Shell

CATALOGUE = {"entries": [
    {"code": "A-01-03", "class": "A", "name": "Motor vehicle parked illegally", "name_zh": "机动车乱停放",
     "standard": "Move it on or ticket it.", "incident_types": ["illegal_parking"]},
    {"code": "B-02-01", "class": "B", "name": "Street vending", "incident_types": ["street_vending"]}]}


def test_a_field_report_becomes_a_case(db_url: str, tmp_path: Path) -> None:
    env = make_api(db_url, tmp_path, {"grid": GRID, "catalogue": CATALOGUE,
                                      "routing": [{"category": "street_vending", "squad": "urban-1"}]})
    h = env.auth("handler")
    opts = env.client.get("/api/v1/reports/categories", headers=h).json()["items"]
    assert [(o["code"], o["category"]) for o in opts] == [("A-01-03", "illegal_parking"),
                                                          ("B-02-01", "street_vending"),
                                                          ("crowd_density", "crowd_density")]
    # by position: placed in the cell whose boundary contains it; the cell's team when routing names no squad
    r = env.client.post("/api/v1/reports", headers=h, data={
        "category": "A-01-03", "lat": "22.505", "lon": "114.015", "note": "van on the pavement"},
        files={"photo": ("p.png", TINY_PNG, "image/png")})
    assert r.status_code == 201, r.text
    case = r.json()
    assert (case["category"], case["grid_cell"], case["state"]) == ("illegal_parking", "440305-001-08", "filed")
    assert case["title"].startswith("A-01-03 Motor vehicle parked illegally") and case["snapshot_sha256"]
    assert case["sla"]["stage"] == "dispatch" and case["due_at"]
    assert ("case.created", case["id"]) in [(k, d.get("id")) for k, d in env.central.events]
    with env.central.session_factory() as s:
        ev = s.scalars(select(CaseEvidence).where(CaseEvidence.case_id == case["id"])).all()
        assert [(e.kind, e.content_type) for e in ev] == [("before", "image/jpeg")]  # re-encoded
        audit = s.scalars(select(CaseAudit).where(CaseAudit.case_id == case["id"]).order_by(CaseAudit.id)).all()
        assert [a.action for a in audit] == ["report", "file"]
        assert audit[0].actor.startswith("test-handler#") and "van on the pavement" in audit[0].note
    # by grid cell, no photo: routed by the rules
    r = env.client.post("/api/v1/reports", headers=h, data={"category": "B-02-01", "grid_cell": "440305-002-01"})
    assert r.status_code == 201 and (r.json()["squad"], r.json()["state"]) == ("urban-1", "reported")
    # the loop follows
    svc = env.central.cases()
    svc.transition(r.json()["id"], "file", "ops#1")
    svc.transition(r.json()["id"], "dispatch", "ops#1")
    assert svc.get_case(r.json()["id"]).state == "dispatched"
    # refusals
    bad = [({"category": "nope", "grid_cell": "440305-002-01"}, 422, "category"),
           ({"category": "A-01-03"}, 422, "location"),
           ({"category": "A-01-03", "grid_cell": "C1"}, 422, "not a grid cell"),
           ({"category": "A-01-03", "grid_cell": "zzz"}, 422, "grid_cell"),
           ({"category": "A-01-03", "lat": "95", "lon": "1"}, 422, "lat")]
    for data, status, words in bad:
        r = env.client.post("/api/v1/reports", headers=h, data=data)
        assert r.status_code == status and words in r.text, (data, r.text)
    r = env.client.post("/api/v1/reports", headers=h, data={"category": "A-01-03", "grid_cell": "440305-002-01"},
                        files={"photo": ("x.jpg", b"<html>not an image", "image/jpeg")})
    assert r.status_code == 415 and "photo:" in r.json()["detail"]
    assert env.client.post("/api/v1/reports", headers=env.auth("viewer"),
                           data={"category": "A-01-03", "grid_cell": "440305-002-01"}).status_code == 403


@pytest.mark.parametrize("path", ["/command", "/map", "/report"])
def test_command_pages_render_without_inline_code(tmp_path: Path, path: str) -> None:
    from central.db import upgrade

    db = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(db)
    env = make_api(db, tmp_path, web=True)
    r = env.client.get(path)
    assert r.status_code == 200 and "set-cookie" not in r.headers
    shell = Shell()
    shell.feed(r.text)
    assert shell.problems == [] and not shell.inline_script
    for asset in [s["src"] for s in shell.scripts] + shell.links:
        assert asset.startswith("/static/") and env.client.get(asset).status_code == 200, asset
    assert f'href="{path}"' in r.text  # in the navigation
    assert "geolocation=(self)" in r.headers["permissions-policy"]
