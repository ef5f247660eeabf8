"""central/mqtt_client.py: buffered reads and one write for a batch's PUBACKs.

- ``_ReadBuffer`` serves paho's small reads (1 byte of command, 1 per length byte, then the rest) from one big
  ``recv``, reports what it holds through ``pending()``, passes "would block" and "closed" through unchanged;
  ``take_packet`` takes whole packets only, and a burst cut by a read arrives whole and in order.
- PUBLISH decoding (one payload copy, no Properties object without properties) gives what paho's own gives, with
  and without properties, for QoS 0 and 1; a truncated packet raises MalformedPacket, which paho's read loop turns
  into a protocol error (a disconnect) instead of a struct.error in its network thread.
- Through a real Mosquitto: every message of a burst arrives intact through the buffered reads, and ``ack_many``
  acknowledges exactly the ids it is given — a persistent session reconnecting gets only the unacknowledged ones
  again, so the durable-delivery contract (ack only after commit) is unchanged.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.mqtt_client import READ_CHUNK, IngestClient, _ReadBuffer
from tests.fixtures.mqtt_packets import frame, publish_body
from tests.polling import wait_until


class _FakeSocket:
    def __init__(self, chunks: list[bytes | type[BaseException]]):
        self.chunks = list(chunks)
        self.asked: list[int] = []

    def recv(self, n: int) -> bytes:
        self.asked.append(n)
        item = self.chunks.pop(0)
        if isinstance(item, type):
            raise item()
        assert len(item) <= n
        return item

    def fileno(self) -> int:
        return 42


def test_small_reads_are_served_from_one_big_recv() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    fake = _FakeSocket([data, BlockingIOError, b""])
    sock = _ReadBuffer(fake)
    assert sock.recv(1) == data[:1]
    assert fake.asked == [READ_CHUNK]  # asked the kernel for a lot once
    assert sock.pending() == len(data) - 1 and sock.buffered == len(data) - 1
    assert sock.recv(1) + sock.recv(2) == data[1:4]
    assert sock.recv(100_000) == data[4:]  # a short read: what is buffered, no further recv
    assert fake.asked == [READ_CHUNK] and sock.pending() == 0
    try:
        sock.recv(1)
        raise AssertionError("expected BlockingIOError")
    except BlockingIOError:
        pass
    assert sock.recv(1) == b""  # closed connection: still an empty read
    assert sock.fileno() == 42


def test_a_read_as_large_as_the_data_returns_it_without_buffering() -> None:
    fake = _FakeSocket([b"abc"])
    sock = _ReadBuffer(fake)
    assert sock.recv(READ_CHUNK * 2) == b"abc"
    assert sock.pending() == 0


class _Subscriber:
    """An IngestClient with a persistent session and manual acknowledgement, as MqttIngest uses it."""

    def __init__(self, port: int, client_id: str, topic: str):
        self.got: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = IngestClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        self.c.on_connect = lambda c, *_: c.subscribe(topic, 1)
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        props.ReceiveMaximum = 1000
        self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, _c: Any, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append(msg)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_burst_arrives_intact_and_ack_many_acknowledges_exactly_its_ids(mosquitto: Any) -> None:
    topic, cid = f"t/{uuid.uuid4().hex[:6]}", f"sub-{uuid.uuid4().hex[:6]}"
    sub = _Subscriber(mosquitto.port, cid, topic)
    assert isinstance(sub.c._sock, _ReadBuffer)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    payloads = {f"m{i}".encode() + bytes([i % 256]) * (i * 37 % 20_000) for i in range(400)}  # 0-20 KB each
    infos = [pub.publish(topic, p, qos=1) for p in sorted(payloads)]
    for info in infos:
        info.wait_for_publish(10)
    # the broker keeps at most max_inflight_messages (100) unacknowledged: hold the first 50 back, acknowledge the
    # rest with ack_many as they come (a batch at a time, as MqttIngest does after each commit)
    done = 50
    deadline = time.monotonic() + 20
    while done < 400 and time.monotonic() < deadline:
        with sub.lock:
            fresh = sub.got[done:]
        if fresh:
            sub.c.ack_many(m.mid for m in fresh)
            done += len(fresh)
        time.sleep(0.05)
    assert done == 400, f"only {done} of 400 messages received"
    assert {bytes(m.payload) for m in sub.got} == payloads  # every packet parsed whole through the buffer
    held = {bytes(m.payload) for m in sub.got[:50]}
    time.sleep(0.5)
    sub.close()

    again = _Subscriber(mosquitto.port, cid, topic)  # same session: the broker redelivers what was not acked
    wait_until(lambda: len(again.got) >= 50, 20, "the 50 unacknowledged messages redelivered")
    time.sleep(0.5)
    assert {bytes(m.payload) for m in again.got} == held
    again.c.ack_many(m.mid for m in again.got)
    time.sleep(0.3)
    again.close()
    third = _Subscriber(mosquitto.port, cid, topic)
    time.sleep(1.0)
    assert third.got == []  # all acknowledged now
    third.close()
    pub.disconnect()
    pub.loop_stop()


def _decoded(client_cls: type[mqtt.Client], header: int, packet: bytes) -> tuple[Any, ...]:
    got: list[mqtt.MQTTMessage] = []
    c = client_cls(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c.on_message = lambda _c, _ud, m: got.append(m)
    c._in_packet = {**c._in_packet, "command": header, "packet": bytearray(packet)}
    assert c._handle_publish() == 0
    (m,) = got
    props = m.properties.json() if m.properties is not None else {}
    return m.topic, bytes(m.payload), m.mid, m.qos, m.dup, m.retain, {k: v for k, v in props.items() if v}


def test_lean_publish_decoding_gives_what_paho_gives() -> None:
    with_props = Properties(PacketTypes.PUBLISH)
    with_props.MessageExpiryInterval = 60
    with_props.UserProperty = [("k", "v")]
    cases = [
        (0x30, publish_body(b"gridwatch/v1/e1/heartbeat", b"{}", 0, 0, None)),  # QoS 0
        (0x32, publish_body(b"gridwatch/v1/e1/incidents", b"x" * 200_000, 1, 4242, None)),  # QoS 1, big
        (0x3B, publish_body(b"t/\xc3\xa9", b"", 1, 65535, with_props)),  # dup + retain, properties, empty payload
        (0x32, publish_body(b"t", bytes(range(256)), 1, 1, with_props)),
    ]
    for header, packet in cases:
        assert _decoded(IngestClient, header, packet) == _decoded(mqtt.Client, header, packet)


def test_lean_publish_refuses_a_truncated_packet() -> None:
    c = IngestClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    # no topic length; no properties length; properties past the end
    for packet in (b"\x00", b"\x00\x01t\x00", b"\x00\x01t\x00\x01\x05"):
        c._in_packet = {**c._in_packet, "command": 0x32, "packet": bytearray(packet)}
        with pytest.raises(MalformedPacket):
            c._handle_publish()


def test_take_packet_takes_only_whole_packets() -> None:
    small = frame(0x32, b"a" * 10)
    big = frame(0x32, b"b" * 300)  # a 2-byte remaining length
    sock = _ReadBuffer(_FakeSocket([small + big + big[:7], big[7:], BlockingIOError]))
    sock.recv(0)  # fills the buffer
    assert sock.take_packet() == (0x32, b"a" * 10)
    assert sock.take_packet() == (0x32, b"b" * 300)
    assert sock.take_packet() is None and sock.buffered == 7  # a partial packet stays for paho's own reader
    assert sock.recv(7) == big[:7] and sock.recv(1000) == big[7:]
    sock = _ReadBuffer(_FakeSocket([b"\x32\xff\xff\xff\xff\x01" + b"x" * 10]))
    sock.recv(0)
    assert sock.take_packet() is None  # five length bytes: paho's reader refuses it as a protocol error


def test_a_burst_split_across_reads_arrives_whole_and_in_order() -> None:
    """The fast path (whole packets from the buffer) and paho's reader (the packet cut by the read) in turn."""
    topic = b"gridwatch/v1/edge-01/incidents"
    payloads = [bytes([i]) * (100 + 1000 * i) for i in range(12)]
    stream = b"".join(frame(0x32, publish_body(topic, p, 1, i + 1, None)) for i, p in enumerate(payloads))
    cut = len(stream) // 2 + 3  # inside a packet
    chunks: list[bytes | type[BaseException]] = [stream[:cut], BlockingIOError, stream[cut:], BlockingIOError]
    got: list[tuple[str, bytes, int]] = []
    c = IngestClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c.on_message = lambda _c, _ud, m: got.append((m.topic, bytes(m.payload), m.mid))
    c._sock = _ReadBuffer(_FakeSocket(chunks))
    for _ in range(10):
        assert c.loop_read() == 0
        if len(got) == len(payloads):
            break
    assert got == [(topic.decode(), p, i + 1) for i, p in enumerate(payloads)]
    c._sock = None
