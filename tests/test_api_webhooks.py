"""Signed webhooks delivered to a real local HTTP receiver (http.server on 127.0.0.1, free port)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from central.config import WebhookConfig
from central.db import upgrade
from central.events import EventBus
from central.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDispatcher, sign, verify_signature
from tests.test_api_support import ApiEnv, make_api

SECRET = "s3cret-hook"


class Receiver:
    """Records (lower-cased headers, body) of each POST; answers the statuses in ``script`` in order, then 200."""

    def __init__(self, script: list[int] | None = None):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script = list(script or [])
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} deliveries, got {len(self.received)}")
                self.cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_sign_and_verify() -> None:
    body = json.dumps({"id": "x", "event": "case.updated", "timestamp": 1_800_000_000, "data": {}}).encode()
    sig = sign(SECRET, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature(SECRET, body, sig, "1800000000", now=1_800_000_010)
    assert not verify_signature("other", body, sig, "1800000000", now=1_800_000_010)
    assert not verify_signature(SECRET, body + b" ", sig, "1800000000", now=1_800_000_010)
    assert not verify_signature(SECRET, body, sig, "1800000000", now=1_800_001_000)  # stale: replay refused
    assert not verify_signature(SECRET, body, sig, "1800000001", now=1_800_000_010)  # header ≠ signed timestamp
    assert not verify_signature(SECRET, body, None)


def test_case_transition_delivers_signed_webhook(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env: ApiEnv = make_api(url, tmp_path, {"webhooks": [{"url": receiver.url, "secret": SECRET,
                                                          "events": ["case.updated"]}]})
    with env.client:  # the lifespan starts the dispatcher
        case_id = env.new_case("street_vending")
        r = env.client.post(f"/api/v1/cases/{case_id}/transitions", json={"action": "file"},
                            headers=env.auth("dispatcher"))
        assert r.status_code == 200
        headers, body = receiver.wait_for(1)[0]
    payload = json.loads(body)
    assert payload["event"] == "case.updated" and payload["data"]["id"] == case_id
    assert payload["data"]["state"] == "filed" and payload["data"]["action"] == "file"
    assert headers["x-gridwatch-event"] == "case.updated"
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()],
                            headers[TIMESTAMP_HEADER.lower()])
    assert headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body)
    # case.created was not subscribed: only the one delivery arrived.
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_retries_on_5xx_then_succeeds_and_gives_up_on_4xx() -> None:
    flaky = Receiver(script=[503, 500])
    hard = Receiver(script=[400])
    bus = EventBus()
    d = WebhookDispatcher(
        [WebhookConfig(url=flaky.url, secret=SECRET), WebhookConfig(url=hard.url, secret=None)],
        backoff_s=0.05, max_attempts=4,
    )
    d.attach(bus)
    d.start()
    try:
        bus.publish("case.created", {"id": 1, "state": "reported"})
        got = flaky.wait_for(3)
        bodies = {b for _, b in got}
        assert len(bodies) == 1  # the same signed body is retried, not rebuilt
        assert hard.wait_for(1)[0][0].get(SIGNATURE_HEADER.lower()) is None  # no secret → unsigned
        deadline = time.monotonic() + 5
        while (d.stats.delivered, d.stats.failed) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (d.stats.delivered, d.stats.failed, d.stats.retried) == (1, 1, 2)
        time.sleep(0.3)
        assert len(hard.received) == 1  # 400 is permanent: no retry
    finally:
        d.stop()
        flaky.close()
        hard.close()


def test_unreachable_receiver_and_bounded_queue() -> None:
    bus = EventBus()
    d = WebhookDispatcher([WebhookConfig(url="http://127.0.0.1:9/nothing", secret=SECRET)], max_queue=5,
                          max_attempts=1, timeout_s=0.5)
    d.attach(bus)  # not started: the queue fills up and drops the oldest, publish never blocks
    t0 = time.monotonic()
    for i in range(50):
        bus.publish("case.updated", {"id": i})
    assert time.monotonic() - t0 < 1.0
    assert d.pending() == 5 and d.stats.dropped == 45
    d.start()
    deadline = time.monotonic() + 10
    while d.stats.failed < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    d.stop()
    assert d.stats.failed == 5 and d.stats.delivered == 0 and "Error" in (d.stats.last_error or "")
