"""Server-sent events through a real uvicorn server: a case event reaches the client, keep-alive comments flow,
EventSource-style access works with a signed URL, and a client that reconnects with Last-Event-ID (header, query or
ticket URL) gets exactly the case events it missed."""

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
from central.event_outbox import read_after
from tests.sse import SseFrames
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
        self.server = uvicorn.Server(
            uvicorn.Config(env.app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=2)
        )
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
    return [(e, d) for e, d, _ in _read_frames(resp, want, timeout)]


def _read_frames(
    resp: httpx.Response, want: int, timeout: float = 5.0, linger: float = 0.0
) -> list[tuple[str, str, int | None]]:
    """Like _read_events, with each event's id (None for events without one, and for comments). With ``linger``,
    once ``want`` events are in it reads that many seconds more (keep-alives keep lines coming), to see extras."""
    out: list[tuple[str, str, int | None]] = []
    frames = SseFrames()
    deadline = time.monotonic() + timeout
    got_all: float | None = None
    for line in resp.iter_lines():
        if line.startswith(":"):
            out.append(("comment", line, None))
        elif frame := frames.feed(line):
            out.append(frame)
        if got_all is None and sum(1 for e, _, _ in out if e != "comment") >= want:
            got_all = time.monotonic()
        if (got_all is not None and time.monotonic() - got_all >= linger) or time.monotonic() > deadline:
            break
    return out


def _outbox(env: ApiEnv, after: int = 0) -> list[tuple[int, str]]:
    with env.central.session_factory() as s:
        return [(r.id, r.kind) for r in read_after(s, after)]


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
            r = httpx.post(
                f"{served.base}/api/v1/cases/{case_id}/transitions",
                json={"action": "file"},
                headers=env.auth("dispatcher"),
            )
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


def test_sse_resume_with_last_event_id_returns_exactly_the_missed_events(served: Served) -> None:
    env = served.env
    h = env.auth("viewer")
    with httpx.Client(base_url=served.base, timeout=10) as client:
        with client.stream("GET", "/api/v1/stream", headers=h, params={"kinds": "case.created,case.updated"}) as r:
            threading.Timer(0.3, env.new_case).start()
            (seen,) = [f for f in _read_frames(r, want=1, timeout=15) if f[0] != "comment"]
        assert seen[0] == "case.created" and seen[2] == _outbox(env)[-1][0]
        last = seen[2]
        # while the client is away: two new cases and a transition (3 case events, and live incident events)
        missed_case = env.new_case()
        env.new_case()
        assert (
            env.client.post(
                f"/api/v1/cases/{missed_case}/transitions", json={"action": "file"}, headers=env.auth("dispatcher")
            ).status_code
            == 200
        )
        missed = _outbox(env, last)
        assert [k for _, k in missed] == ["case.created", "case.created", "case.updated"]
        with client.stream("GET", "/api/v1/stream", headers={**h, "Last-Event-ID": str(last)}) as r:
            threading.Timer(0.5, env.new_case).start()  # and one while connected again
            frames = [f for f in _read_frames(r, want=5, timeout=15, linger=1.0) if f[0] != "comment"]
        with_ids = [(eid, e) for e, _, eid in frames if eid is not None]
        new = _outbox(env, missed[-1][0])
        assert [k for _, k in new] == ["case.created"]
        assert with_ids == missed + new  # each missed event once, in order, then the live one
        assert [e for e, _, eid in frames if eid is None] == ["incident.event"]  # live events are not replayed
        # the EventSource way: a ticket URL that resumes (no header)
        t = client.post("/api/v1/stream/ticket", headers=h, params={"last_event_id": missed[0][0]}).json()
        assert t["url"].endswith(f"&last_event_id={missed[0][0]}")
        with client.stream("GET", t["url"]) as r:
            frames = [f for f in _read_frames(r, want=3, timeout=15) if f[0] != "comment"]
        assert [(eid, e) for e, _, eid in frames] == missed[1:] + new
        # a bad id is refused and says why
        r = client.get("/api/v1/stream", headers={**h, "Last-Event-ID": "12abc"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]


def test_sse_resume_too_far_behind_or_unknown_id_gets_resync(served: Served) -> None:
    env = served.env
    st = env.app.state
    st.config = st.config.model_copy(update={"events": st.config.events.model_copy(update={"replay_max": 2})})
    for _ in range(3):
        env.new_case()
    (first, *_), newest = _outbox(env), _outbox(env)[-1][0]
    h = env.auth("viewer")
    with httpx.Client(base_url=served.base, timeout=10) as client:
        for last, reason in ((first[0] - 1, "too_many_missed"), (newest + 50, "unknown_id")):
            with client.stream("GET", "/api/v1/stream", headers={**h, "Last-Event-ID": str(last)}) as r:
                (frame,) = [f for f in _read_frames(r, want=1, timeout=15) if f[0] != "comment"]
            assert frame[0] == "stream.resync" and frame[2] == newest and f'"reason":"{reason}"' in frame[1]
        with client.stream("GET", "/api/v1/stream", headers={**h, "Last-Event-ID": str(newest - 2)}) as r:
            frames = [f for f in _read_frames(r, want=2, timeout=15) if f[0] != "comment"]
        assert [eid for _, _, eid in frames] == [newest - 1, newest]  # within the limit: replayed
        # without an id the stream starts with one (an id-only block: no event, but the client's Last-Event-ID)
        with client.stream("GET", "/api/v1/stream", headers=h) as r:
            lines = []
            for line in r.iter_lines():
                if line == "":
                    break
                lines.append(line)
        assert lines == ["retry: 3000", f"id: {newest}", ": connected"]
