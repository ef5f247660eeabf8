"""Auth: every write endpoint × role → expected status (401 without/with a bad token, 403 for the wrong role)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from central.db import ApiToken, DeadLetter, upgrade
from tests.test_api_support import TINY_PNG, ApiEnv, make_api

CALLERS = (None, "invalid", "viewer", "dispatcher", "handler", "admin")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    tmp = tmp_path_factory.mktemp("api_auth")
    url = f"sqlite:///{tmp / 'central.db'}"
    upgrade(url)
    env = make_api(url, tmp)
    with env.client:
        yield env


def _request(env: ApiEnv, name: str, role: str | None):  # type: ignore[no-untyped-def]
    """Perform the write called ``name`` on a fresh object with the caller's token; returns the response."""
    c, h = env.client, env.auth(role)
    if name == "transition:file":  # street_vending opens as 'reported'
        return c.post(f"/api/v1/cases/{env.new_case('street_vending')}/transitions", json={"action": "file"}, headers=h)
    if name == "transition:start":  # crowd_density is auto-dispatched
        return c.post(f"/api/v1/cases/{env.new_case('crowd_density')}/transitions", json={"action": "start"},
                      headers=h)
    if name == "transition:reject":
        return c.post(f"/api/v1/cases/{env.new_case('street_vending')}/transitions",
                      json={"action": "reject", "note": "permitted market"}, headers=h)
    if name == "note":
        return c.post(f"/api/v1/cases/{env.new_case()}/notes", json={"note": "checked on site"}, headers=h)
    if name == "attachment":
        return c.post(f"/api/v1/cases/{env.new_case()}/attachments", files={"file": ("x.png", TINY_PNG, "image/png")},
                      headers=h)
    if name == "silence:create":
        return c.post("/api/v1/silences", json={"category": "street_vending", "zone": "market", "duration_h": 2},
                      headers=h)
    if name == "silence:delete":
        created = c.post("/api/v1/silences", json={"category": "street_vending", "zone": "m2", "duration_h": 1},
                         headers=env.auth("admin"))
        assert created.status_code == 201, created.text
        return c.delete(f"/api/v1/silences/{created.json()['id']}", headers=h)
    if name == "dead-letters":
        return c.get("/api/v1/dead-letters", headers=h)
    if name == "read:cases":
        return c.get("/api/v1/cases", headers=h)
    raise AssertionError(name)


#            endpoint            none invalid viewer dispatcher handler admin
TABLE: dict[str, tuple[int, ...]] = {
    "transition:file":   (401, 401, 403, 200, 403, 200),
    "transition:reject": (401, 401, 403, 200, 403, 200),
    "transition:start":  (401, 401, 403, 403, 200, 200),
    "note":              (401, 401, 403, 201, 201, 201),
    "attachment":        (401, 401, 403, 201, 201, 201),
    "silence:create":    (401, 401, 403, 201, 403, 201),
    "silence:delete":    (401, 401, 403, 204, 403, 204),
    "dead-letters":      (401, 401, 403, 403, 403, 200),
    "read:cases":        (401, 401, 200, 200, 200, 200),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_endpoint_role_table(env: ApiEnv, name: str) -> None:
    got = tuple(_request(env, name, role).status_code for role in CALLERS)
    assert got == TABLE[name], f"{name}: roles {CALLERS} gave {got}, expected {TABLE[name]}"


def test_401_has_www_authenticate_and_error_body(env: ApiEnv) -> None:
    r = env.client.post("/api/v1/cases/1/transitions", json={"action": "file"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == {"detail": "missing API token: send 'Authorization: Bearer <token>'", "code": "unauthorized"}
    r = env.client.get("/api/v1/cases", headers=env.auth("invalid"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = env.client.get("/api/v1/cases", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


def test_403_names_role_and_action(env: ApiEnv) -> None:
    case_id = env.new_case("street_vending")
    r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": "file"}, headers=env.auth("viewer"))
    assert r.status_code == 403
    body = r.json()
    assert body["code"] == "forbidden" and "'viewer'" in body["detail"] and "'file'" in body["detail"]


def test_revoked_token_is_refused(env: ApiEnv) -> None:
    from central.tokens import create_token

    with env.central.session_factory() as s:
        plaintext, row = create_token(s, "soon-revoked", "dispatcher")
        s.commit()
        token_id = row.id
    h = {"Authorization": f"Bearer {plaintext}"}
    assert env.client.get("/api/v1/me", headers=h).status_code == 200
    with env.central.session_factory() as s:
        s.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=datetime.now(UTC)))
        s.commit()
    assert env.client.get("/api/v1/me", headers=h).status_code == 401


def test_me_reports_role_and_actions(env: ApiEnv) -> None:
    me = env.client.get("/api/v1/me", headers=env.auth("handler")).json()
    assert me["role"] == "handler" and me["name"] == "test-handler"
    assert set(me["actions"]) == {"start", "feedback", "submit_verification"}
    viewer = env.client.get("/api/v1/me", headers=env.auth("viewer")).json()
    assert viewer["actions"] == [] and viewer["can_write"] is False


def test_tokens_are_stored_hashed(env: ApiEnv) -> None:
    from sqlalchemy import select

    with env.central.session_factory() as s:
        hashes = set(s.scalars(select(ApiToken.token_hash)))
    assert not (set(env.tokens.values()) & hashes)
    assert all(len(h) == 64 for h in hashes)


def test_dead_letters_listed_for_admin(env: ApiEnv) -> None:
    env.central.ingest.handle("gridwatch/v1/edge-test-01/incidents", b"{not json")
    body = env.client.get("/api/v1/dead-letters", headers=env.auth("admin")).json()
    assert body["total"] >= 1
    assert body["items"][0]["reason"] == "malformed_json" and body["items"][0]["payload_preview"] == "{not json"
    with env.central.session_factory() as s:
        assert s.query(DeadLetter).count() == body["total"]


def test_last_used_at_recorded_but_not_rewritten_every_request(env: ApiEnv) -> None:
    from sqlalchemy import select

    from central.tokens import create_token

    with env.central.session_factory() as s:
        plaintext, row = create_token(s, "usage", "viewer")
        s.commit()
        token_id = row.id

    def last_used() -> datetime | None:
        with env.central.session_factory() as s:
            return s.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))

    assert last_used() is None
    h = {"Authorization": f"Bearer {plaintext}"}
    env.client.get("/api/v1/me", headers=h)
    first = last_used()
    assert first is not None
    env.client.get("/api/v1/me", headers=h)
    assert last_used() == first  # within a minute: reads stay reads
