"""Security headers on every kind of response, the cross-origin write guard (CSRF), the body-size limit and the
self-hosted docs page (no third-party origins)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.db import upgrade
from central.security import CONTENT_SECURITY_POLICY
from tests.test_api_support import ApiEnv, make_api

EXPECTED_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ApiEnv]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    e = make_api(url, tmp_path, {"max_upload_bytes": 20_000})
    with e.client:
        yield e


def _assert_headers(r) -> None:  # type: ignore[no-untyped-def]
    assert r.headers["content-security-policy"] == EXPECTED_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_security_headers_everywhere(env: ApiEnv) -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP
    c = env.client
    responses = [
        c.get("/api/v1/cases", headers=env.auth("viewer")),
        c.get("/api/v1/cases"),  # 401
        c.get("/api/v1/nothing-here"),  # 404
        c.get("/open311/v2/services.json"),
        c.get("/healthz"),
        c.get("/docs"),
        c.get("/openapi.json"),
        c.post("/api/v1/cases/1/transitions", json={}, headers=env.auth("admin")),  # 422
    ]
    for r in responses:
        _assert_headers(r)
    assert responses[0].headers["cache-control"] == "no-store"
    assert responses[4].json()["status"] == "ok"


def test_dashboard_pages_get_the_same_headers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env = make_api(url, tmp_path, web=True)
    if not env.app.state.web:
        pytest.skip("central.web.routes is not present in this checkout")
    r = env.client.get("/")
    assert r.status_code < 500
    _assert_headers(r)


def test_cross_origin_writes_are_refused(env: ApiEnv) -> None:
    case_id = env.new_case("street_vending")
    url = f"/api/v1/cases/{case_id}/transitions"
    h = env.auth("dispatcher")
    # A page on another site cannot make the browser write, even if it somehow had a token.
    r = env.client.post(url, json={"action": "file"}, headers={**h, "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "cross_origin_refused"
    r = env.client.post(url, json={"action": "file"}, headers={**h, "Origin": "null"})
    assert r.status_code == 403
    # Same origin (TestClient's host is "testserver") and non-browser clients (no Origin) are fine.
    r = env.client.post(url, json={"action": "file"}, headers={**h, "Origin": "http://testserver"})
    assert r.status_code == 200
    # Cookies are never an authentication method: a request with only cookies is 401.
    r = env.client.post(url, json={"action": "dispatch"}, cookies={"token": env.tokens["admin"]})
    assert r.status_code == 401


def test_request_body_limit(env: ApiEnv) -> None:
    h = env.auth("admin")
    big = b"x" * (20_000 + 256 * 1024 + 1)
    r = env.client.post("/api/v1/silences", content=big, headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    _assert_headers(r)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"y" * 10_000

    r = env.client.post("/api/v1/silences", content=chunks(), headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_docs_page_is_self_hosted(env: ApiEnv) -> None:
    html = env.client.get("/docs").text
    assert "<script>" not in html  # no inline script (CSP script-src 'self')
    scripts = re.findall(r'src="([^"]+)"', html) + re.findall(r'href="([^"]+)"', html)
    assert scripts and all(s.startswith("/") for s in scripts), scripts
    js = env.client.get("/docs/docs.js")
    assert js.status_code == 200 and "http" not in js.text
    assert "/api/v1/cases" in env.client.get("/openapi.json").json()["paths"]
