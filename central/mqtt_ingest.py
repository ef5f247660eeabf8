"""MQTT subscriber feeding ``IngestService``: QoS 1, persistent session, manual acknowledgement after commit.

- MQTT v5, fixed client id, ``clean_start=False`` and a session expiry: while central is down the broker queues
  QoS 1 messages for it, and delivers them when it returns.
- ``manual_ack=True``: a message is acknowledged (PUBACK) only after the transaction that stored it has
  committed. A crash between receipt and commit leaves the message unacknowledged, so the broker redelivers it;
  a crash between commit and ack redelivers a message that is already stored, which the idempotent ingest turns
  into a no-op (``duplicate``).
- Messages are processed in batches by one worker thread (one commit, then the acks), which is what makes
  thousands of events per second possible on SQLite.
- Flow control: paho's network thread hands messages to the worker through a ``ReceiveQueue`` bounded by
  ``mqtt.queue_max_messages`` and ``mqtt.queue_max_bytes``, so a flood (of bad input or of a backlog) cannot grow
  memory. When the queue is full the network thread waits for room, at most ``keepalive_s / 4`` and not at all once
  the worker has been stalled that long: it also sends our PUBACKs and keepalive PINGs, and blocked longer the
  connection would be dropped and the whole unacknowledged window sent again. A message that finds no room then is
  dropped if it is QoS 0 (``stats["dropped_qos0"]``) and admitted over the bound if QoS 1/2
  (``stats["over_bound"]``): it is not acknowledged before its commit, so it must not be lost. ``Receive Maximum``
  (the queue plus one batch) asks the broker to keep the rest; Mosquitto 2.0.11 overshoots it while acks flow, which
  is why the queue has a bound of its own (central/receive_queue.py).
- With ``mqtt.shared_group`` set, incidents/heartbeats/crowd figures are subscribed as ``$share/<group>/…`` so
  several central instances split the load (the retained status topic is not shared: every instance keeps it).
- Live frames (``<prefix>/+/cameras/+/frame``, retained) are subscribed at QoS 0 and never shared; they skip the
  batches and go to ``central.live_frames.LiveFrameIngest`` (its own thread, newest per camera wins).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.orm import Session, sessionmaker

from central.clock import Clock
from central.config import CentralConfig
from central.events import EventBus
from central.ingest import IngestService
from central.ingest_parse import DeadLetterReason
from central.live_frames import LiveFrameIngest, LiveFrameStore, is_frame_topic
from central.mqtt_client import IngestClient
from central.receive_queue import ReceiveQueue
from central.store import EvidenceStore, FileEvidenceStore

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """For a process whose work is ingest: move what start-up allocated (SQLAlchemy mappers, the compiled schema,
    configuration) out of the collector's sight (``gc.freeze``), and let a batch allocate 20,000 objects between
    young collections instead of 700. Every ingest batch makes ~100,000 short-lived objects; with the defaults the
    collector ran dozens of times per batch and each full pass re-walked the long-lived heap: 7-10 % of the CPU per
    event (tools/bench_central.py). Reference cycles are still collected, just less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def ingest_service(config: CentralConfig, session_factory: sessionmaker[Session], *, bus: EventBus | None,
                   clock: Clock | None, store: EvidenceStore | None) -> IngestService:
    """The ``IngestService`` an ingest runner files with when it is given none (evidence in files by default)."""
    store = store or FileEvidenceStore(config.evidence_dir, max_bytes=config.max_snapshot_bytes)
    return IngestService(session_factory, config, clock=clock, store=store, bus=bus)


def live_frame_ingest(config: CentralConfig, session_factory: sessionmaker[Session]) -> LiveFrameIngest | None:
    """The live-frame side path when ``live_frames.enabled`` (central/live_frames.py), else None."""
    if not config.live_frames.enabled:
        return None
    return LiveFrameIngest(config, LiveFrameStore(config.live_frames.directory(config.evidence_dir)), session_factory)


def file_with_retry(ingest: IngestService, messages: list[Any], stats: dict[str, Any], stop: threading.Event
                    ) -> list[Any] | None:
    """``ingest.handle_batch(messages)``, retried while the database is unavailable (counted in ``stats``); None
    if ``stop`` is set first: then nothing was committed and nothing may be acknowledged."""
    delay = 0.5
    while True:
        try:
            return ingest.handle_batch(messages)
        except Exception as e:  # database unavailable: keep the messages unacknowledged and retry
            stats["db_errors"] += 1
            stats["last_error"] = f"database: {e}"[:500]
            log.error("ingest batch of %d not committed (%s); retrying in %.1fs", len(messages), e, delay)
            if stop.wait(delay):
                return None  # not acked: the broker redelivers after restart
            delay = min(delay * 2, 10.0)


