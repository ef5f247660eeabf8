"""Per-message costs of central's receive path, in this process (no broker, no database):

  .venv/bin/python tools/bench_receive.py [--packets 20000] [--rounds 5]

- **packet read**: a buffer of 900-byte QoS 1 PUBLISH packets through ``IngestClient.loop_read`` (what paho's network
  thread runs), the fast path off (paho's reader: a call per command byte, per length byte and per body, and paho's
  delivery, which matches the topic against per-topic callbacks) and on (whole packets taken from the buffer,
  ``on_message`` called directly), rounds alternating; µs per packet.
- **text check**: the NUL / lone-surrogate check on an 11 KB base64 snapshot string, the regex ingest used before
  against ``edge_messages.bad_text``; µs per string.
- **classification**: ``MessageParser.parse`` of every kind of tests/hostile_incidents.py (mean) and of a valid
  event, built on the bench's small "updated" event (what tools/bench_central.py floods with) and on its "opened"
  event with an 8 KB snapshot; µs per message.
- **pipe**: pickling and unpickling a classified message as ``mqtt.receiver: process`` sends it to the filer.

Medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from central.mqtt_client import IngestClient, _ReadBuffer  # noqa: E402

TOPIC = "gridwatch/v1/bench-edge-00/incidents"


class _OneRead:
    """A socket that returns the whole stream on the first recv, then would block."""

    def __init__(self, data: bytes):
        self.data: bytes | None = data

    def recv(self, _n: int) -> bytes:
        if self.data is None:
            raise BlockingIOError
        data, self.data = self.data, None
        return data

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def packet_read_us(stream: bytes, n: int, fast: bool) -> float:
    got = 0

    def on_message(*_: Any) -> None:
        nonlocal got
        got += 1

    c = IngestClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c.fast_reads = fast
    c._filtered_callbacks = not fast  # off: paho's delivery too, which matches the topic against per-topic callbacks
    c.on_message = on_message
    c._sock = _ReadBuffer(_OneRead(stream))
    t = time.perf_counter()
    while got < n and c.loop_read() == 0 and c._sock.buffered:
        pass
    dt = time.perf_counter() - t
    c._sock = None
    if got != n:
        raise RuntimeError(f"{got} of {n} packets read")
    return dt / n * 1e6


def per_call_us(fn: Any, arg: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from central.config import CentralConfig
    from central.edge_messages import bad_text
    from central.ingest_parse import MessageParser
    from tests.fixtures.mqtt_packets import frame, publish_body
    from tests.hostile_incidents import hostile
    from tools.bench_central import incident_events

    med = statistics.median
    print(f"bench_receive: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, medians of {args.rounds}")

    stream = b"".join(frame(0x32, publish_body(TOPIC.encode(), b"x" * 900, 1, i % 65535 + 1))
                      for i in range(args.packets))
    slow, fast = [], []
    for _ in range(args.rounds):
        slow.append(packet_read_us(stream, args.packets, fast=False))
        fast.append(packet_read_us(stream, args.packets, fast=True))
    print(f"packet read, 900-byte PUBLISH: paho's reader and delivery {med(slow):.2f} µs, fast path "
          f"{med(fast):.2f} µs per packet")

    snapshot = base64.b64encode(os.urandom(8000)).decode()
    old = re.compile("[\x00\ud800-\udfff]").search
    regex = [per_call_us(old, snapshot, 2000) for _ in range(args.rounds)]
    new = [per_call_us(bad_text, snapshot, 2000) for _ in range(args.rounds)]
    print(f"text check, {len(snapshot) // 1000} KB base64 string: regex {med(regex):.2f} µs, bad_text "
          f"{med(new):.2f} µs")

    parser = MessageParser(CentralConfig.model_validate({"database_url": "sqlite://"}))
    events = incident_events("bench-edge-00", 0, datetime.now(UTC))
    for name, base in (("updated event (the bench's flood)", events[1]), ("opened event, 8 KB snapshot", events[0])):
        bad = [raw for _, _, raw in hostile(base)]
        valid = json.dumps(base).encode()
        parser.parse(TOPIC, valid)  # compiled validators
        bad_us = [statistics.mean(per_call_us(lambda r: parser.parse(TOPIC, r), raw, 50) for raw in bad)
                  for _ in range(args.rounds)]
        valid_us = [per_call_us(lambda r: parser.parse(TOPIC, r), valid, 500) for _ in range(args.rounds)]
        print(f"classification, {name}: malformed {med(bad_us):.1f} µs (mean of {len(bad)} kinds), valid "
              f"{med(valid_us):.1f} µs")

    items = [(TOPIC, raw, parser.parse(TOPIC, raw)) for raw in (json.dumps(e).encode() for e in events)]
    dumps = [per_call_us(lambda x: pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), items, 2000) / len(items)
             for _ in range(args.rounds)]
    data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    loads = [per_call_us(pickle.loads, data, 2000) / len(items) for _ in range(args.rounds)]
    print(f"pipe, a classified valid message: pickle {med(dumps):.1f} µs, unpickle {med(loads):.1f} µs")


if __name__ == "__main__":
    main()
