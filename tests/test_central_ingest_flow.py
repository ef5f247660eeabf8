"""Issue 12: ingest flow control and the parser's safety net.

- ``ReceiveQueue`` (central/receive_queue.py): bounded by messages and bytes; the producer waits for room briefly
  and not at all once the consumer is stalled; ``force_put`` for what must not be lost; ``close`` frees a waiter.
- Through a real Mosquitto: with the database write-locked for longer than 1.5 × keepalive, the receive queue stays
  within its bound, the connection survives (no reconnect), every QoS 1 event is stored once the lock goes and every
  delivered message is accounted for (stored, dead-lettered, or a dropped QoS 0 one).
- Any exception while parsing one message makes that message a ``processing_error`` dead letter; the rest of its
  batch is stored.
"""

from __future__ import annotations

import gc
import queue
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

import central.ingest_parse as ingest_parse
from central.db import DeadLetter, IncidentEvent
from central.mqtt_ingest import MqttIngest
from central.receive_queue import ReceiveQueue
from tests.central_support import encode, incident_payload, make_central, topic

# --------------------------------------------------------------------------- ReceiveQueue


def test_queue_is_bounded_by_count_and_waits_for_room() -> None:
    q: ReceiveQueue[str] = ReceiveQueue(max_items=2, max_bytes=10_000)
    assert q.put("a", 10, wait=1) and q.put("b", 10, wait=1)
    assert not q.put("c", 10, wait=0.2)  # full, nobody takes
    assert q.qsize() == 2 and q.high_water == 2

    threading.Timer(0.3, q.get).start()  # the consumer takes one: the waiting producer gets its room
    assert q.put("c", 10, wait=30)
    assert [q.get_nowait(), q.get_nowait()] == ["b", "c"]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


def test_a_waiting_producer_is_woken_once_a_quarter_of_the_queue_is_free() -> None:
    """Not after every item taken: woken per item, the network thread would take the GIL from the worker once per
    message under a flood (a thread switch each) to queue one message and wait again."""
    q: ReceiveQueue[int] = ReceiveQueue(max_items=8, max_bytes=10_000)
    for i in range(8):
        assert q.put(i, 1, wait=1)
    got: list[bool] = []
    producer = threading.Thread(target=lambda: got.append(q.put(8, 1, wait=60)))
    producer.start()
    time.sleep(0.2)
    q.get_nowait()  # 7 left: room for one, but no burst yet
    time.sleep(0.3)
    assert producer.is_alive() and not got
    q.get_nowait()  # 6 of 8: a quarter free
    producer.join(10)
    assert got == [True] and q.qsize() == 7


def test_queue_is_bounded_by_bytes_and_admits_one_big_item_when_empty() -> None:
    q: ReceiveQueue[str] = ReceiveQueue(max_items=100, max_bytes=100)
    assert q.put("a", 60, wait=1)
    assert not q.put("b", 60, wait=0.1)  # 120 bytes would be over
    assert q.nbytes == 60
    q.get_nowait()
    assert q.put("huge", 500, wait=1)  # bigger than the bound, but alone: it must get through some day
    assert not q.put("small", 1, wait=0.1)
    assert q.nbytes == 500


def test_producer_stops_waiting_once_the_consumer_is_stalled() -> None:
    q: ReceiveQueue[int] = ReceiveQueue(max_items=1, max_bytes=1000)
    q.put(0, 1, wait=1)
    assert not q.put(1, 1, wait=3)  # waited out: the consumer took nothing for 3 s
    t = time.monotonic()
    assert not q.put(2, 1, wait=3)  # still stalled: refused at once, not after another 3 s
    assert time.monotonic() - t < 1.5
    q.force_put(3, 1)  # a message that must not be lost goes in over the bound
    assert q.qsize() == 2 and q.high_water == 2
    q.get_nowait()  # progress: waiting is worth it again
    threading.Timer(0.2, q.get).start()
    assert q.put(4, 1, wait=30)


def test_close_releases_a_waiting_producer() -> None:
    q: ReceiveQueue[int] = ReceiveQueue(max_items=1, max_bytes=1000)
    q.put(0, 1, wait=1)
    got: list[bool] = []
    producer = threading.Thread(target=lambda: got.append(q.put(1, 1, wait=60)))
    producer.start()
    time.sleep(0.1)
    q.close()
    producer.join(10)
    assert got == [False] and not producer.is_alive()
    assert not q.put(2, 1, wait=0)  # closed, even with room
    q.reopen()
    q.get_nowait()
    assert q.put(2, 1, wait=0)


# --------------------------------------------------------------------------- through a real broker


