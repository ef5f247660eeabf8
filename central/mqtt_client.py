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
- **Whole packets** in that buffer are taken from it in one slice (``_ReadBuffer.take_packet``) and handled, where
  paho reads the command byte, each byte of the remaining length and the body with a call each and appends the body
  to a bytearray; with no per-topic callbacks, ``on_message`` is called without matching the topic against them.
  Together 8.9 → 5.0 µs per 900-byte PUBLISH (``tools/bench_receive.py``).
- **PUBLISH packets** are decoded with one copy of the payload (paho's ``decode_publish`` copies the packet with
  ``struct.unpack`` three or four times over, 200 KB each for a 200 KB message) and no ``Properties`` object when the
  packet carries no properties (what Mosquitto forwards for our edges); QoS 2 and MQTT 3 packets take paho's path.
- **Acknowledgements**: ``ack_many(mids)`` queues the PUBACKs of a whole committed batch as one write (the same
  4-byte MQTT v5 PUBACK packets ``ack`` sends, reason code omitted = success), with one wake-up instead of one per
  message. The broker cannot tell the difference: TCP is a byte stream.

All of them rely on paho internals (``_create_socket``, ``_sock``, ``_in_packet``, ``_packet_read``,
``_packet_handle``, ``_handle_publish``, ``_handle_on_message``, ``_packet_queue``) that paho 2.1-2.2 have; should a
later paho lack them, ``buffered_reads``/``fast_reads``/``lean_publish``/``batched_acks`` are False and the stock
behaviour is used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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

    def take_packet(self) -> tuple[int, bytes] | None:
        """(command byte, rest of the packet) of the next MQTT packet if it is all in the buffer, else None (nothing
        taken: paho's reader then reads it, the socket included). A remaining length of more than 4 bytes is left to
        paho's reader too, which refuses it."""
        buf, start = self._buf, self._pos
        n = len(buf)
        length, shift, i = 0, 0, start + 1
        while True:
            if i >= n or i - start > 4:
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 127) << shift
            shift += 7
            if not byte & 128:
                break
        end = i + length
        if end > n:
            return None
        if end == n:
            self._buf, self._pos = b"", 0
        else:
            self._pos = end
        return buf[start], buf[i:end]

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
    lean_publish = all(hasattr(mqtt.Client, a) for a in ("_handle_publish", "_handle_on_message", "_send_puback"))
    fast_reads = buffered_reads and all(hasattr(mqtt.Client, a) for a in ("_packet_read", "_packet_handle",
                                                                          "_loop_rc_handle"))

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
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)  # type: ignore[no-any-return]
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return rc

    def _packet_read(self) -> MQTTErrorCode:
        """A packet that is whole in the read buffer is handled straight from it; anything else as paho does."""
        sock = self._sock
        if not self.fast_reads or not isinstance(sock, _ReadBuffer) or self._in_packet["command"] != 0:
            return super()._packet_read()  # type: ignore[no-any-return]
        taken = sock.take_packet()
        if taken is None:
            return super()._packet_read()  # type: ignore[no-any-return]
        command, body = taken
        self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": len(body), "packet": body, "to_process": 0, "pos": 0}
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc  # type: ignore[no-any-return]

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered_callbacks = True
        super().message_callback_add(sub, callback)

    def _deliver(self, message: mqtt.MQTTMessage) -> None:
        """``on_message(message)`` as paho's ``_handle_on_message`` calls it, without matching the topic against
        per-topic callbacks when there are none (a generator walk of the topic tree per message)."""
        if getattr(self, "_filtered_callbacks", False):
            self._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if not self.lean_publish or qos == 2 or self._protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()  # type: ignore[no-any-return]
        packet = self._in_packet["packet"]
        n = len(packet)
        with memoryview(packet) as view:
            if n < 3:
                raise MalformedPacket("PUBLISH shorter than its topic length")
            pos = 2 + int.from_bytes(view[0:2], "big")
            topic = bytes(view[2:pos])
            mid = 0
            if qos:
                mid = int.from_bytes(view[pos:pos + 2], "big")
                pos += 2
            props_len, shift, i = 0, 0, pos  # properties length: a variable byte integer
            while True:
                if i >= n or i - pos >= 4:
                    raise MalformedPacket("PUBLISH properties length is truncated or too long")
                byte = view[i]
                i += 1
                props_len |= (byte & 127) << shift
                shift += 7
                if not byte & 128:
                    break
            end = i + props_len
            if end > n:
                raise MalformedPacket("PUBLISH properties run past the packet")
            properties = None
            if props_len:
                properties = Properties(PacketTypes.PUBLISH)
                properties.unpack(bytes(view[pos:end]))
            payload = bytes(view[end:])
        message = mqtt.MQTTMessage(mid=mid, topic=topic)
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = properties
        message.payload = payload
        message.timestamp = mqtt.time_func()
        self._deliver(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)  # type: ignore[no-any-return]
        return MQTTErrorCode.MQTT_ERR_SUCCESS

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
