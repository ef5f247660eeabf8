"""EdgePublisher against a real Mosquitto: outages, SIGKILL, full outbox, last will, credentials, bad config."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge.config import ConfigError, EdgeConfig, parse_config
from edge.mqtt import EdgePublisher, Outbox, OutboxError
from tests.fixtures.mqtt import MosquittoBroker, MqttCollector, TcpProxy

REPO = Path(__file__).resolve().parents[1]
EDGE_ID = "edge-test-01"


def make_config(tmp_path: Path, broker: MosquittoBroker, max_events: int = 100_000, **mqtt: object) -> EdgeConfig:
    doc = {
        "edge_id": EDGE_ID,
        "mqtt": broker.mqtt_config(**mqtt),
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "max_events": max_events},
        "cameras": [{"id": "cam1", "url": "/dev/video0"}],
    }
    return parse_config(doc, source="test")


def incident_event(incident_id: str, seq: int, kind: str) -> dict:
    return {
        "schema": "gridwatch.incident/1", "event_id": str(uuid.uuid4()), "incident_id": incident_id, "seq": seq,
        "event": kind, "type": "illegal_parking", "emitted_at": "2026-01-01T00:00:00Z", "edge_id": EDGE_ID,
        "camera": {"id": "cam1", "name": "cam1", "location": {"lat": None, "lon": None, "address": None,
                                                               "grid_cell": None}},
        "zone": {"name": "kerb", "type": "no_parking", "grid_cell": None, "location": None}, "snapshot": None,
    }  # fmt: skip


def incidents_topic() -> str:
    return f"gridwatch/v1/{EDGE_ID}/incidents"


def assert_delivered(collector: MqttCollector, expected: dict[str, tuple[str, int]]) -> int:
    """Every expected event arrived; first arrivals are in seq order per incident. Returns the duplicate count."""
    first_seen: list[str] = []
    seen: set[str] = set()
    for event in collector.json("/incidents"):
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            first_seen.append(event["event_id"])
    missing = set(expected) - seen
    assert not missing, f"{len(missing)} of {len(expected)} events never arrived"
    per_incident: dict[str, list[int]] = {}
    for eid in first_seen:
        if eid in expected:
            inc, seq = expected[eid]
            per_incident.setdefault(inc, []).append(seq)
    for inc, seqs in per_incident.items():
        assert seqs == sorted(seqs), f"incident {inc} arrived out of order: {seqs}"
    return len(collector.json("/incidents")) - len(seen)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# --------------------------------------------------------------------------- the long outage (issue: 30 s)


@pytest.mark.slow
def test_broker_down_30s_nothing_lost_nothing_reordered(tmp_path, mosquitto):
    # A persistent subscriber, like central: the broker queues for it while it reconnects after the restart.
    collector = MqttCollector(mosquitto, incidents_topic(), client_id="central-test", clean_session=False)
    acks: list[dict] = []
    pub = EdgePublisher(make_config(tmp_path, mosquitto), on_ack=acks.append)
    pub.start()
    assert wait_until(lambda: pub.connected, 10), pub.stats()

    n_incidents, n_events, interval = 25, 7, 0.2  # 175 events over 35 s: 3 s before, 30 s during, 2 s after
    expected: dict[str, tuple[str, int]] = {}
    incidents = [str(uuid.uuid4()) for _ in range(n_incidents)]

    def produce() -> None:
        for seq in range(1, n_events + 1):
            kind = "opened" if seq == 1 else "closed" if seq == n_events else "updated"
            for inc in incidents:
                ev = incident_event(inc, seq, kind)
                pub.publish_incident(ev)
                expected[ev["event_id"]] = (inc, seq)
                time.sleep(interval)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(3)
    mosquitto.stop()
    assert wait_until(lambda: not pub.connected, 5)
    time.sleep(30)
    down_stats = pub.stats()
    mosquitto.start()
    producer.join()
    assert wait_until(lambda: pub.stats()["pending"] == 0, 20), pub.stats()
    assert collector.wait_for(lambda c: len({e["event_id"] for e in c.json("/incidents")}) >= len(expected), 20)
    duplicates = assert_delivered(collector, expected)
    stats = pub.stats()
    pub.stop()
    collector.close()
    assert len(expected) == n_incidents * n_events
    assert down_stats["pending"] >= 100, down_stats  # ~150 events were produced while the broker was away
    assert "connect" in (down_stats["last_error"] or ""), down_stats  # "connection … lost" / "cannot connect"
    assert stats["reconnects"] >= 1 and stats["dropped"] == 0 and stats["last_error"] is None
    assert stats["acked"] >= len(expected) and len({a["event_id"] for a in acks}) == len(expected)
    print(f"outage: {len(expected)} events, {duplicates} duplicates, reconnects={stats['reconnects']}")


@pytest.mark.slow
def test_silent_network_loss_is_detected_by_keepalive(tmp_path, mosquitto):
    """A link that drops packets without closing: only keepalive notices; events in flight are sent again."""
    proxy = TcpProxy(mosquitto.host, mosquitto.port)
    collector = MqttCollector(mosquitto, [incidents_topic(), f"gridwatch/v1/{EDGE_ID}/status"])
    pub = EdgePublisher(make_config(tmp_path, mosquitto, port=proxy.port, keepalive_s=5))
    pub.start()
    assert wait_until(lambda: pub.connected, 10)
    incidents = [str(uuid.uuid4()) for _ in range(3)]
    expected: dict[str, tuple[str, int]] = {}
    stop = threading.Event()

    def produce() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            for inc in incidents:
                ev = incident_event(inc, seq, "opened" if seq == 1 else "updated")
                pub.publish_incident(ev)
                expected[ev["event_id"]] = (inc, seq)
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(1)
    proxy.cut()
    cut_at = time.monotonic()
    assert wait_until(lambda: not pub.connected, 20), pub.stats()
    detected_s = time.monotonic() - cut_at
    lost_stats = pub.stats()
    proxy.restore()
    assert wait_until(lambda: pub.connected, 10), pub.stats()
    time.sleep(0.5)
    stop.set()
    producer.join()
    assert pub.wait_drained(15), pub.stats()
    assert collector.wait_for(lambda c: {e["event_id"] for e in c.json("/incidents")} >= set(expected), 10)
    assert_delivered(collector, expected)
    assert lost_stats["pending"] > 0 and "lost" in (lost_stats["last_error"] or "")
    assert 4 <= detected_s <= 16  # keepalive 5 s: ping after 5 s of silence, give up 5 s later
    assert collector.wait_for(lambda c: c.json("/status")[-1]["state"] == "online", 5), collector.json("/status")
    pub.stop()
    proxy.close()
    collector.close()


# --------------------------------------------------------------------------- SIGKILL of the edge and its last will

CHILD = r"""
import json, sys, time, uuid
from edge.config import parse_config
from edge.mqtt import EdgePublisher

