"""In-process event bus: ingest and workflow publish, SSE clients and webhooks listen.

``publish`` is thread-safe and never blocks (it is called from the MQTT ingest thread). Async consumers use
``bus.listen()``: an async iterator with its own bounded queue; when a slow client's queue is full the oldest
event is dropped for that client only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("case.created", "case.updated", "case.escalated", "edge.status", "camera.health", "crowd.figure",
         "incident.event")

Callback = Callable[[str, dict[str, Any]], None]


class EventBus:
    def __init__(self, queue_size: int = 1000):
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []
        self._queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[str, dict[str, Any]]]]] = []
        self._queue_size = queue_size

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(kind, data)`` for every event (from the publishing thread). Returns an unsubscribe fn."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
            queues = list(self._queues)
        for cb in callbacks:
            try:
                cb(kind, data)
            except Exception:  # a bad listener must not break ingest
                log.exception("event bus listener failed on %s", kind)
        for loop, q in queues:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(_put_drop_oldest, q, (kind, data))

    async def listen(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Async iterator of (kind, data) for one consumer (e.g. one SSE client)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(self._queue_size)
        entry = (loop, q)
        with self._lock:
            self._queues.append(entry)
        try:
            while True:
                yield await q.get()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._queues.remove(entry)

    @property
    def stream_count(self) -> int:
        """Async listeners (one per open SSE stream)."""
        with self._lock:
            return len(self._queues)

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._queues) + len(self._callbacks)


def _put_drop_oldest(q: asyncio.Queue[tuple[str, dict[str, Any]]], item: tuple[str, dict[str, Any]]) -> None:
    if q.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
    q.put_nowait(item)
