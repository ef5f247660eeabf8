"""In-process event bus: the fan-out inside one central process to its SSE clients.

Two kinds of events travel on it:

- **durable** case events (``case.created``, ``case.updated``, ``case.escalated``): written to the database outbox
  in the transaction of the case change (``central.event_outbox``) and put on the bus, with their outbox id, only by
  the process's ``EventRelay``, which reads them back from the database. So they reach every process, whichever
  process wrote them, and a client can resume by id. Writers call ``poke()`` after their commit so the local relay
  reads at once instead of at its next poll.
- **live** events (``edge.status``, ``camera.health``, ``crowd.figure``, ``incident.event``): published directly by
  the process that ingested them, without an id; a client that was away misses them (the REST API has the state).

``publish`` is thread-safe and never blocks (it is called from the MQTT ingest thread). Async consumers use
``bus.listener()`` (registered at once) or ``bus.listen()``: each has its own bounded queue; when a slow client's
queue is full the oldest event is dropped for that client only, and a listener made with ``overflow_marker=True``
then receives one ``OVERFLOW`` item so it can catch up on durable events from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

KINDS = (
    "case.created",
    "case.updated",
    "case.escalated",
    "edge.status",
    "camera.health",
    "crowd.figure",
    "incident.event",
)
DURABLE_KINDS = frozenset({"case.created", "case.updated", "case.escalated"})
OVERFLOW = "stream.overflow"  # the kind of the marker a listener gets after its queue dropped events

Callback = Callable[[str, dict[str, Any]], None]
Item = tuple[str, dict[str, Any], int | None]  # kind, data, outbox id (None for live events)


class Listener:
    """One async consumer's queue (e.g. one SSE client). Registered on creation; ``close()`` unregisters it."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, size: int, overflow_marker: bool):
        self._bus = bus
        self.loop = loop
        self.queue: asyncio.Queue[Item] = asyncio.Queue(max(size, 2) if overflow_marker else size)
        self.overflow_marker = overflow_marker
        self.dropped = 0

    async def get(self) -> Item:
        return await self.queue.get()

    def put(self, item: Item) -> None:
        """Called on the listener's loop. Drops the oldest item when full (with a marker: all of them, then the
        marker: the consumer re-reads the durable events it missed from the database)."""
        if self.queue.full():
            self.dropped += 1
            if self.overflow_marker:
                while not self.queue.empty():
                    self.queue.get_nowait()
                self.queue.put_nowait((OVERFLOW, {"dropped": self.dropped}, None))
            else:
                self.queue.get_nowait()
        self.queue.put_nowait(item)

    def close(self) -> None:
        self._bus._remove(self)


class EventBus:
    def __init__(self, queue_size: int = 1000):
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []
        self._listeners: list[Listener] = []
        self._queue_size = queue_size
        self._poked = threading.Event()

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(kind, data)`` for every event (from the publishing thread). Returns an unsubscribe fn."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, kind: str, data: dict[str, Any], event_id: int | None = None) -> None:
        """Fan ``(kind, data)`` out to callbacks and listeners; ``event_id`` is the outbox id of a durable event."""
        with self._lock:
            callbacks = list(self._callbacks)
            listeners = list(self._listeners)
        for cb in callbacks:
            try:
                cb(kind, data)
            except Exception:  # a bad listener must not break ingest
                log.exception("event bus listener failed on %s", kind)
        for lst in listeners:
            with contextlib.suppress(RuntimeError):  # loop closed
                lst.loop.call_soon_threadsafe(lst.put, (kind, data, event_id))

    def listener(self, *, overflow_marker: bool = False) -> Listener:
        """A registered queue for the calling event loop (call ``close()`` when done)."""
        lst = Listener(self, asyncio.get_running_loop(), self._queue_size, overflow_marker)
        with self._lock:
            self._listeners.append(lst)
        return lst

    def _remove(self, lst: Listener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(lst)

    async def listen(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Async iterator of (kind, data) for one consumer (registered on its first iteration)."""
        lst = self.listener()
        try:
            while True:
                kind, data, _ = await lst.get()
                yield kind, data
        finally:
            lst.close()

    # -- wake-up of the outbox relay (central.event_relay) in this process --
    def poke(self) -> None:
        """Durable events were just committed by this process: wake the relay now."""
        self._poked.set()

    def wait_poke(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for ``poke()``; True when poked (and clears it)."""
        poked = self._poked.wait(timeout)
        self._poked.clear()
        return poked

    @property
    def stream_count(self) -> int:
        """Async listeners (one per open SSE stream)."""
        with self._lock:
            return len(self._listeners)

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._listeners) + len(self._callbacks)
