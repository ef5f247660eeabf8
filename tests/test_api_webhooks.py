"""Signed, durable webhooks delivered to a real local HTTP receiver (http.server on 127.0.0.1, free port).

Events come from the database outbox (``central.event_outbox``) and each delivery is a ``webhook_deliveries`` row:
retried with back-off while the receiver refuses connections or answers 5xx, in event order, once per event even
with two dispatchers (two processes) on one database, and across a dispatcher restart."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select, update

from central.config import EventsConfig, WebhookConfig
from central.db import WebhookDelivery, make_engine, make_session_factory, upgrade
from central.event_outbox import record
from central.metrics import CentralMetrics
from central.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    backoff_s,
    sign,
    verify_signature,
)
from tests.polling import wait_until
from tests.test_api_support import ApiEnv, make_api
from tests.test_central_metrics import samples, value

SECRET = "s3cret-hook"
FAST = EventsConfig(
    poll_s=0.05, webhook_backoff_s=0.05, webhook_max_backoff_s=0.2, webhook_attempts=200, webhook_timeout_s=2
)


class Receiver:
    """Records (lower-cased headers, body) of each POST; answers the statuses in ``script`` in order, then 200.
    ``port`` fixes the port (to bring a receiver up where one was down)."""

    def __init__(self, script: list[int] | None = None, port: int = 0):
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} deliveries, got {len(self.received)}")
                self.cond.wait(left)
            return list(self.received)

    def event_ids(self) -> list[int]:
        with self.cond:
            return [int(h[EVENT_ID_HEADER.lower()]) for h, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A free port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def write_events(sf, n: int, kind: str = "case.updated", start: int = 0) -> list[int]:  # type: ignore[no-untyped-def]
    """``n`` case events, one transaction each (as case changes make them); returns their outbox ids."""
    from central.event_outbox import last_id

    ids = []
    for i in range(start, start + n):
        with sf() as s:
            record(s, kind, {"id": 1000 + i, "state": "filed", "n": i})
            s.commit()
            ids.append(last_id(s))
    return ids


def deliveries(sf) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    with sf() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_id)))


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


def test_backoff_doubles_up_to_the_cap() -> None:
    cfg = EventsConfig(webhook_backoff_s=1, webhook_max_backoff_s=600)
    assert [backoff_s(n, cfg) for n in (1, 2, 3, 4, 10, 11, 29)] == [1, 2, 4, 8, 512, 600, 600]


def test_case_transition_delivers_signed_webhook_and_records_it(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    env: ApiEnv = make_api(
        url,
        tmp_path,
        {"webhooks": [{"url": receiver.url, "secret": SECRET, "events": ["case.updated"]}], "events": {"poll_s": 0.1}},
    )
    with env.client:  # the lifespan starts the relay and the dispatcher
        case_id = env.new_case("street_vending")
        r = env.client.post(
            f"/api/v1/cases/{case_id}/transitions", json={"action": "file"}, headers=env.auth("dispatcher")
        )
        assert r.status_code == 200
        headers, body = receiver.wait_for(1)[0]
        sf = env.central.session_factory
        wait_until(lambda: [d.status for d in deliveries(sf)] == ["delivered"], 20, "the delivery record")
    payload = json.loads(body)
    assert payload["event"] == "case.updated" and payload["data"]["id"] == case_id
    assert payload["data"]["state"] == "filed" and payload["data"]["action"] == "file"
    assert headers["x-gridwatch-event"] == "case.updated" and headers["x-gridwatch-attempt"] == "1"
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()], headers[TIMESTAMP_HEADER.lower()])
    (d,) = deliveries(sf)
    assert int(headers[EVENT_ID_HEADER.lower()]) == payload["event_id"] == d.event_id
    assert (d.attempts, d.last_status, d.case_id, d.event) == (1, 200, case_id, "case.updated")
    assert d.delivered_at is not None and d.claimed_by is None
    # case.created (of new_case) was not subscribed: only the one delivery arrived
    time.sleep(0.3)
    assert len(receiver.received) == 1


def test_retries_on_5xx_then_succeeds_and_gives_up_on_4xx(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    sf = make_session_factory(make_engine(url))
    flaky = Receiver(script=[503, 500])
    hard = Receiver(script=[400])
    targets = [WebhookConfig(url=flaky.url, secret=SECRET), WebhookConfig(url=hard.url)]
    d = WebhookDispatcher(sf, targets, FAST)
    for t in targets:
        d.schedule(t)  # first sight: the webhooks start at the newest event (none)
    write_events(sf, 1, "case.created")
    d.start()
    try:
        got = flaky.wait_for(3)
        assert [h["x-gridwatch-attempt"] for h, _ in got] == ["1", "2", "3"]
        assert len({h[EVENT_ID_HEADER.lower()] for h, _ in got}) == 1  # the same event, delivery id too
        assert len({h["x-gridwatch-delivery"] for h, _ in got}) == 1
        assert all(
            verify_signature(SECRET, b, h[SIGNATURE_HEADER.lower()], h[TIMESTAMP_HEADER.lower()]) for h, b in got
        )  # each attempt signed afresh
        assert hard.wait_for(1)[0][0].get(SIGNATURE_HEADER.lower()) is None  # no secret → unsigned
        wait_until(lambda: {x.status for x in deliveries(sf)} == {"delivered", "failed"}, 20, "both outcomes")
    finally:
        d.stop()
        flaky.close()
        hard.close()
    by_hook = {x.webhook: x for x in deliveries(sf)}
    ok, bad = by_hook[targets[0].key], by_hook[targets[1].key]
    assert (ok.status, ok.attempts, ok.last_status) == ("delivered", 3, 200)
    assert (bad.status, bad.attempts, bad.last_status) == ("failed", 1, 400)  # 400 is permanent: no retry
    assert (d.stats.delivered, d.stats.failed, d.stats.retried) == (1, 1, 2)
    assert len(hard.received) == 1


def test_receiver_down_gets_every_event_afterwards_in_order_once(db_url: str) -> None:
    """The receiver refuses connections while events are written; the dispatcher is restarted during the outage
    (another process's owner id); once the receiver is up every event arrives, in order, exactly once."""
    sf = make_session_factory(make_engine(db_url))
    port = closed_port()
    target = WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret=SECRET)
    first = WebhookDispatcher(sf, [target], FAST, owner="process-a")
    first.schedule(target)
    ids = write_events(sf, 10)
    first.start()
    wait_until(lambda: deliveries(sf) and deliveries(sf)[0].attempts >= 3, 20, "a few refused attempts")
    first.stop()
    head = deliveries(sf)[0]
    assert head.status == "pending" and "Connection refused" in (head.last_error or "") and head.last_status is None
    assert head.next_attempt_at is not None and head.claimed_by is None
    ids += write_events(sf, 10, start=10)  # written while no dispatcher runs at all
    metrics = CentralMetrics()
    metrics.bind(session_factory=sf, webhook_keys=[target.key])
    m = samples(metrics.render().decode())
    assert value(m, "gridwatch_webhook_backlog") == 10  # scheduled so far: the next dispatcher adds the rest
    assert value(m, "gridwatch_webhook_pending", webhook=target.key) == 10
    assert value(m, "gridwatch_webhook_oldest_pending_seconds", webhook=target.key) > 0
    assert value(m, "gridwatch_event_outbox_last_id") == ids[-1]
    second = WebhookDispatcher(sf, [target], FAST, owner="process-b")
    second.start()
    time.sleep(0.5)  # still down: the head is retried, nothing behind it goes first
    up = Receiver(port=port)
    try:
        up.wait_for(20, timeout=30)
        wait_until(
            lambda: all(x.status == "delivered" for x in deliveries(sf)) and len(deliveries(sf)) == 20,
            20,
            "all delivered",
        )
        time.sleep(0.3)  # nothing more arrives
        assert up.event_ids() == ids  # in order, once each
    finally:
        second.stop()
        up.close()
        sf.kw["bind"].dispose()
    rows = deliveries(sf)
    assert rows[0].attempts > 3 and rows[0].last_error is None
    assert all(r.attempts == 1 for r in rows[1:])  # behind the head nothing was tried while it failed


