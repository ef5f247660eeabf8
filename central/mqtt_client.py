"""paho's ``Client`` with a receive path and acknowledgements fit for thousands of messages per second.

Stock paho reads each packet with three or four ``recv`` calls (one byte of command, one per byte of remaining
length, then the rest) and one ``select`` per packet, and queues each PUBACK as its own packet with a wake-up write
to its socket pair. Every one of those system calls releases and retakes the GIL that the ingest worker needs for
filing, so at full throughput the two threads hand the GIL back and forth several times per message (a profile of
``tools/bench_central.py`` showed it: docs/benchmarks.md). ``IngestClient`` changes two things and nothing in the
protocol:

- **Reads** go through ``_ReadBuffer``, a socket wrapper that asks the kernel for up to 256 KiB at once and serves
  paho's small reads from that buffer; ``pending()`` (which paho already honours for TLS sockets) reports the
  buffered bytes, so ``select`` does not wait while whole packets are buffered, and ``loop_read`` handles up to
  ``READ_BURST`` buffered packets per call instead of one.
- **Acknowledgements**: ``ack_many(mids)`` queues the PUBACKs of a whole committed batch as one write (the same
  4-byte MQTT v5 PUBACK packets ``ack`` sends, reason code omitted = success), with one wake-up instead of one per
  message. The broker cannot tell the difference: TCP is a byte stream.

Both rely on paho internals (``_create_socket``, ``_packet_queue``, ``_sock``) that paho 2.1-2.2 have; should a
later paho lack them, ``buffered_reads``/``batched_acks`` are False and the stock behaviour is used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 256 * 1024
READ_BURST = 256  # buffered packets handled per loop_read call: then paho's loop writes (acks, PINGREQ) and selects
_PUBACK = 0x40


class _ReadBuffer:
    """A socket whose ``recv`` is served from a buffer filled ``READ_CHUNK`` bytes at a time; everything else is the
    wrapped socket's. ``pending()`` counts the buffered bytes (plus a TLS socket's own)."""

    def __init__(self, sock: Any):
        self._inner = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._inner.recv(max(n, READ_CHUNK))  # raises BlockingIOError (or SSLWant*) like the socket
            if len(data) <= n:
                self._buf, self._pos = b"", 0
                return data  # also b"": the connection is closed
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(len(self._buf), start + n)
        out = self._buf[start:self._pos]  # (the whole buffer: the same object, no copy)
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = getattr(self._inner, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

    def fileno(self) -> int:
        return int(self._inner.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class IngestClient(mqtt.Client):
    """``mqtt.Client`` with buffered reads and ``ack_many`` (see the module docstring)."""

    buffered_reads = hasattr(mqtt.Client, "_create_socket") and hasattr(mqtt.Client, "_sock_recv")
    batched_acks = hasattr(mqtt.Client, "_packet_queue")

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if not self.buffered_reads or self._transport == "websockets":
            return sock
        return _ReadBuffer(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(READ_BURST):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _ReadBuffer) or not sock.buffered:
                break
            rc = super().loop_read(1)
        return rc

    def ack_many(self, mids: Iterable[int]) -> MQTTErrorCode:
        """PUBACK every QoS 1 message id in ``mids`` with one queued write (manual acknowledgement)."""
        mids = list(mids)
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if not self.batched_acks or len(mids) == 1:
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            for mid in mids:
                rc = self.ack(mid, 1) or rc
            return rc
        packet = b"".join(struct.pack("!BBH", _PUBACK, 2, mid) for mid in mids)
        return self._packet_queue(_PUBACK, packet, 0, 0)  # type: ignore[no-any-return]
