"""No 5xx from any input, on SQLite and PostgreSQL: a table-driven sweep over every operation in the OpenAPI
document (and the dashboard pages) with hostile path and query values — integers past 2^31 and 2^63, NUL bytes,
lone surrogates and other invalid UTF-8 percent-encoded, LIKE wildcards, dates at the ends of the calendar — and
hostile JSON bodies. Every 4xx must be a status the OpenAPI document declares for the operation, with a body that
matches the declared schema. Bounded: about 2,000 requests per database, each a fixed case (no randomness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from tests.central_support import TINY_JPEG
from tests.test_api_support import ApiEnv, make_api

HOSTILE = [
    "0", "-1", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "1" + "0" * 40, "1e9", "1.5",
    "NaN", "inf", "%00", "a%00b", "%ED%A0%80", "%ED%B0%80x", "%C0%AF", "%FF%FE", "%", "%25", "_", "%5C", "%5C%25",
    "%27%20OR%201%3D1--", "%E2%80%AE", "%EF%BF%BF", "x" * 3000, "%C2%B2", "%EF%BC%91", "0001-01-01T00:00:00%2B14:00",
    "9999-12-31T23:59:59-14:00", "0000-00-00", "99999w", "99999d", "true", "", "%0A%0D", "..%2F..%2Fetc%2Fpasswd",
]  # fmt: skip
# JSON values put into each field of a JSON body (raw JSON text, so NaN / 1e400 / deep nesting can be expressed)
HOSTILE_JSON = [
    '"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udfff x"', "1" + "0" * 30, "-1" + "0" * 30, "1e400", "NaN",
    "-Infinity", '"' + "x" * 5000 + '"', "[" * 5000 + "]" * 5000, "{}", "[]", "null", "true", '"%_\\\\"',
    '"9999-12-31T23:59:59Z"', '"0001-01-01T00:00:00+14:00"', "2147483648",
]
BODY_FIELDS = {
    ("post", "/api/v1/cases/{case_id}/transitions"): {"action": '"dispatch"', "note": '"n"', "squad": '"s"',
                                                      "assignee": '"a"', "department": '"d"', "attachments": "[]"},
    ("post", "/api/v1/cases/{case_id}/notes"): {"note": '"n"', "attachments": "[]"},
    ("post", "/api/v1/silences"): {"category": '"street_vending"', "camera_id": '"c"', "zone": '"z"',
                                   "grid_cell": '"g"', "starts_at": '"2026-11-23T02:00:00Z"', "duration_h": "2",
                                   "reason": '"r"'},
    ("post", "/api/v1/zones/validate"): {"camera_id": '"cam-1"', "zones": "[]"},
    ("post", "/api/v1/zones/save"): {"camera_id": '"cam-1"', "zones": "[]"},
}
DASHBOARD = ["/", "/login", "/queue", "/cases/{case_id}", "/cameras", "/analytics", "/zones"]
NEVER_ENDS = {"/api/v1/stream"}  # a valid request opens an endless event stream


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[ApiEnv]:
    e = make_api(db_url, tmp_path, web=True)
    e.client = TestClient(e.client.app, raise_server_exceptions=False)  # a 500 is a finding, not a crash
    e.new_case()  # case 1 exists, so valid ids reach the database paths too
    with e.client:
        yield e
    e.central.session_factory.kw["bind"].dispose()


class Checker:
    def __init__(self, env: ApiEnv):
        self.env = env
        self.doc = env.client.get("/openapi.json").json()
        self.failures: list[str] = []
        self.count = 0

    def op(self, method: str, template: str) -> dict[str, Any] | None:
        return self.doc["paths"].get(template, {}).get(method)

    def check(self, method: str, template: str, url: str, response: Any) -> None:
        self.count += 1
        status = response.status_code
        where = f"{method.upper()} {url[:160]} → {status}"
        if status >= 500:
            self.failures.append(f"{where}: {response.text[:200]}")
            return
        op = self.op(method, template)
        if op is None or status < 400:
            return
        declared = op.get("responses", {})
        key = str(status) if str(status) in declared else f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in declared \
            else "default" if "default" in declared else None
        if key is None:
            self.failures.append(f"{where}: status not declared in the OpenAPI document ({sorted(declared)})")
            return
        content = declared[key].get("content", {}).get("application/json")
        if content is None:
            return
        schema = {**content["schema"], "components": self.doc.get("components", {})}
        try:
            jsonschema.validate(response.json(), schema)
        except (jsonschema.ValidationError, ValueError) as e:
            self.failures.append(f"{where}: body does not match the declared schema: {str(e)[:200]}")


def _fill(template: str, value: str = "1") -> str:
    out = template
    while "{" in out:
        a, b = out.index("{"), out.index("}")
        out = out[:a] + value + out[b + 1:]
    return out


def test_no_5xx_from_hostile_paths_queries_and_bodies(env: ApiEnv) -> None:
    c = env.client
    chk = Checker(env)
    admin = env.auth("admin")
    operations = [(m, p, op) for p, item in chk.doc["paths"].items() for m, op in item.items()]
    assert len(operations) >= 20
    for method, template, op in operations:
        params = op.get("parameters", [])
        path_params = [p["name"] for p in params if p["in"] == "path"]
        query_params = [p["name"] for p in params if p["in"] == "query"] + ["zzz_unknown"]
        body = BODY_FIELDS.get((method, template))
        headers = admin if template not in NEVER_ENDS else {}
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = "{" + ",".join(f'"{k}": {v}' for k, v in body.items()) + "}"
            kwargs["headers"] = {**headers, "content-type": "application/json"}
        else:
            kwargs["headers"] = headers
        # hostile path values (each path parameter in turn)
        for value in HOSTILE if path_params else []:
            url = _fill(template, value)
            # an empty value makes another URL (…/evidence/ is no route): only "no 5xx" applies there
            chk.check(method, template if value else "", url, c.request(method.upper(), url, **kwargs))
        # hostile query values (GET: every parameter; other methods: an unknown one)
        for name in query_params if method == "get" else ["zzz_unknown"]:
            for value in HOSTILE:
                url = f"{_fill(template)}?{name}={value}"
                chk.check(method, template, url, c.request(method.upper(), url, **kwargs))
        # hostile JSON in every body field
        for field in body or {}:
            for raw in HOSTILE_JSON:
                content = "{" + ",".join(f'"{k}": {raw if k == field else v}' for k, v in body.items()) + "}"
                url = _fill(template)
                json_headers = {**admin, "content-type": "application/json"}
                r = c.request(method.upper(), url, content=content, headers=json_headers)
                chk.check(method, template, f"{url} {field}={raw[:40]}", r)
    for page in DASHBOARD:
        for value in HOSTILE if "{" in page else ["1"]:
            url = _fill(page, value)
            chk.check("get", page, url, c.get(url))
            chk.check("get", page, f"{url}?q=%00", c.get(f"{url}?q=%00"))
    # keys and odd query strings
    for raw_q in ("%00=1", "%ED%A0%80=1", "q", "=", "&&&", "q=1&q=%00", "a=%FF%FF%FF"):
        for path in ("/api/v1/cases", "/open311/v2/requests.json", "/healthz"):
            r = c.get(f"{path}?{raw_q}", headers=admin)
            chk.check("get", path, f"{path}?{raw_q}", r)
    assert chk.count > 1500
    assert chk.failures == [], f"{len(chk.failures)} of {chk.count} requests failed:\n" + "\n".join(chk.failures[:40])


def test_hostile_uploads_are_4xx(env: ApiEnv) -> None:
    c, h = env.client, env.auth("handler")
    chk = Checker(env)
    template = "/api/v1/cases/{case_id}/attachments"
    bodies = [b"", b"\xff\xd8\xff\xe0<html><script>alert(1)</script>", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
              TINY_JPEG[:40], b"GIF89a" + b"\x00" * 50, b"%PDF-1.4\n", b"\x00" * 1000]
    for case_id in ("1", "2147483648", "%00"):
        for data in bodies:
            url = template.replace("{case_id}", case_id)
            chk.check("post", template, url, c.post(url, headers=h, files={"file": ("x.jpg", data, "image/jpeg")}))
        url = template.replace("{case_id}", case_id)
        chk.check("post", template, url, c.post(url, headers=h, data={"kind": "a\x00"},
                                                files={"file": ("x.jpg", TINY_JPEG, "image/jpeg")}))
        broken = c.post(url, headers={**h, "content-type": "multipart/form-data; boundary=zz"}, content=b"--zz\r\nbad")
        chk.check("post", template, url, broken)
    assert chk.failures == [], "\n".join(chk.failures)


def test_like_wildcards_in_q_are_literal(env: ApiEnv) -> None:
    h = env.auth("viewer")
    env.new_case(zone="north_gate")
    env.new_case(zone="100%-east")
    env.new_case(zone="back\\slash")
    env.new_case(zone="northXgate")

    def zones(q: str) -> set[str]:
        r = env.client.get("/api/v1/cases", params={"q": q}, headers=h)
        assert r.status_code == 200, r.text
        return {c["zone"] for c in r.json()["items"]}

    total = env.client.get("/api/v1/cases", headers=h).json()["total"]
    assert total == 5
    assert zones("%") == {"100%-east"}
    assert zones("_") == {"north_gate"}
    assert zones("\\") == {"back\\slash"}
    assert zones("h_g") == {"north_gate"}  # '_' is not "any character": northXgate does not match
    assert zones("north%gate") == set()
    assert zones("0%-e") == {"100%-east"}
    assert zones("%%") == set()


def test_nul_and_invalid_text_are_422_naming_the_parameter(env: ApiEnv) -> None:
    h = env.auth("viewer")
    for url, loc in (("/api/v1/cases?q=a%00b", "query.q"), ("/api/v1/cases?camera_id=%ED%A0%80", "query.camera_id"),
                     ("/api/v1/cases/1%00", "path")):
        r = env.client.get(url, headers=h)
        assert r.status_code == 422, (url, r.text)
        body = r.json()
        assert body["code"] == "validation_error" and body["errors"][0]["loc"] == loc, body
    r = env.client.get("/open311/v2/requests.json?service_request_id=%00")
    assert r.status_code == 400 and r.json()[0]["code"] == 400
    r = env.client.get("/api/v1/cases/2147483648", headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "path.case_id"
    r = env.client.post("/api/v1/cases/1/notes", headers=env.auth("dispatcher"), json={"note": "a\x00b"})
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