def test_two_processes_deliver_each_event_once_in_order(db_url: str, receiver: Receiver) -> None:
    sf = make_session_factory(make_engine(db_url))
    target = WebhookConfig(url=receiver.url)
    a = WebhookDispatcher(sf, [target], FAST, owner="process-a")
    b = WebhookDispatcher(sf, [target], FAST, owner="process-b")
    a.schedule(target)
    a.start()
    b.start()
    try:
        ids = write_events(sf, 30)
        receiver.wait_for(30, timeout=30)
        time.sleep(0.5)
        assert receiver.event_ids() == ids
        assert a.stats.delivered + b.stats.delivered == 30
    finally:
        a.stop()
        b.stop()
    # a lease left by a process that died mid-delivery: nobody sends it until the lease runs out, then one does
    (eid,) = write_events(sf, 1, start=30)
    a.schedule(target)
    with sf() as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_id == eid)
            .values(claimed_by="dead-process", claimed_until=datetime.now(UTC) + timedelta(seconds=1.5))
        )
        s.commit()
    c = WebhookDispatcher(sf, [target], FAST, owner="process-c")
    c.start()
    try:
        time.sleep(0.5)
        assert len(receiver.received) == 30  # still leased to the dead process
        receiver.wait_for(31, timeout=20)
        assert receiver.event_ids()[-1] == eid
    finally:
        c.stop()
        sf.kw["bind"].dispose()
