"""Server-sent events through a real uvicorn server: a bus event reaches the client, keep-alive comments flow,
and EventSource-style access works with a signed URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from central.db import upgrade
from tests.test_api_support import ApiEnv, make_api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, env: ApiEnv):
        self.env = env
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(env.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env = make_api(url, tmp_path)
    env.app.state.sse_keepalive_s = 0.3
    with Served(env) as s:
        yield s


def _read_events(resp: httpx.Response, want: int, timeout: float = 5.0) -> list[tuple[str, str]]:
    """Read SSE frames until ``want`` named events arrived; returns (event, data) pairs and keep-alive comments."""
    out: list[tuple[str, str]] = []
    event, data = "", ""
    deadline = time.monotonic() + timeout
    for line in resp.iter_lines():
        if line.startswith(":"):
            out.append(("comment", line))
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            out.append((event, data))
            event, data = "", ""
        if sum(1 for e, _ in out if e != "comment") >= want or time.monotonic() > deadline:
            break
    return out


def test_sse_delivers_bus_events_and_keepalive(served: Served) -> None:
    env = served.env
    case_id = env.new_case("street_vending")
    h = env.auth("viewer")
    with (
        httpx.Client(base_url=served.base, timeout=10) as client,
        client.stream("GET", "/api/v1/stream", headers=h, params={"kinds": "case.updated"}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["content-security-policy"].startswith("default-src 'self'")

        def act() -> None:
            time.sleep(0.8)  # long enough for at least one keep-alive first
            r = httpx.post(f"{served.base}/api/v1/cases/{case_id}/transitions", json={"action": "file"},
                           headers=env.auth("dispatcher"))
            assert r.status_code == 200

        t = threading.Thread(target=act)
        t.start()
        frames = _read_events(resp, want=1)
        t.join()
    named = [(e, d) for e, d in frames if e != "comment"]
    assert named and named[0][0] == "case.updated"
    assert f'"id":{case_id}' in named[0][1] and '"state":"filed"' in named[0][1]
    assert any("keep-alive" in d for e, d in frames if e == "comment")


def test_sse_auth_signed_url_and_ingest_events(served: Served) -> None:
    env = served.env
    with httpx.Client(base_url=served.base, timeout=10) as client:
        assert client.get("/api/v1/stream").status_code == 401
        assert client.get("/api/v1/stream", params={"exp": "1", "sig": "00"}).status_code == 401
        signed = client.get("/api/v1/stream/url", headers=env.auth("viewer")).json()["url"]
        with client.stream("GET", signed) as resp:
            assert resp.status_code == 200

            def ingest() -> None:
                time.sleep(0.3)
                env.new_case("illegal_parking")  # published on the bus by the real ingest path

            t = threading.Thread(target=ingest)
            t.start()
            frames = _read_events(resp, want=2)
            t.join()
    kinds = [e for e, _ in frames if e != "comment"]
    assert kinds[:2] == ["incident.event", "case.created"]
