"""The outbox relay of one API process: new outbox rows → this process's event bus (its SSE clients and webhook
workers), and retention.

A thread reads rows with ids above the last one it relayed and publishes each with its id. It wakes when this
process wrote events (``bus.poke()``), on PostgreSQL when any process wrote (``LISTEN gridwatch_events``, a
dedicated connection; see ``central.event_outbox``), and otherwise every ``events.poll_s`` — the only wake-up on
SQLite for events written by other processes. Every ``events.prune_every_s`` it prunes old rows.

The relay starts at the newest id present at start: live clients get what happens from then on, and a client that
was away asks for what it missed with ``Last-Event-ID`` (read from the database by the SSE route, not from here).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from central import event_outbox
from central.config import CentralConfig
from central.events import EventBus

log = logging.getLogger(__name__)

BATCH = 500


class EventRelay:
    def __init__(self, session_factory: sessionmaker[Session], config: CentralConfig, bus: EventBus):
        self.session_factory = session_factory
        self.config = config
        self.bus = bus
        self.last_id = 0
        self._started = False  # last_id read from the database (retried while the database is away)
        self.relayed = 0
        self.pruned = 0
        self.errors = 0
        self.last_error: str | None = None
        self.listening = False  # PostgreSQL LISTEN is up
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_prune = 0.0
        self._listen_conn: Any = None

    def start(self) -> None:
        self._started = False
        with contextlib.suppress(Exception):  # the database may be away: the thread reads it when it is back
            self._init_last_id()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name="event-relay", daemon=True)]
        if self.session_factory.kw["bind"].dialect.name == "postgresql":
            self._threads.append(threading.Thread(target=self._listen, name="event-relay-listen", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.bus.poke()
        conn = self._listen_conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=1.0)  # ends a notifies() wait
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    # ------------------------------------------------------------------ relay
    def _init_last_id(self) -> None:
        with self.session_factory() as s:
            self.last_id = event_outbox.last_id(s)
        self._started = True

    def pump(self) -> int:
        """Relay every row above ``last_id`` now (also used by tests); returns how many."""
        if not self._started:
            self._init_last_id()
        n = 0
        while True:
            with self.session_factory() as s:
                rows = event_outbox.read_after(s, self.last_id, BATCH)
            for r in rows:
                self.bus.publish(r.kind, r.data(), r.id)
                self.last_id = r.id
            n += len(rows)
            if len(rows) < BATCH:
                self.relayed += n
                return n

    def _run(self) -> None:
        poll = self.config.events.poll_s
        while not self._stop.is_set():
            try:
                self.pump()
                self._maybe_prune()
                self.last_error = None
                wait = poll
            except Exception as e:  # the database may be away for a while: keep trying, never die
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"[:300]
                log.warning("event relay: %s", self.last_error)
                wait = max(poll, 2.0)
            self.bus.wait_poke(wait)

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self.config.events.prune_every_s
        cutoff = datetime.now(UTC) - timedelta(days=self.config.events.retention_days)
        with self.session_factory() as s:
            n = event_outbox.prune(s, cutoff, [w.key for w in self.config.webhooks])
        self.pruned += n
        if n:
            log.info("event outbox: pruned %d events older than %s", n, cutoff.isoformat(timespec="seconds"))

    # ------------------------------------------------------------------ PostgreSQL wake-up
    def _listen(self) -> None:
        """LISTEN on a connection of its own; every notification pokes the relay. Reconnects after errors."""
        engine = self.session_factory.kw["bind"]
        while not self._stop.is_set():
            raw = None
            try:
                raw = engine.raw_connection()
                conn = raw.driver_connection
                conn.autocommit = True
                conn.execute(f"LISTEN {event_outbox.CHANNEL}")
                self._listen_conn = conn
                self.listening = True
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        self.bus.poke()
            except Exception as e:  # noqa: BLE001 - polling still works; try to listen again shortly
                if not self._stop.is_set():
                    log.info("event relay: LISTEN connection lost (%s); polling until it is back", e)
                    self._stop.wait(2.0)
            finally:
                self.listening = False
                self._listen_conn = None
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.invalidate()  # never hand a LISTENing connection back to the pool
                    with contextlib.suppress(Exception):
                        raw.close()