doc, count, interval = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
pub = EdgePublisher(parse_config(doc, source="child"))
pub.start()
print("started", flush=True)
incidents = [str(uuid.uuid4()) for _ in range(5)]
for i in range(count):
    inc, seq = incidents[i % 5], i // 5 + 1
    ev = {"schema": "gridwatch.incident/1", "event_id": str(uuid.uuid4()), "incident_id": inc, "seq": seq,
          "event": "opened" if seq == 1 else "updated", "type": "illegal_parking"}
    pub.publish_incident(ev)
    print("queued", ev["event_id"], inc, seq, flush=True)
    time.sleep(interval)
if count == 0:
    ok = pub.wait_drained(30)
    print("drained" if ok else "not drained", json.dumps(pub.stats()), flush=True)
    pub.stop()
else:
    while True:
        time.sleep(1)
"""


class Child:
    """An edge process publishing through EdgePublisher; reports each event once it is in the outbox."""

    def __init__(self, config_doc: dict, count: int, interval: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(config_doc), str(count), str(interval)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.queued: dict[str, tuple[str, int]] = {}
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("queued "):
                _, eid, inc, seq = line.split()
                self.queued[eid] = (inc, int(seq))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self._reader.join(5)


def child_config(tmp_path: Path, broker: MosquittoBroker) -> dict:
    outbox = {"path": str(tmp_path / "outbox.sqlite")}
    return {"edge_id": EDGE_ID, "mqtt": broker.mqtt_config(), "outbox": outbox, "cameras": [{"id": "cam1", "url": "x"}]}


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_drains_outbox(tmp_path, mosquitto):
    collector = MqttCollector(mosquitto, incidents_topic(), client_id="central-kill", clean_session=False)
    doc = child_config(tmp_path, mosquitto)
    first = Child(doc, count=100_000, interval=0.005)
    assert wait_until(lambda: len(first.queued) >= 100, 20), first.lines[-5:]
    mosquitto.stop()  # events keep coming while the broker is away, and some were in flight when it went
    queued_before_stop = len(first.queued)
    assert wait_until(lambda: len(first.queued) >= queued_before_stop + 100, 20)
    first.kill()
    queued = dict(first.queued)
    left = Outbox(tmp_path / "outbox.sqlite")
    pending_after_kill = left.pending()
    left.close()
    assert pending_after_kill >= len(queued) - queued_before_stop >= 100  # all queued after the broker stopped
    cli = subprocess.run([sys.executable, "tools/outbox_cli.py", "stats", str(tmp_path / "outbox.sqlite")],
                         cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(cli.stdout)["pending"] == pending_after_kill

    mosquitto.start()
    second = Child(doc, count=0, interval=0)  # the restarted edge: no new events, it drains what it inherited
    assert second.proc.wait(40) == 0, second.proc.stderr.read() if second.proc.stderr else ""
    second._reader.join(5)
    assert any(line.startswith("drained") for line in second.lines), second.lines
    assert collector.wait_for(lambda c: {e["event_id"] for e in c.json("/incidents")} >= set(queued), 10)
    assert_delivered(collector, queued)
    assert Outbox(tmp_path / "outbox.sqlite").pending() == 0
    collector.close()


def test_last_will_marks_a_killed_edge_offline(tmp_path, mosquitto):
    status_topic = f"gridwatch/v1/{EDGE_ID}/status"
    watcher = MqttCollector(mosquitto, status_topic)
    child = Child(child_config(tmp_path, mosquitto), count=3, interval=0.01)
    assert watcher.wait_for(lambda c: any(s["state"] == "online" for s in c.json("/status")), 10), child.lines
    child.kill()
    assert watcher.wait_for(lambda c: c.json("/status")[-1]["state"] == "offline", 10), watcher.json("/status")
    watcher.close()
    late = MqttCollector(mosquitto, status_topic)  # subscribes after the fact: the retained status says offline
    assert late.wait_for(lambda c: bool(c.messages), 5)
    topic, payload, retained = late.messages[-1]
    status = json.loads(payload)
    assert retained and status["state"] == "offline" and status["edge_id"] == EDGE_ID and status["version"]
    late.close()


# --------------------------------------------------------------------------- full outbox, status, live topics


def test_full_outbox_keeps_opened_and_closed_and_newest_updates(tmp_path, mosquitto_factory):
    broker = mosquitto_factory()
    # central's persistent session exists before the outage, so nothing published after the restart is missed
    MqttCollector(broker, incidents_topic(), client_id="central-full", clean_session=False).close()
    broker.stop()  # the broker is down while the outbox fills
    pub = EdgePublisher(make_config(tmp_path, broker, max_events=100))
    pub.start()
    incidents = [str(uuid.uuid4()) for _ in range(10)]
    events: list[dict] = [incident_event(inc, 1, "opened") for inc in incidents]
    for seq in range(2, 14):  # 120 'updated' events: 40 more than fit next to the opened/closed ones
        events += [incident_event(inc, seq, "updated") for inc in incidents]
    events += [incident_event(inc, 14, "closed") for inc in incidents]
    for ev in events:
        pub.publish_incident(ev)
    assert wait_until(lambda: pub.stats()["last_error"], 5)
    stats = pub.stats()
    assert stats["pending"] == 100 and stats["dropped"] == 40 and not stats["connected"], stats
    assert "cannot connect" in stats["last_error"]

    broker.start()
    assert pub.wait_drained(15), pub.stats()
    collector = MqttCollector(broker, incidents_topic(), client_id="central-full", clean_session=False)
    assert collector.wait_for(lambda c: len({e["event_id"] for e in c.json("/incidents")}) >= 100, 10)
    pub.stop()
    got = {e["event_id"]: e for e in collector.json("/incidents")}
    kept = {ev["event_id"]: (ev["incident_id"], ev["seq"]) for ev in events[:10] + events[50:]}  # oldest 40 updates go
    assert set(got) == set(kept)
    assert_delivered(collector, kept)
    kinds = [e["event"] for e in got.values()]
    assert kinds.count("opened") == 10 and kinds.count("closed") == 10 and kinds.count("updated") == 80
    collector.close()


def test_status_heartbeat_crowd_and_ack_callback(tmp_path, mosquitto):
    base = f"gridwatch/v1/{EDGE_ID}"
    collector = MqttCollector(mosquitto, f"{base}/#")
    acks: list[dict] = []
    pub = EdgePublisher(make_config(tmp_path, mosquitto, crowd_publish_s=60), on_ack=acks.append)
    pub.start()
    assert collector.wait_for(lambda c: any(s["state"] == "online" for s in c.json("/status")), 10)

    ev = incident_event(str(uuid.uuid4()), 1, "opened")
    pub.publish_incident(ev)
    assert wait_until(lambda: acks, 5)
    assert acks[0]["event_id"] == ev["event_id"] and acks[0]["latency_s"] >= 0 and acks[0]["enqueued_at"] > 0

    pub.publish_heartbeat([{"camera_id": "cam1", "state": "streaming"}], {"frames_analyzed": 7})
    figure = {"camera_id": "cam1", "zone": "plaza", "count": 12, "density": 0.3, "level": "normal"}
    pub.publish_crowd(figure)
    pub.publish_crowd({**figure, "count": 13})  # same level within crowd_publish_s: rate-limited
    pub.publish_crowd({**figure, "count": 40, "density": 1.1, "level": "high"})  # a level change goes at once
    assert collector.wait_for(lambda c: len(c.json("/crowd")) >= 2 and c.json("/heartbeat"), 5)
    time.sleep(0.3)
    hb = collector.json("/heartbeat")[0]
    assert hb["edge_id"] == EDGE_ID and hb["cameras"][0]["camera_id"] == "cam1" and hb["outbox"]["pending"] == 0
    assert hb["counters"] == {"frames_analyzed": 7} and hb["uptime_s"] >= 0
    crowd = collector.json("/crowd")
    assert [c["count"] for c in crowd] == [12, 40] and crowd[0]["zone"] == "plaza" and crowd[0]["edge_id"] == EDGE_ID
    assert pub.stats()["crowd_rate_limited"] == 1

    pub.stop()
    assert collector.wait_for(lambda c: c.json("/status")[-1]["state"] == "offline", 5)
    assert not pub.connected and pub.stats()["last_error"] is None
    collector.close()


# --------------------------------------------------------------------------- credentials and bad config


def test_wrong_password_is_reported_and_the_edge_keeps_running(tmp_path, mosquitto_factory, caplog):
    broker = mosquitto_factory(auth=True)
    caplog.set_level(logging.DEBUG, logger="edge.mqtt")
    bad = EdgePublisher(make_config(tmp_path, broker, password="Wr0ng-Passw0rd"))
    bad.start()
    assert wait_until(lambda: (bad.stats()["last_error"] or "").startswith("broker"), 10), bad.stats()
    ev = incident_event(str(uuid.uuid4()), 1, "opened")
    bad.publish_incident(ev)  # still durable while refused
    assert wait_until(lambda: bad.stats()["connect_attempts"] >= 2, 10)
    stats = bad.stats()
    assert not stats["connected"] and stats["pending"] == 1
    assert "refused" in stats["last_error"] and "mqtt.username / mqtt.password" in stats["last_error"]
    assert "Not authorized" in stats["last_error"] or "Bad user name" in stats["last_error"]
    bad.stop()
    assert "Wr0ng-Passw0rd" not in caplog.text and "Wr0ng-Passw0rd" not in json.dumps(stats)

    collector = MqttCollector(broker, incidents_topic(), username="central", password=broker.users["central"])
    good = EdgePublisher(make_config(tmp_path, broker))  # same outbox, right password: the queued event goes out
    good.start()
    assert good.wait_drained(10), good.stats()
    assert collector.wait_for(lambda c: c.json("/incidents"), 5)
    assert collector.json("/incidents")[0]["event_id"] == ev["event_id"]
    good.stop()
    collector.close()


@pytest.mark.parametrize(
    ("mqtt", "path"),
    [
        ({"port": 70000}, "mqtt.port"),
        ({"port": "broker"}, "mqtt.port"),
        ({"passwd": "x"}, "mqtt.passwd"),
        ({"tls": {"enabled": "maybe"}}, "mqtt.tls.enabled"),
        ({"keepalive_s": 1}, "mqtt.keepalive_s"),
    ],
)
def test_malformed_mqtt_config_is_a_config_error(mqtt, path):
    doc = {"edge_id": EDGE_ID, "mqtt": {"host": "127.0.0.1", **mqtt}, "cameras": [{"id": "c", "url": "/dev/video0"}]}
    with pytest.raises(ConfigError) as err:
        parse_config(doc, source="cameras.yaml")
    assert path in str(err.value)


def test_publisher_rejects_unusable_settings(tmp_path):
    def cfg(**mqtt: object) -> EdgeConfig:
        doc = {"edge_id": EDGE_ID, "mqtt": {"host": "127.0.0.1", **mqtt}, "outbox": {"path": str(tmp_path / "o.db")},
               "cameras": [{"id": "c", "url": "/dev/video0"}]}  # fmt: skip
        return parse_config(doc, source="cameras.yaml")

    cases = [
        (cfg(tls={"enabled": True, "ca_file": str(tmp_path / "missing-ca.pem")}), "mqtt.tls.ca_file"),
        (cfg(reconnect_min_s=10, reconnect_max_s=1), "mqtt.reconnect_max_s"),
        (cfg(password="secret"), "mqtt.username"),
        (cfg(topic_prefix="gridwatch/#"), "mqtt.topic_prefix"),
    ]
    for config, path in cases:
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            EdgePublisher(config)
    no_mqtt = parse_config({"edge_id": EDGE_ID, "cameras": [{"id": "c", "url": "/dev/video0"}]})
    with pytest.raises(ConfigError, match="mqtt"):
        EdgePublisher(no_mqtt)
    (tmp_path / "bad-ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file.*PEM"):
        EdgePublisher(cfg(tls={"enabled": True, "ca_file": str(tmp_path / "bad-ca.pem")}))
    ok = EdgePublisher(cfg())
    with pytest.raises(OutboxError, match="incident_id"):
        ok.publish_incident({"event_id": "e", "event": "opened"})
    assert os.path.exists(tmp_path / "o.db")


def test_tls_verified_wrong_ca_and_insecure(tmp_path, mosquitto_factory):
    from tests.fixtures.mqtt import make_test_ca

    broker = mosquitto_factory(tls=True, auth=True)
    collector = MqttCollector(broker, incidents_topic(), username="central", password=broker.users["central"])
    pub = EdgePublisher(make_config(tmp_path / "ok", broker))  # TLS with the broker's CA + credentials
    pub.start()
    ev = incident_event(str(uuid.uuid4()), 1, "opened")
    pub.publish_incident(ev)
    assert pub.wait_drained(10), pub.stats()
    assert collector.wait_for(lambda c: c.json("/incidents"), 5)
    pub.stop()

    other_ca, _, _ = make_test_ca(tmp_path / "other-ca")
    wrong = EdgePublisher(make_config(tmp_path / "wrong", broker, tls={"enabled": True, "ca_file": str(other_ca)}))
    wrong.start()
    assert wait_until(lambda: "certificate verify failed" in (wrong.stats()["last_error"] or ""), 10), wrong.stats()
    assert not wrong.connected
    wrong.stop()

    insecure = EdgePublisher(make_config(tmp_path / "insecure", broker, tls={"enabled": True, "insecure": True}))
    insecure.start()
    assert wait_until(lambda: insecure.connected, 10), insecure.stats()
    insecure.stop()
    collector.close()


def test_inline_snapshot_travels_whole_and_an_oversized_one_is_removed(tmp_path, mosquitto):
    import base64
    import hashlib

    import cv2

    from tests.fixtures.media import clip

    cap = cv2.VideoCapture(str(clip("traffic_intersection_cctv_1.mp4")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    snapshot = {"content_type": "image/jpeg", "encoding": "base64", "sha256": hashlib.sha256(jpeg).hexdigest(),
                "bytes": len(jpeg), "data": base64.b64encode(jpeg).decode()}  # fmt: skip
    collector = MqttCollector(mosquitto, incidents_topic())
    pub = EdgePublisher(make_config(tmp_path, mosquitto))
    pub.start()
    inc = str(uuid.uuid4())
    pub.publish_incident({**incident_event(inc, 1, "opened"), "snapshot": snapshot})
    huge = {**snapshot, "data": "A" * 1_200_000, "bytes": 900_000}
    pub.publish_incident({**incident_event(inc, 2, "updated"), "snapshot": huge})
    assert pub.wait_drained(10) and collector.wait_for(lambda c: len(c.json("/incidents")) >= 2, 5)
    opened, updated = sorted(collector.json("/incidents"), key=lambda e: e["seq"])
    got = base64.b64decode(opened["snapshot"]["data"])
    assert got == jpeg and hashlib.sha256(got).hexdigest() == opened["snapshot"]["sha256"]
    assert cv2.imdecode(np.frombuffer(got, np.uint8), cv2.IMREAD_COLOR).shape == frame.shape
    assert updated["snapshot"] is None and pub.stats()["snapshots_stripped"] == 1
    pub.stop()
    collector.close()