@dataclass
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received: float
    prepared: Any = None  # IngestService.prepare(topic, payload), made while the batch is filled


class MqttIngest:
    """Runs the MQTT client (paho network thread) and a batch worker thread. ``start()`` / ``stop()``."""

    _batches_held = 1  # unacknowledged batches outside the receive queue: the one being filed

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
        self._queue: ReceiveQueue[_Msg] = ReceiveQueue(self.mq.queue_messages, self.mq.queue_max_bytes)
        self._put_wait_s = self.mq.keepalive_s / 4
        self._overflow_logged = 0.0
        self.frames: Any = self._make_frames(session_factory)  # a LiveFrameIngest, or None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._ever_connected = False
        self._worker: threading.Thread | None = None
        self.stats: dict[str, Any] = {
            "received": 0, "processed": 0, "acked": 0, "batches": 0, "dead_letters": 0, "duplicates": 0,
            "db_errors": 0, "connects": 0, "last_error": None, "session_present": None, "sessions_lost": 0,
            "dropped_qos0": 0, "over_bound": 0,
        }
        self.client = self._make_client()

    def _make_frames(self, session_factory: sessionmaker[Session]) -> Any:
        return live_frame_ingest(self.config, session_factory)

    # ------------------------------------------------------------------ client

    def _make_client(self) -> IngestClient:
        c = IngestClient(
            CallbackAPIVersion.VERSION2, client_id=self.mq.client_id, protocol=mqtt.MQTTv5, manual_ack=True,
        )
        if self.mq.username:
            c.username_pw_set(self.mq.username, self.mq.password)
        tls = self.mq.tls
        if tls.enabled:
            c.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
            c.tls_insecure_set(tls.insecure)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.mq.session_expiry_s
        props.ReceiveMaximum = min(65535, max(20, self.mq.queue_messages + self._batches_held * 4 * self.mq.batch_max))
        return props

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.stats["last_error"] = f"connect refused: {reason}"
            log.error("MQTT %s:%s refused the connection: %s", self.mq.host, self.mq.port, reason)
            return
        with self._gen_lock:
            self._generation += 1
        present = bool(getattr(flags, "session_present", False))
        self.stats["session_present"] = present
        if not present and self._ever_connected:
            # the broker forgot our session (it expired, or the broker lost its state): what it queued for us while we
            # were away is gone, and nothing here can get it back — say so loudly, it is a loss of incidents
            self.stats["sessions_lost"] += 1
            log.error("MQTT broker %s:%s had no session for %s on reconnect: messages queued while disconnected are "
                      "lost (session expired or broker state lost)", self.mq.host, self.mq.port, self.mq.client_id)
        elif not present:
            log.info("MQTT: new session for %s; messages published before the subscription is acknowledged are not "
                     "queued for it", self.mq.client_id)
        self._ever_connected = True
        self.stats["connects"] += 1
        self._connected.set()
        topics = self.mq.topics()
        client.subscribe([(t, 1) for t in topics] + ([(self.mq.frame_topic(), 0)] if self.frames else []))
        log.info("MQTT connected to %s:%s as %s; subscribed %s", self.mq.host, self.mq.port, self.mq.client_id, topics)

    def _on_subscribe(self, _c: mqtt.Client, _ud: Any, _mid: int, reasons: Any, _props: Any) -> None:
        bad = [r for r in reasons if r.is_failure]
        if bad:
            self.stats["last_error"] = f"subscribe refused: {bad}"
            log.error("MQTT subscription refused: %s", bad)
        else:
            self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._gen_lock:  # from now on no ack for a message of the old connection (see _process)
            self._generation += 1
        self._connected.clear()
        self._subscribed.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic  # (decoded from bytes at every access)
        if self.frames is not None and is_frame_topic(topic, self.mq.topic_prefix):
            self.frames.submit(topic, bytes(msg.payload))  # best effort: no batch, no ack to wait for
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)
            return
        self.stats["received"] += 1
        m = _Msg(topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, time.monotonic())
        size = len(m.payload) + len(topic)
        if self._queue.put(m, size, self._put_wait_s):
            return
        if self._stop.is_set():
            return  # shutting down: not queued, so never acknowledged, so the broker sends it again next session
        # no room: the worker is stalled (database down or locked) or slower than keepalive_s / 4 per batch
        if msg.qos == 0:
            self.stats["dropped_qos0"] += 1  # at most once is QoS 0's contract; waiting longer would cost the session
        else:
            self._queue.force_put(m, size)  # acknowledged only after its commit: must not be lost
            self.stats["over_bound"] += 1
        now = time.monotonic()
        if now - self._overflow_logged > 10:
            self._overflow_logged = now
            log.warning("MQTT receive queue full (%d messages, %d bytes; worker stalled?): %d QoS 0 messages dropped, "
                        "%d QoS 1 messages held over the bound so far", self._queue.qsize(), self._queue.nbytes,
                        self.stats["dropped_qos0"], self.stats["over_bound"])

    # ------------------------------------------------------------------ worker

    def _next_batch(self) -> list[_Msg]:
        """Up to ``batch_max`` messages that will be stored, plus the dead letters among them (at most 4 × batch_max
        in all): each message is parsed as it is taken, so a flood of bad input does not shrink the transactions
        that carry good events (their commit is most of a batch's fixed cost)."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch: list[_Msg] = []
        good = 0
        deadline = time.monotonic() + self.mq.batch_wait_ms / 1000.0
        m: _Msg | None = first
        while m is not None:
            m.prepared = self.ingest.prepare(m.topic, m.payload)
            batch.append(m)
            good += not isinstance(m.prepared.parsed, DeadLetterReason)
            if good >= self.mq.batch_max or len(batch) >= 4 * self.mq.batch_max:
                break
            remaining = deadline - time.monotonic()
            try:
                m = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                m = None
        return batch

    def _process(self, batch: list[_Msg]) -> None:
        results = file_with_retry(self.ingest, [m.prepared or (m.topic, m.payload) for m in batch], self.stats,
                                  self._stop)
        if results is not None:
            self._acknowledge(batch, [r.outcome for r in results])

    def _acknowledge(self, batch: list[_Msg], outcomes: list[str]) -> None:
        """Count the committed batch's outcomes and PUBACK its messages."""
        self.stats["batches"] += 1
        self.stats["processed"] += len(batch)
        self.stats["dead_letters"] += outcomes.count("dead_letter")
        self.stats["duplicates"] += outcomes.count("duplicate")
        with self._gen_lock:  # the generation cannot move (disconnect/connect) while the acks are queued
            gen = self._generation
            # A message received on an earlier connection is redelivered by the broker after reconnecting; acking
            # its old packet id here could acknowledge a different message, so leave it to the redelivered copy.
            current = [m for m in batch if m.qos > 0 and m.generation == gen]
            self.client.ack_many(m.mid for m in current if m.qos == 1)  # one write for the batch's PUBACKs
            for m in current:
                if m.qos == 2:
                    self.client.ack(m.mid, m.qos)
            self.stats["acked"] += len(current)

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch = self._next_batch()
            if batch:
                self._process(batch)
            elif self._stop.is_set():
                break

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._queue.reopen()
        self._worker = threading.Thread(target=self._run, name="central-ingest", daemon=True)
        self._worker.start()
        if self.frames is not None:
            self.frames.start()
        self.client.connect_async(
            self.mq.host, self.mq.port, keepalive=self.mq.keepalive_s, clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """True once the broker acknowledged the subscriptions (SUBACK). Only from then on does it keep messages for
        this client: on the very first connection (no session yet) anything published earlier is not delivered."""
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Process what is already queued (and ack it), then disconnect."""
        deadline = time.monotonic() + drain_timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._queue.close()  # the network thread must not wait for room the stopped worker will not make
        if self._worker is not None:
            self._worker.join(timeout=drain_timeout)
        self._before_disconnect(deadline + drain_timeout)
        self.client.disconnect()
        self.client.loop_stop()
        if self.frames is not None:
            self.frames.stop()

    def _before_disconnect(self, deadline: float) -> None:
        """Hook: the last acknowledgements are queued by now (``central.ingest_process`` waits for its filer)."""

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "subscribed": self.subscribed, "queued": self._queue.qsize(),
                "queued_bytes": self._queue.nbytes, "queue_high_water": self._queue.high_water, **self.stats,
                "live_frames": dict(self.frames.stats) if self.frames else None}
