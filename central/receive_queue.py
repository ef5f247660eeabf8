"""The bounded hand-over between paho's network thread and the ingest worker (``central.mqtt_ingest``).

Why a bound of our own: the broker's flow control does not bound what reaches central. MQTT v5's Receive Maximum
covers QoS 1/2 only (QoS 0 — heartbeats, crowd figures, anything a misbehaving client sends — is not flow-controlled
at all), and Mosquitto 2.0.11 (Debian's) overshoots it once acknowledgements flow: with Receive Maximum 800 and a
1:1 bad-input flood the ingest held up to ~3,850 unacknowledged messages (docs/reliability.md). Unbounded, that
backlog is RSS.

Why the producer (paho's network thread) waits only briefly: the same thread writes our PUBACKs and keepalive PINGs
and reads the broker's PINGRESPs. Blocked for long it is disconnected (by the broker after 1.5 × keepalive without a
packet, or by paho itself when a PINGRESP is not read within keepalive), and a disconnect makes the broker send the
whole unacknowledged window again. So ``put`` waits for room at most ``wait`` seconds, and not at all once the
consumer has taken nothing for ``wait`` seconds while there was something to take (the worker is stalled: database
down or locked). It then returns False and the caller decides: a QoS 0 message may be dropped (at most once is its
contract), a QoS 1/2 message is admitted over the bound with ``force_put`` — it is not acknowledged until committed,
so it must not be lost, and while the worker is stalled no acknowledgements flow, so the broker's Receive Maximum
does hold and bounds these extras.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class ReceiveQueue(Generic[T]):
    """FIFO bounded by item count and by bytes (the caller gives each item's size). ``get`` raises ``queue.Empty``
    like ``queue.Queue``. An item larger than ``max_bytes`` alone is admitted when the queue is empty."""

    def __init__(self, max_items: int, max_bytes: int):
        if max_items < 1 or max_bytes < 1:
            raise ValueError("ReceiveQueue needs max_items >= 1 and max_bytes >= 1")
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._progress = time.monotonic()  # last get, or when the queue last stopped being empty
        self.high_water = 0  # the most items ever held at once
        self.high_water_bytes = 0
        self._producers_waiting = 0

    def _full(self, size: int) -> bool:
        return bool(self._items) and (len(self._items) >= self.max_items or self._bytes + size > self.max_bytes)

    def _append(self, item: T, size: int) -> None:
        if not self._items:
            self._progress = time.monotonic()  # the consumer cannot be stalled on an empty queue
        self._items.append((item, size))
        self._bytes += size
        self.high_water = max(self.high_water, len(self._items))
        self.high_water_bytes = max(self.high_water_bytes, self._bytes)
        if len(self._items) == 1:  # only an empty queue has a consumer waiting on it
            self._cond.notify_all()

    def put(self, item: T, size: int, wait: float) -> bool:
        """Queue ``item`` if there is room within ``wait`` seconds; False if not, at once if the consumer has taken
        nothing for ``wait`` seconds while the queue held items (stalled), and once the queue is closed."""
        with self._cond:
            deadline = time.monotonic() + wait
            while self._full(size):
                now = time.monotonic()
                if self._closed or now >= deadline or now - self._progress >= wait:
                    return False
                self._producers_waiting += 1
                try:
                    self._cond.wait(min(deadline, self._progress + wait) - now)
                finally:
                    self._producers_waiting -= 1
            if self._closed:
                return False
            self._append(item, size)
            return True

    def force_put(self, item: T, size: int) -> None:
        """Queue ``item`` whatever the bound (a message that must not be lost)."""
        with self._cond:
            self._append(item, size)

    def get(self, timeout: float | None = None) -> T:
        """The oldest item, waiting up to ``timeout`` seconds (None: for ever); raises ``queue.Empty``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout):
                raise queue.Empty
            return self._take()

    def get_nowait(self) -> T:
        with self._cond:
            if not self._items:
                raise queue.Empty
            return self._take()

    def _take(self) -> T:
        item, size = self._items.popleft()
        self._bytes -= size
        self._progress = time.monotonic()
        if self._producers_waiting and self._below_low_water():
            self._cond.notify_all()
        return item

    def _below_low_water(self) -> bool:
        """Room for a burst: a waiting producer is woken once a quarter of the queue is free, not after every item
        taken. Woken per item, it would take the GIL from the consumer once per message (a thread switch each, under
        a flood most of the consumer's time) to queue one message and wait again."""
        n = len(self._items)
        return n == 0 or (4 * n <= 3 * self.max_items and 4 * self._bytes <= 3 * self.max_bytes)

    def close(self) -> None:
        """From now on ``put`` refuses at once (shutdown: what is not queued is not acknowledged either)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._progress = time.monotonic()

    def qsize(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def empty(self) -> bool:
        return not self._items
