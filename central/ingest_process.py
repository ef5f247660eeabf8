"""MQTT ingest in two processes: a receiver child (MQTT and classification) and the filer (this process: the database).

Why: in one process paho's network thread, the parser and the filing share one GIL, so ingest uses one core however
many the host has. Here a child process runs ``MqttIngest`` (paho's client, the bounded receive queue, the parser,
the batches), but sends each classified batch over a pipe instead of writing it. This process unpickles it, files
it in one transaction and answers with the outcomes; only then does the child PUBACK the batch. While the filer
writes one batch, the child receives and classifies the next (``WINDOW`` batches at most are with the filer, which
bounds this process's memory). Measured on two cores shared with the broker (docs/benchmarks.md, "Ingest in two
processes"): a backlog drains 1.27x as fast on SQLite and 1.05x on PostgreSQL, through the broker the two modes are
within 5 %, and the two processes use 25-35 % more CPU per event (pickling, ``tools/bench_receive.py``).

The delivery contract is that of ``MqttIngest``, unchanged:

- a message is acknowledged only after the transaction that stored it committed: the child acks on the filer's
  answer, and a batch whose answer never comes (filer killed, database down at shutdown) is never acknowledged, so
  the broker sends it again;
- the child dies with this process (``PR_SET_PDEATHSIG`` and the end of its pipe), so no orphan keeps central's
  broker session after a crash and a restarted central gets its session back;
- a child that exits is started again after a second (a watchdog, as Frigate's for its camera processes); what it
  had received but not acknowledged comes again from the broker, and the idempotent ingest turns a redelivered
  stored message into a no-op (``duplicate``);
- the child ignores SIGINT and SIGTERM: this process decides when it stops (``stop``: the child files what it has
  queued, waits for the answers, acknowledges, disconnects).

``mqtt.receiver`` chooses between this (``process``, the default) and ``thread`` (everything in one process).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.config import CentralConfig
from central.events import EventBus
from central.ingest import IngestService, PreparedMessage
from central.ingest_parse import MessageParser
from central.mqtt_ingest import MqttIngest, _Msg, file_with_retry, ingest_service, live_frame_ingest
from central.store import EvidenceStore

log = logging.getLogger(__name__)

WINDOW = 3  # batches sent to the filer and not yet answered: one being filed, two classified and waiting
HEALTH_EVERY_S = 0.5  # how often the child reports its state (connected, queue, counters)
RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


class _Pipe:
    """One end of the pipe: ``send`` from any thread (pickled outside the lock), ``recv`` from one."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, item: tuple[Any, ...]) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.conn.send_bytes(data)

    def recv(self) -> tuple[Any, ...]:
        return pickle.loads(self.conn.recv_bytes())  # noqa: S301 - our own child process, over our own pipe


# --------------------------------------------------------------------------- the child: receive and classify


class _ParseOnly:
    """What ``MqttIngest`` needs of ``IngestService`` in the child: ``prepare`` (no database)."""

    def __init__(self, config: CentralConfig):
        self.parser = MessageParser(config)

    def prepare(self, topic: str, payload: bytes) -> PreparedMessage:
        return PreparedMessage(topic, payload, self.parser.parse(topic, payload))


