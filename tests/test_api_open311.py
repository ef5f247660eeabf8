"""Open311 GeoReport v2 facade: response shapes and field names, filters, pagination and the error format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from central.db import upgrade
from tests.test_api_support import ApiEnv, make_api

REQUEST_FIELDS = {
    "service_request_id", "status", "status_notes", "service_name", "service_code", "description",
    "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
    "address", "address_id", "zipcode", "lat", "long", "media_url",
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ApiEnv]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    e = make_api(url, tmp_path)
    with e.client:
        yield e


def _close(env: ApiEnv, case_id: int) -> None:
    for role, action in (("dispatcher", "dispatch"), ("handler", "start"), ("handler", "feedback"),
                         ("handler", "submit_verification"), ("dispatcher", "verify_pass")):
        r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": action}, headers=env.auth(role))
        assert r.status_code == 200, r.text


def test_services_shape(env: ApiEnv) -> None:
    r = env.client.get("/open311/v2/services.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = r.json()
    assert isinstance(services, list) and len(services) == 3
    for s in services:
        assert set(s) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
        assert s["metadata"] is False and s["type"] == "realtime"
    parking = next(s for s in services if s["service_code"] == "illegal_parking")
    assert parking["service_name"] == "Illegally parked motor vehicle" and parking["group"] == "traffic_police"


def test_requests_shape_filters_and_single(env: ApiEnv) -> None:
    open_id = env.new_case("illegal_parking")
    closed_id = env.new_case("illegal_parking")
    _close(env, closed_id)
    env.new_case("street_vending")
    r = env.client.get("/open311/v2/requests.json")
    assert r.status_code == 200
    reqs = r.json()
    assert isinstance(reqs, list) and len(reqs) == 3 and r.headers["x-total-count"] == "3"
    for q in reqs:
        assert set(q) == REQUEST_FIELDS
        assert q["status"] in ("open", "closed")
        requested = datetime.fromisoformat(q["requested_datetime"])
        assert requested.utcoffset() is not None  # the spec requires a time zone
        assert q["lat"] == 22.54 and q["long"] == 114.05 and q["media_url"] is None
    detail = env.client.get(f"/api/v1/cases/{closed_id}", headers=env.auth("viewer")).json()
    closed = next(q for q in reqs if q["service_request_id"] == detail["public_id"])
    assert closed["status"] == "closed" and closed["agency_responsible"] == "traffic_police"
    assert closed["service_code"] == "illegal_parking" and closed["expected_datetime"] is not None

    def ids(**params: str) -> set[str]:
        rr = env.client.get("/open311/v2/requests.json", params=params)
        assert rr.status_code == 200, rr.text
        return {q["service_request_id"] for q in rr.json()}

    assert ids(status="closed") == {detail["public_id"]}
    assert len(ids(status="open")) == 2 and len(ids(status="open,closed")) == 3
    assert len(ids(service_code="street_vending")) == 1
    assert len(ids(service_code="illegal_parking,street_vending")) == 3
    now = env.central.clock.now()
    assert ids(start_date=(now + timedelta(hours=1)).isoformat()) == set()
    assert len(ids(end_date=(now + timedelta(hours=1)).isoformat())) == 3
    assert ids(service_request_id=detail["public_id"], status="open") == {detail["public_id"]}  # others ignored
    pages = [ids(page=str(p), page_size="2") for p in (1, 2)]
    assert len(pages[0]) == 2 and len(pages[1]) == 1 and not pages[0] & pages[1]

    open_public = env.client.get(f"/api/v1/cases/{open_id}", headers=env.auth("viewer")).json()["public_id"]
    one = env.client.get(f"/open311/v2/requests/{open_public}.json")
    assert one.status_code == 200
    body = one.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["service_request_id"] == open_public
    assert body[0]["status"] == "open" and set(body[0]) == REQUEST_FIELDS


def test_open311_error_format(env: ApiEnv) -> None:
    cases = [
        ("/open311/v2/requests/GW-19990101-000001.json", 404),
        ("/open311/v2/requests.json?status=pending", 400),
        ("/open311/v2/requests.json?service_code=potholes", 400),
        ("/open311/v2/requests.json?start_date=yesterday", 400),
        ("/open311/v2/requests.json?start_date=2026-11-01T00:00:00", 400),  # no time zone
        ("/open311/v2/requests.json?page_size=5000", 400),
        ("/open311/v2/requests.json?start_date=2026-11-02T00:00:00Z&end_date=2026-11-01T00:00:00Z", 400),
        ("/open311/v2/nothing.json", 404),
    ]
    for path, status in cases:
        r = env.client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)
        body = r.json()
        assert isinstance(body, list) and len(body) == 1, (path, body)
        assert set(body[0]) == {"code", "description"} and body[0]["code"] == status
        assert isinstance(body[0]["description"], str) and body[0]["description"]
    # Read-only: there is no POST requests.
    r = env.client.post("/open311/v2/requests.json", json={"service_code": "illegal_parking"})
    assert r.status_code == 405 and r.json()[0]["code"] == 405


def test_open311_leaks_no_internal_fields(env: ApiEnv) -> None:
    case_id = env.new_case("illegal_parking", snapshot=True)
    r = env.client.post(f"/api/v1/cases/{case_id}/notes", json={"note": "plate ABC-123, owner phoned"},
                        headers=env.auth("dispatcher"))
    assert r.status_code == 201
    text = env.client.get("/open311/v2/requests.json").text
    assert "ABC-123" not in text and "cam-1" not in text and "evidence" not in text


def test_kpis_and_hotspots_via_api(env: ApiEnv) -> None:
    from central import analytics

    for _ in range(2):
        env.new_case("illegal_parking")
    closed = env.new_case("illegal_parking")
    _close(env, closed)
    env.central.clock.advance(minutes=1)  # the period is [since, now): the closure must lie before now
    h = env.auth("viewer")
    r = env.client.get("/api/v1/kpis", params={"since": "1d"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    now = env.central.clock.now()
    with env.central.session_factory() as s:
        direct = analytics.kpis(s, now - timedelta(days=1), now, None, env.central.clock, config=env.central.config)
    assert body["rows"][0]["incidents"] == direct[0]["incidents"] == 3
    assert body["rows"][0]["closed"] == direct[0]["closed"] == 1
    grouped = env.client.get("/api/v1/kpis", params={"since": "1d", "group_by": "category"}, headers=h).json()
    assert grouped["group_by"] == "category" and len(grouped["rows"]) >= 1
    bad = env.client.get("/api/v1/kpis", params={"group_by": "weather"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "query.group_by"
    hot = env.client.get("/api/v1/hotspots", params={"since": "1d"}, headers=h)
    assert hot.status_code == 200 and "by_zone_hour" in hot.json()
