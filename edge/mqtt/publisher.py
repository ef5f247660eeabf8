"""EdgePublisher: incidents from the durable outbox to the broker with QoS 1; status, heartbeat, crowd figures,
retained live frames per camera (best effort, latest-wins, never in the outbox: see edge.live_frames).

Threads: one ``mqtt-<edge_id>`` thread owns the connection and the drain of the outbox; paho's network
thread (``loop_start``) runs per connection and only hands PUBACKs back through a queue.

Why a fresh paho client per connection: paho re-sends its own in-flight messages after ``on_connect``
returns, so new messages published from ``on_connect`` onwards could overtake older re-sends and reorder
an incident. With one client per connection the drain simply starts again from the head of the outbox in
``seq`` order: the events in flight when the link dropped are sent again (central dedups by
``event_id``), nothing is lost and nothing overtakes. Reconnects use exponential back-off with jitter.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import ConfigError, EdgeConfig
from edge.mqtt.outbox import Outbox, OutboxEntry
from edge.mqtt.tls import build_ssl_context
from edge.redact import mask_text
from edge.sources.backoff import Backoff

log = logging.getLogger(__name__)

MAX_INFLIGHT = 20
MAX_SNAPSHOT_B64 = 1_000_000  # base64 chars; a bigger inline snapshot is removed (JPEGs are bounded to ~400 KB)
CONNECT_TIMEOUT_S = 5.0
STABLE_SESSION_S = 5.0  # a connection that lasted this long resets the back-off
DRAIN_ON_STOP_S = 5.0  # how long stop() lets a connected publisher send the outbox before disconnecting
AUTH_REFUSALS = ("not authorized", "bad user name or password", "bad username or password")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def edge_version() -> str:
    try:
        from importlib.metadata import version

        return version("gridwatch")
    except Exception:  # not installed as a distribution (e.g. run from a checkout)
        return "0.1.0"


@dataclass
class _Session:
    """One broker connection: its paho client and what it has in flight."""

    client: mqtt.Client
    connack: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    alive: bool = False
    connected_at: float = 0.0
    acks: collections.deque = field(default_factory=collections.deque)
    inflight: dict[int, OutboxEntry] = field(default_factory=dict)
    cursor: int = 0  # seq of the last outbox row handed to paho on this connection


class EdgePublisher:
    """Reliable MQTT delivery for one edge. Never raises on broker trouble; see ``stats()['last_error']``."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        on_ack: Callable[[dict], None] | None = None,
        max_inflight: int = MAX_INFLIGHT,
    ):
        if config.mqtt is None:
            raise ConfigError("mqtt", [("mqtt", "no mqtt section: publishing needs a broker host/port")])
        self.config = config
        self.mqtt = config.mqtt
        self.edge_id = config.edge_id
        self.client_id = config.mqtt_client_id()
        self.on_ack = on_ack
        self.max_inflight = max(1, max_inflight)
        if self.mqtt.reconnect_max_s < self.mqtt.reconnect_min_s:
            raise ConfigError("mqtt", [("mqtt.reconnect_max_s", "must be >= mqtt.reconnect_min_s")])
        if self.mqtt.password and not self.mqtt.username:
            raise ConfigError("mqtt", [("mqtt.username", "a password is set but no username")])
        self._ssl = build_ssl_context(self.mqtt.tls)
        prefix = self.mqtt.topic_prefix.strip("/")
        if not prefix or any(c in prefix for c in "#+"):
            raise ConfigError("mqtt", [("mqtt.topic_prefix", f"must be a plain topic path, got {prefix!r}")])
        base = self._base = f"{prefix}/{self.edge_id}"
        self.topics = {k: f"{base}/{k}" for k in ("incidents", "status", "heartbeat", "crowd", "occupancy")}
        self.outbox = Outbox(config.outbox.path, config.outbox.max_events)
        self._secrets = [self.mqtt.password or ""]
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards counters, _session and paho publish calls from several threads
        self._session: _Session | None = None
        self._thread: threading.Thread | None = None
        self._started_at = time.time()
        self._crowd_last: dict[tuple[str, str], tuple[float, Any]] = {}
        self._frames: dict[str, bytes] = {}  # camera id → newest live frame not yet sent (b"" clears the retained one)
        self._counters = collections.Counter()
        self._last_error: str | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Connect in the background (back-off + jitter). Returns at once; never raises if the broker is down."""
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.edge_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5, drain_s: float = DRAIN_ON_STOP_S) -> None:
        """While connected, give the outbox up to ``drain_s`` to go out (the closing events a worker queues as it
        stops; a container's stop grace is ~10 s); then publish retained status offline, await in-flight PUBACKs,
        disconnect. Unsent events stay queued for the next start."""
        if self.connected and drain_s > 0:
            self.wait_drained(drain_s)
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout + CONNECT_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("mqtt: publisher thread did not stop within %.1fs", timeout)

    def publish_incident(self, payload: dict) -> None:
        """Durable: the event is committed to the outbox before this returns. Raises OutboxError on a bad payload."""
        snapshot = payload.get("snapshot") if isinstance(payload, dict) else None
        data_len = len(snapshot.get("data") or "") if isinstance(snapshot, dict) else 0
        if data_len > MAX_SNAPSHOT_B64:  # the snapshot helper bounds JPEGs; this guards the broker anyway
            log.warning("incident %s: inline snapshot is %d base64 chars (limit %d); sending the event without it",
                        payload.get("incident_id"), data_len, MAX_SNAPSHOT_B64)  # fmt: skip
            payload = {**payload, "snapshot": None}
            self._count("snapshots_stripped")
        self.outbox.put(payload, self.topics["incidents"])
        self._count("enqueued")
        self._wake.set()

    def publish_heartbeat(self, cameras: list[dict], counters: dict) -> None:
        """Best effort (QoS 0): skipped while disconnected; the next one carries fresh figures anyway."""
        message = {
            "edge_id": self.edge_id, "at": utc_now(), "uptime_s": round(time.time() - self._started_at, 1),
            "cameras": cameras, "counters": counters,
            "outbox": {"pending": self.outbox.pending(), "dropped": self.outbox.dropped,
                       "oldest_age_s": _round(self.outbox.oldest_age_s())},
        }  # fmt: skip
        self._publish_live("heartbeat", message)

    def publish_crowd(self, figure: dict) -> None:
        """Live crowd figure, QoS 0: one per (camera, zone) every ``crowd_publish_s``; a level change goes at once."""
        zone = figure.get("zone")
        zone_name = str(zone.get("name") if isinstance(zone, dict) else zone)
        key = (str(figure.get("camera_id")), zone_name)
        now = time.monotonic()
        last = self._crowd_last.get(key)
        level = figure.get("level")
        if last is not None and now - last[0] < self.mqtt.crowd_publish_s and last[1] == level:
            self._count("crowd_rate_limited")
            return
        self._crowd_last[key] = (now, level)
        message = {"edge_id": self.edge_id, "at": utc_now(), **figure, "zone": zone_name}
        self._publish_live("crowd", message)

    def publish_occupancy(self, figure: dict) -> None:
        """A parking zone's occupancy figure (edge/rules/occupancy.py), QoS 0: the rule already reports once per
        ``report_every_s``, so every figure goes out; one made while the broker is away is skipped (a gap in the
        history central keeps, not a wrong figure)."""
        self._publish_live("occupancy", {"edge_id": self.edge_id, **figure})

    def frame_topic(self, camera_id: str) -> str:
        return f"{self._base}/cameras/{camera_id}/frame"

    def publish_frame(self, camera_id: str, message: dict) -> None:
        """Retained live frame (edge.live_frames): replaces any unsent one of the camera; sent by the connection
        thread as soon as there is a connection. Camera ids match edge.config.ID_PATTERN: one plain topic level."""
        payload = json.dumps(message, separators=(",", ":")).encode()
        with self._lock:
            self._frames[camera_id] = payload
        self._wake.set()

    def clear_frame(self, camera_id: str) -> None:
        """A removed camera: an empty retained message deletes its frame on the broker (and central)."""
        with self._lock:
            self._frames[camera_id] = b""
        self._wake.set()

    @property
    def connected(self) -> bool:
        s = self._session
        return bool(s and s.ok and s.alive)

    def stats(self) -> dict:
        with self._lock:
            c = dict(self._counters)
            inflight = len(self._session.inflight) if self._session else 0
            last_error = self._last_error
        return {
            "connected": self.connected, "pending": self.outbox.pending(), "inflight": inflight,
            "enqueued": c.get("enqueued", 0), "published": c.get("published", 0), "acked": c.get("acked", 0),
            "dropped": self.outbox.dropped, "reconnects": c.get("reconnects", 0),
            "connect_attempts": c.get("connect_attempts", 0), "live_skipped": c.get("live_skipped", 0),
            "crowd_rate_limited": c.get("crowd_rate_limited", 0), "snapshots_stripped": c.get("snapshots_stripped", 0),
            "oldest_pending_age_s": _round(self.outbox.oldest_age_s()), "last_error": last_error,
            "frames_sent": c.get("frames_sent", 0),
        }  # fmt: skip

    def wait_drained(self, timeout: float) -> bool:
        """True once the outbox is empty (every event acknowledged or dropped); for tools and tests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.pending() == 0:
                return True
            time.sleep(0.05)
        return self.outbox.pending() == 0

    # ------------------------------------------------------------------ connection loop

    def _run(self) -> None:
        backoff = Backoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s, jitter=0.5)
        ever_connected = False
        while not self._stopping.is_set():
            session = self._connect()
            if session is not None and session.ok:
                if ever_connected:
                    self._count("reconnects")
                ever_connected = True
                self._drain(session)
                if time.monotonic() - session.connected_at >= STABLE_SESSION_S:
                    backoff.reset()
            if session is not None:
                self._close_session(session)
            if self._stopping.is_set():
                break
            delay = backoff.next_delay()
            log.info("mqtt: reconnecting to %s:%d in %.1fs", self.mqtt.host, self.mqtt.port, delay)
            self._stopping.wait(delay)

    def _new_client(self, session_holder: list) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                             protocol=mqtt.MQTTv311, reconnect_on_failure=False)  # fmt: skip
        if self.mqtt.username:
            client.username_pw_set(self.mqtt.username, self.mqtt.password)
        if self._ssl is not None:
            client.tls_set_context(self._ssl)
            if self.mqtt.tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self.topics["status"], self._status("offline"), qos=1, retain=True)
        client.max_inflight_messages_set(self.max_inflight + 10)  # room for status messages next to the window
        client.connect_timeout = CONNECT_TIMEOUT_S

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            s = session_holder[0]
            if reason_code.is_failure:
                hint = " (check mqtt.username / mqtt.password)" if str(reason_code).lower() in AUTH_REFUSALS else ""
                self._set_error(f"broker {self.mqtt.host}:{self.mqtt.port} refused the connection: {reason_code}{hint}")
            else:
                s.ok, s.alive, s.connected_at = True, True, time.monotonic()
                c.publish(self.topics["status"], self._status("online"), qos=1, retain=True)
            s.connack.set()
            self._wake.set()

        def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            s = session_holder[0]
            if s.alive and not self._stopping.is_set():
                self._set_error(f"connection to {self.mqtt.host}:{self.mqtt.port} lost: {reason_code}")
            s.alive = False
            s.connack.set()
            self._wake.set()

        def on_publish(c: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            session_holder[0].acks.append(mid)
            self._wake.set()

        client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
        return client

    def _connect(self) -> _Session | None:
        holder: list = [None]
        self._count("connect_attempts")
        try:
            client = self._new_client(holder)
            session = holder[0] = _Session(client)
            client.connect(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as e:  # refused, timeout, DNS, TLS
            self._set_error(f"cannot connect to {self.mqtt.host}:{self.mqtt.port}: {e}")
            return None
        client.loop_start()
        if not session.connack.wait(CONNECT_TIMEOUT_S + self.mqtt.keepalive_s):
            self._set_error(f"no CONNACK from {self.mqtt.host}:{self.mqtt.port} within the timeout")
        if session.ok:
            with self._lock:
                self._session = session
            self._last_error = None
            log.info("mqtt: connected to %s:%d as %s%s", self.mqtt.host, self.mqtt.port, self.client_id,
                     " (TLS)" if self._ssl else "")  # fmt: skip
        return session

    def _drain(self, s: _Session) -> None:
        """Publish outbox rows in seq order within the in-flight window until the link drops or stop()."""
        while s.alive and not self._stopping.is_set():
            self._wake.clear()
            self._handle_acks(s)
            self._send_frames(s)
            room = self.max_inflight - len(s.inflight)
            if room > 0:
                for entry in self.outbox.next_after(s.cursor, room):
                    with self._lock:
                        info = s.client.publish(entry.topic, entry.payload, qos=1)
                        if info.rc != mqtt.MQTT_ERR_SUCCESS:
                            break  # the link is going down; the next connection starts from the outbox head
                        s.inflight[info.mid] = entry
                        s.cursor = entry.seq
                        self._counters["published"] += 1
            self._wake.wait(0.5)

    def _handle_acks(self, s: _Session) -> None:
        acked: list[OutboxEntry] = []
        while s.acks:
            entry = s.inflight.pop(s.acks.popleft(), None)  # status/heartbeat mids are not in the map
            if entry is not None:
                acked.append(entry)
        if not acked:
            return
        self.outbox.ack([e.seq for e in acked])
        self._count("acked", len(acked))
        if self.on_ack is not None:
            now = time.time()
            for e in acked:
                try:
                    self.on_ack({**e.meta(), "acked_at": now, "latency_s": now - e.enqueued_at})
                except Exception:
                    log.exception("mqtt: on_ack callback failed")

    def _send_frames(self, s: _Session) -> None:
        """Pending live frames, QoS 0 retained: the broker keeps the newest per camera for every subscriber."""
        with self._lock:
            if not self._frames:
                return
            frames, self._frames = self._frames, {}
            for camera_id, payload in frames.items():
                info = s.client.publish(self.frame_topic(camera_id), payload, qos=0, retain=True)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:  # the link is going down: keep it for the next connection
                    self._frames.setdefault(camera_id, payload)
                else:
                    self._counters["frames_sent"] += 1

    def _close_session(self, s: _Session) -> None:
        if s.ok and s.alive:  # clean stop: offline status, then disconnect (no last will)
            info = s.client.publish(self.topics["status"], self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(3.0)  # PUBACKs come in order: earlier incidents are acked by now too
            time.sleep(0.05)
            self._handle_acks(s)
            s.client.disconnect()
        s.client.loop_stop()
        self._handle_acks(s)  # PUBACKs that arrived before the link dropped still count
        with self._lock:
            if self._session is s:
                self._session = None
            s.alive = False

    # ------------------------------------------------------------------ helpers

    def _publish_live(self, kind: str, message: dict) -> None:
        s = self._session
        if not (s and s.ok and s.alive):
            self._count("live_skipped")
            return
        payload = json.dumps(message, ensure_ascii=False, default=str, separators=(",", ":"))
        with self._lock:
            s.client.publish(self.topics[kind], payload, qos=0)

    def _status(self, state: str) -> str:
        return json.dumps({"edge_id": self.edge_id, "state": state, "at": utc_now(), "version": edge_version()})

    def _set_error(self, message: str) -> None:
        message = mask_text(message, self._secrets)
        changed = message != self._last_error
        self._last_error = message  # a plain assignment: safe from paho's callbacks without the lock
        (log.warning if changed else log.debug)("mqtt: %s", message)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