def _publisher(broker: Any) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def test_queue_stays_bounded_and_nothing_is_lost_while_the_database_is_locked(tmp_path: Path, mosquitto: Any) -> None:
    db = tmp_path / "central.db"
    url = f"sqlite:///{db}"
    from central.db import upgrade

    upgrade(url)
    bound = 20
    c = make_central(
        url,
        tmp_path,
        {
            "mqtt": {
                "host": mosquitto.host,
                "port": mosquitto.port,
                "client_id": f"central-{uuid.uuid4().hex[:6]}",
                "keepalive_s": 5,
                "batch_max": 5,
                "queue_max_messages": bound,
            }
        },
    )
    runner = MqttIngest(c.config, session_factory=c.session_factory, ingest=c.ingest)
    runner.start()
    pub = _publisher(mosquitto)
    lock = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        assert runner.wait_subscribed(10)
        lock.execute("BEGIN IMMEDIATE")  # the ingest's next transaction waits (busy_timeout) while we hold it
        held_at = time.monotonic()
        valid = [incident_payload(zone=f"flow-{i}") for i in range(60)]
        infos = [pub.publish(topic(), encode(p), qos=1) for p in valid]
        # QoS 0 junk is not flow-controlled by the broker at all: only central's own bound keeps it out of memory
        junk = [pub.publish(topic(), b"{not json %d" % i, qos=0) for i in range(300)]
        for info in infos + junk:
            info.wait_for_publish(30)
        highest = 0
        while time.monotonic() - held_at < 8.5:  # > 1.5 × keepalive: the broker would drop a client that went quiet
            h = runner.health()
            assert h["queued"] <= bound + h["over_bound"], h
            highest = max(highest, h["queued"])
            time.sleep(0.05)
        h = runner.health()
        assert highest >= bound - 1 and h["queue_high_water"] <= bound + h["over_bound"], (highest, h)
        assert h["over_bound"] <= 5 * bound, h  # extras are QoS 1 the broker still had in flight
        assert h["dropped_qos0"] > 0, h  # the overflow was junk at QoS 0, dropped, not queued
        assert h["connects"] == 1 and runner.connected, h  # keepalive held through the stall
    finally:
        lock.rollback()
        lock.close()
    try:
        deadline = time.monotonic() + 60
        stored = dead = 0
        while time.monotonic() < deadline:
            with c.session_factory() as s:
                stored = s.scalar(select(func.count()).select_from(IncidentEvent))
                dead = s.scalar(select(func.count()).select_from(DeadLetter))
            if stored == len(valid) and stored + dead + runner.stats["dropped_qos0"] >= runner.stats["received"]:
                break
            time.sleep(0.1)
        assert stored == len(valid), (stored, runner.health())  # every QoS 1 event, none lost in the stall
        h = runner.health()
        assert stored + dead + h["dropped_qos0"] == h["received"], h  # every delivered message accounted for
        assert dead == 300 - h["dropped_qos0"] and h["connects"] == 1, h
    finally:
        pub.disconnect()
        pub.loop_stop()
        runner.stop()
        c.session_factory.kw["bind"].dispose()


# --------------------------------------------------------------------------- the parser's safety net


def test_an_exception_while_parsing_one_message_dead_letters_only_that_message(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_central(db_url, tmp_path)
    real = ingest_parse.strip_images

    def buggy(payload: dict[str, Any]) -> dict[str, Any]:  # stands for a bug no check anticipated
        if payload["zone"]["name"] == "poison":
            raise KeyError("boom")
        return real(payload)

    monkeypatch.setattr(ingest_parse, "strip_images", buggy)
    msgs = [(topic(), encode(incident_payload(zone=z))) for z in ("before", "poison", "after")]
    prepared = [c.ingest.prepare(t, p) for t, p in msgs[:2]] + [msgs[2]]  # as the worker does, and unprepared
    results = c.ingest.handle_batch(prepared)
    assert [r.outcome for r in results] == ["applied", "dead_letter", "applied"]
    assert results[1].reason == "processing_error" and "KeyError" in (results[1].detail or "")
    with c.session_factory() as s:
        row = s.scalars(select(DeadLetter)).one()
        assert row.reason == "processing_error" and b"poison" in row.payload  # kept for a look, not lost
        assert s.scalar(select(func.count()).select_from(IncidentEvent)) == 2
    c.session_factory.kw["bind"].dispose()


def test_dead_letter_reasons_keep_no_frames_so_a_batch_is_freed_without_the_collector() -> None:
    """A raised reason used to keep its traceback; its frames reached the caller holding the batch, and the batch
    held the reason: a cycle that kept every payload of the batch until a full collection (RSS grew with a flood)."""
    from central.config import CentralConfig
    from central.ingest_parse import DeadLetterReason, MessageParser
    from tests.hostile_incidents import hostile

    parser = MessageParser(CentralConfig())
    kinds = hostile(incident_payload())

    def fill(batch: list[Any]) -> None:  # as MqttIngest._next_batch: this frame holds the batch the results go into
        for _, _, raw in kinds:
            batch.append((raw, parser.parse(topic(), raw)))

    gc.collect()
    gc.disable()
    try:
        batch: list[Any] = []
        fill(batch)
        assert all(isinstance(r, DeadLetterReason) for _, r in batch)
        gc.set_debug(gc.DEBUG_SAVEALL)
        del batch
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, DeadLetterReason)]
        assert not leaked, [r.reason for r in leaked]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
