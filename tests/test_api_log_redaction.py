"""Tokens never reach the access log: a real uvicorn server with its access log on, the event stream opened with
``?token=`` (kept working, redacted) and with a one-time ``?ticket=`` from ``POST /api/v1/stream/ticket``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from central.auth import Principal, RedactQuerySecrets, issue_ticket, redact_query_secrets, verify_ticket
from central.db import ApiToken, upgrade
from central.tokens import revoke_token
from tests.test_api_stream import Served
from tests.test_api_support import ApiEnv, make_api


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class LoudServed(Served):
    """Served with uvicorn's access log on (log_level info), as `gridwatch-central serve` runs it."""

    def __init__(self, env: ApiEnv):
        super().__init__(env)
        self.server = uvicorn.Server(uvicorn.Config(env.app, host="127.0.0.1", port=self.port, log_level="info",
                                                   access_log=True, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LoudServed, Capture]]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env = make_api(url, tmp_path)
    env.app.state.sse_keepalive_s = 0.3
    capture = Capture()
    access = logging.getLogger("uvicorn.access")
    with LoudServed(env) as s:
        access.addHandler(capture)
        try:
            yield s, capture
        finally:
            access.removeHandler(capture)


def _open_stream(base: str, url: str, headers: dict[str, str] | None = None) -> int:
    with httpx.Client(base_url=base, timeout=5) as c, c.stream("GET", url, headers=headers or {}) as r:
        if r.status_code == 200:
            next(r.iter_lines())  # the stream really opened
        return r.status_code


def _wait_lines(capture: Capture, n: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(capture.lines) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return capture.lines


def test_query_token_and_ticket_are_not_in_the_access_log(served: tuple[LoudServed, Capture]) -> None:
    s, capture = served
    env = s.env
    token = env.tokens["viewer"]
    assert _open_stream(s.base, f"/api/v1/stream?kinds=case.created&token={token}") == 200

    r = httpx.post(f"{s.base}/api/v1/stream/ticket", headers=env.auth("dispatcher"), timeout=5)
    assert r.status_code == 200, r.text
    body = r.json()
    ticket = body["ticket"]
    assert body["url"] == f"/api/v1/stream?ticket={ticket}" and body["expires_in"] == 60
    assert _open_stream(s.base, body["url"]) == 200
    assert _open_stream(s.base, body["url"]) == 401  # once only
    assert _open_stream(s.base, f"/api/v1/evidence/{'0' * 64}?ticket={ticket}") == 401  # bound to the stream path
    assert _open_stream(s.base, f"/api/v1/stream?ticket={ticket[:-1]}0") == 401  # forged signature

    lines = _wait_lines(capture, 6)
    text = "\n".join(lines)
    assert "/api/v1/stream" in text and "token=***" in text and "ticket=***" in text, text
    assert token not in text and ticket not in text and ticket.split(".")[3] not in text, text


def test_ticket_needs_a_live_token_and_expires(served: tuple[LoudServed, Capture]) -> None:
    s, _ = served
    env = s.env
    with env.central.session_factory() as session:
        admin_id = session.scalar(select(ApiToken.id).where(ApiToken.role == "admin"))
        p = Principal(token_id=admin_id, name="test-admin", role="admin")
        now = time.time()
        expired = issue_ticket(env.app, p, "/api/v1/stream", 60, now=now - 120)
        with pytest.raises(Exception, match="expired"):
            verify_ticket(env.app, session, "/api/v1/stream", expired)
        good = issue_ticket(env.app, p, "/api/v1/stream")
        assert verify_ticket(env.app, session, "/api/v1/stream", good).role == "admin"
        revoked = issue_ticket(env.app, p, "/api/v1/stream")
        assert revoke_token(session, admin_id)
        session.commit()
        with pytest.raises(Exception, match="revoked"):
            verify_ticket(env.app, session, "/api/v1/stream", revoked)
        for junk in ("", "x", "1.2.3", "99999999999.1.a.b", "-1.1.a.b", "1.²³.a.b"):
            with pytest.raises(Exception, match="malformed|invalid"):
                verify_ticket(env.app, session, "/api/v1/stream", junk)
    # a signed-URL principal (no token) cannot get a ticket
    r = httpx.post(f"{s.base}/api/v1/stream/ticket", timeout=5)
    assert r.status_code == 401


def test_redaction_filter_on_a_log_record() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/v1/stream?token=gwc_SECRET&kinds=a&ticket=1.2.n.s", "1.1",
                                200), None)
    assert RedactQuerySecrets().filter(record)
    msg = record.getMessage()
    assert "gwc_SECRET" not in msg and "1.2.n.s" not in msg
    assert "/api/v1/stream?token=***&kinds=a&ticket=***" in msg
    assert redact_query_secrets("/x?sig=abc&exp=1") == "/x?sig=***&exp=1"
    assert redact_query_secrets("/x?stoken=abc") == "/x?stoken=abc"