class _FrameForwarder:
    """Live frames go to the filer process, which stores them (``LiveFrameIngest``); best effort as there."""

    def __init__(self, pipe: _Pipe):
        self.pipe = pipe
        self.stats: dict[str, int] = {}

    def submit(self, topic: str, payload: bytes) -> None:
        self.pipe.send(("frame", topic, payload))

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Receiver(MqttIngest):
    """``MqttIngest`` whose batches are filed by the parent process: ``_process`` sends, ``serve`` acknowledges."""

    _batches_held = WINDOW + 1  # with the filer, and the one waiting for room: the broker's Receive Maximum counts them

    def __init__(self, config: CentralConfig, pipe: _Pipe):
        self.pipe = pipe
        self._window = threading.BoundedSemaphore(WINDOW)
        self._sent: dict[int, list[_Msg]] = {}
        self._ids = itertools.count(1)
        super().__init__(config, session_factory=None, ingest=_ParseOnly(config))  # type: ignore[arg-type]

    def _make_frames(self, _session_factory: Any) -> Any:
        return _FrameForwarder(self.pipe) if self.config.live_frames.enabled else None

    def _process(self, batch: list[_Msg]) -> None:
        self._window.acquire()  # blocks while the filer has WINDOW batches: the receive queue then fills (its bound)
        batch_id = next(self._ids)
        self._sent[batch_id] = batch
        self.pipe.send(("batch", batch_id, [(m.topic, m.payload, m.prepared.parsed) for m in batch]))

    def _before_disconnect(self, deadline: float) -> None:
        while self._sent and time.monotonic() < deadline:  # the answers to what was sent: then their PUBACKs
            time.sleep(0.01)

    def report(self) -> None:
        self.pipe.send(("health", self.health()))

    def _on_subscribe(self, *args: Any) -> None:
        super()._on_subscribe(*args)
        self.report()  # at once: the filer's wait_subscribed (and "ingesting from") waits for it

    def _on_disconnect(self, *args: Any) -> None:
        super()._on_disconnect(*args)
        with contextlib.suppress(OSError):
            self.report()

    def serve(self) -> None:
        """Answers from the filer until it says stop (or is gone: then exit, acknowledging nothing more)."""
        stopper: threading.Thread | None = None
        while True:
            try:
                msg = self.pipe.recv()
            except (EOFError, OSError):
                os._exit(0)  # the filer is gone; the broker keeps what is not acknowledged for the next one
            if msg[0] == "filed":
                batch = self._sent.pop(msg[1])
                self._acknowledge(batch, msg[2])
                self._window.release()
            elif msg[0] == "stop" and stopper is None:
                # in its own thread: this one must go on reading the answers that stop waits for
                stopper = threading.Thread(target=self._stop_and_exit, args=(msg[1],), name="receiver-stop",
                                           daemon=True)
                stopper.start()

    def _stop_and_exit(self, drain_timeout: float) -> None:
        self.stop(drain_timeout)
        self.pipe.send(("stopped", self.health()))
        logging.shutdown()
        os._exit(0)  # from this thread: serve is blocked reading the pipe


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the end of the pipe still ends the child
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def receiver_main(config: CentralConfig, conn: Connection, parent_pid: int, log_level: int, log_format: str) -> None:
    """The child process: ``MqttIngest`` with its batches filed by the parent."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (Ctrl-C reaches the whole process group)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from edge.logs import configure_logging

    configure_logging(log_level, log_format)
    from central.mqtt_ingest import tune_gc

    receiver = _Receiver(config, _Pipe(conn))
    tune_gc()
    receiver.start()

    def report_health() -> None:
        while True:
            try:
                receiver.report()
            except OSError:
                return
            time.sleep(HEALTH_EVERY_S)

    threading.Thread(target=report_health, name="receiver-health", daemon=True).start()
    receiver.serve()


# --------------------------------------------------------------------------- this process: file


class ProcessIngest:
    """The filer: starts the receiver child, files its batches, answers, and starts it again if it dies.
    ``start()`` / ``stop()`` / ``wait_subscribed()`` / ``health()`` as ``MqttIngest``."""

    def __init__(
        self,
        config: CentralConfig,
        *,
        session_factory: sessionmaker[Session],
        bus: EventBus | None = None,
        clock: Clock | None = None,
        store: EvidenceStore | None = None,
        ingest: IngestService | None = None,
    ):
        self.config = config
        self.mq = config.mqtt
        self.ingest = ingest or ingest_service(config, session_factory, bus=bus, clock=clock, store=store)
        self.frames = live_frame_ingest(config, session_factory)
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._batches: queue.Queue[tuple[_Pipe, int, list[PreparedMessage]]] = queue.Queue()
        self._pipe: _Pipe | None = None
        self._child: Any = None
        self._threads: list[threading.Thread] = []
        self._receiver: dict[str, Any] = {}  # the child's last health report
        self.filer_stats: dict[str, Any] = {"db_errors": 0, "last_error": None, "receiver_starts": 0,
                                            "receiver_exits": 0}

    # ------------------------------------------------------------------ the child

    def _spawn(self) -> _Pipe:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and database connections
        ours, theirs = ctx.Pipe()
        root = logging.getLogger()
        fmt = "json" if any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers) else "text"
        self._child = ctx.Process(target=receiver_main, name="gridwatch-ingest-receiver", daemon=True,
                                    args=(self.config, theirs, os.getpid(), root.getEffectiveLevel(), fmt))
        self._child.start()
        theirs.close()
        self.filer_stats["receiver_starts"] += 1
        return _Pipe(ours)

    def _supervise(self) -> None:
        """Start the child, read its pipe; when it exits unasked, start it again. The child is started from this
        thread, which lives until ``stop``: PR_SET_PDEATHSIG fires when the thread that started a child ends."""
        while not self._stop.is_set():
            pipe = self._pipe = self._spawn()
            self._read(pipe)
            self._child.join(10)
            if self._stop.is_set():
                return
            self.filer_stats["receiver_exits"] += 1
            self._subscribed.clear()
            self._connected.clear()
            log.error("ingest receiver process exited (exit code %s); starting it again in %.0f s",
                      self._child.exitcode, RESTART_DELAY_S)
            self._stop.wait(RESTART_DELAY_S)

    def _read(self, pipe: _Pipe) -> None:
        while True:
            try:
                msg = pipe.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "batch":  # at most WINDOW queued: the child waits for answers before it sends more
                self._batches.put((pipe, msg[1], [PreparedMessage(*item) for item in msg[2]]))
            elif kind == "frame":
                if self.frames is not None:
                    self.frames.submit(msg[1], msg[2])
            elif kind in ("health", "stopped"):
                self._receiver = msg[1]
                for event, key in ((self._subscribed, "subscribed"), (self._connected, "connected")):
                    if msg[1].get(key):
                        event.set()
                    else:
                        event.clear()
                if kind == "stopped":
                    return

    def _file(self) -> None:
        while True:
            item = self._batches.get()
            if item is None:
                return
            pipe, batch_id, messages = item
            results = file_with_retry(self.ingest, messages, self.filer_stats, self._stop)
            if results is None:
                continue  # stopping with the database down: unanswered, so never acknowledged
            with contextlib.suppress(OSError):  # the child is gone: the broker sends these again (duplicates then)
                pipe.send(("filed", batch_id, [r.outcome for r in results]))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._stop.clear()
        if self.frames is not None:
            self.frames.start()
        self._threads = [threading.Thread(target=self._file, name="central-ingest-filer", daemon=True),
                         threading.Thread(target=self._supervise, name="central-ingest-receiver", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, drain_timeout: float = 5.0) -> None:
        """The child files what it has queued, acknowledges it and disconnects; then both stop."""
        self._stop.set()
        pipe = self._pipe
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.send(("stop", drain_timeout))
        filer, supervisor = self._threads or (None, None)
        if supervisor is not None:
            supervisor.join(drain_timeout + 10)
        if self._child is not None and self._child.is_alive():
            self._child.kill()
            self._child.join(5)
        self._batches.put(None)  # type: ignore[arg-type]
        if filer is not None:
            filer.join(drain_timeout)
        if self.frames is not None:
            self.frames.stop()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def receiver_pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def health(self) -> dict[str, Any]:
        """The receiver's last report (connection, receive queue, counters) with this process's part: database
        errors, batches waiting to be filed, how often the receiver was started, live frames."""
        h: dict[str, Any] = {"queued": 0, "queued_bytes": 0, "queue_high_water": 0, **self._receiver}
        h.update(self.filer_stats, connected=self.connected, subscribed=self.subscribed, receiver="process",
                 queued=h["queued"] + self._batches.qsize(),
                 last_error=self.filer_stats["last_error"] or self._receiver.get("last_error"),
                 live_frames=dict(self.frames.stats) if self.frames else None)
        return h

    @property
    def stats(self) -> dict[str, Any]:
        """As ``MqttIngest.stats`` (received, processed, acked, session_present, ...): here the same as health."""
        return self.health()


def make_ingest(config: CentralConfig, **kwargs: Any) -> MqttIngest | ProcessIngest:
    """The MQTT ingest ``mqtt.receiver`` asks for: ``process`` (``ProcessIngest``) or ``thread`` (``MqttIngest``)."""
    return (ProcessIngest if config.mqtt.receiver == "process" else MqttIngest)(config, **kwargs)
