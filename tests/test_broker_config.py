"""`gridwatch-central broker-config` against a real Mosquitto started with the files it generates: forged
publishes from another edge's login are not delivered, an edge login cannot take central's persistent session (and
central's queued messages stay for central), anonymous and unknown logins are refused, over plain MQTT and TLS.
The shipped deploy/mosquitto.conf is the generator's output and starts with generated site files.

No fixed sleeps: "nothing arrived" is decided after a round trip on the same connection (the broker writes any
delivery to a socket before a later PUBACK/SUBACK on that socket), so absence is proven, not waited for.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from central.broker_config import (
    BrokerConfigError,
    BrokerSite,
    TlsFiles,
    read_password_file,
    render_conf,
    verify_password,
    write_site,
)
from central.cli import main as central_main
from central.db import Case, upgrade
from central.mqtt_ingest import MqttIngest
from tests.central_support import encode, incident_payload, make_central
from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto, free_port, make_test_ca

REPO = Path(__file__).resolve().parent.parent
EDGES = ["edge-01", "edge-02"]
TIMEOUT = 10.0


@dataclass
class Site:
    broker: MosquittoBroker
    creds: dict[str, str]
    tls_port: int
    ca_file: Path
    out: Path


def _start_generated(workdir: Path, conf: Path, port: int) -> MosquittoBroker:
    binary = ensure_mosquitto()
    broker = MosquittoBroker(workdir / "harness", port=port, binary=binary)
    broker.conf_path = conf  # run the generated configuration, not the fixture's
    broker.log_path = workdir / "mosquitto.log"
    broker.start()
    return broker


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    ca, cert, key = make_test_ca(tmp_path / "pki")
    port, tls_port = free_port(), free_port()
    out = tmp_path / "broker"
    spec = BrokerSite(
        edges=list(EDGES), centrals=["central"], port=port, bind="127.0.0.1", tls=TlsFiles(ca, cert, key),
        tls_port=tls_port, tls_bind="127.0.0.1", data_dir=str(tmp_path / "data"),
        log_dest=f"file {tmp_path / 'mosquitto.log'}", run_as="root" if os.geteuid() == 0 else None,
    )
    (tmp_path / "data").mkdir()
    # Python-computed hashes here (passwd_binary=""): the real broker must accept the built-in $7$ format too.
    result = write_site(spec, out, passwd_binary="")
    broker = _start_generated(tmp_path, out / "mosquitto.conf", port)
    try:
        assert _wait_port(tls_port), broker.log_text()
        yield Site(broker, dict(result.new_credentials), tls_port, ca, out)
    finally:
        broker.kill()


def _wait_port(port: int) -> bool:
    import socket
    import time

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Client:
    """A paho client that records what happens (connack, messages, disconnects) and waits for acks."""

    def __init__(self, site: Site, user: str | None, *, client_id: str | None = None, tls: bool = False,
                 v5: bool = True, clean: bool = True, password: str | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.connack: Any = None
        self.session_present: bool | None = None
        self.disconnects = 0
        self._connected = threading.Event()
        self._lock = threading.Lock()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                             protocol=protocol, **kwargs)
        if user is not None:
            self.c.username_pw_set(user, password if password is not None else site.creds[user])
        if tls:
            self.c.tls_set(ca_certs=str(site.ca_file))
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.reconnect_delay_set(5, 10)  # a refused client must not hammer the broker during the test
        port = site.tls_port if tls else site.broker.port
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if clean else 600
            self.c.connect("127.0.0.1", port, keepalive=10, clean_start=clean, properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_disconnect(self, *_a: Any) -> None:
        self.disconnects += 1

    def wait_connack(self) -> Any:
        assert self._connected.wait(TIMEOUT), "no CONNACK"
        return self.connack

    def connected_ok(self) -> bool:
        return not self.wait_connack().is_failure

    def subscribe(self, *topics: str) -> list[Any]:
        done = threading.Event()
        granted: list[Any] = []

        def on_sub(_c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
            granted.extend(reasons)
            done.set()

        self.c.on_subscribe = on_sub
        self.c.subscribe([(t, 1) for t in topics])
        assert done.wait(TIMEOUT), f"no SUBACK for {topics}"
        return granted

    def publish(self, t: str, payload: bytes, retain: bool = False) -> None:
        info = self.c.publish(t, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {t}"

    def got(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, n: int) -> list[tuple[str, bytes]]:
        import time

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and len(self.got()) < n:
            time.sleep(0.02)
        return self.got()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_forged_publish_from_another_edge_is_not_delivered(site: Site) -> None:
    central = Client(site, "central", client_id="gridwatch-central")
    assert central.connected_ok()
    central.subscribe("gridwatch/v1/+/incidents", "gridwatch/v1/+/status", "gridwatch/v1/+/heartbeat",
                      "$share/central/gridwatch/v1/+/crowd")
    spy = Client(site, "edge-01", tls=True)  # an edge may read nothing, not even other edges' topics
    assert spy.connected_ok()
    spy.subscribe("gridwatch/v1/#", "#", "$SYS/#")
    forger = Client(site, "edge-02", tls=True, v5=False)
    assert forger.connected_ok()
    try:
        for leaf in ("incidents", "status", "heartbeat", "crowd"):
            forger.publish(f"gridwatch/v1/edge-01/{leaf}", b'{"forged": true}', retain=leaf == "status")
        forger.publish("gridwatch/v1/city-hall-99/incidents", b'{"forged": true}')
        forger.publish("gridwatch/v1/edge-02/incidents", b"sentinel")  # its own topic: allowed
        # The broker handles one connection's publishes in order: a delivered forgery would precede the sentinel.
        got = central.wait_for(1)
        assert got == [("gridwatch/v1/edge-02/incidents", b"sentinel")], got
        spy.publish("gridwatch/v1/edge-01/heartbeat", b"{}")  # round trip on the spy's own connection
        assert spy.got() == [], spy.got()
        # a retained forgery would reach every later subscriber: none was stored (a new subscription gets the
        # retained messages before its SUBACK; the second SUBACK is the round trip)
        central.subscribe("gridwatch/v1/edge-01/status")
        central.subscribe("gridwatch/v1/edge-01/crowd")
        assert [m for m in central.got() if b"forged" in m[1]] == []
    finally:
        for c in (central, spy, forger):
            c.close()


def test_edge_login_cannot_take_over_centrals_session(site: Site) -> None:
    central = Client(site, "central", client_id="gridwatch-central", clean=False)
    assert central.connected_ok()
    central.subscribe("gridwatch/v1/+/incidents")
    central.close()  # persistent session: the broker queues QoS 1 messages for central from now on

    edge = Client(site, "edge-01", v5=False)
    assert edge.connected_ok()
    sent = [f"incident-{i}".encode() for i in range(20)]
    for p in sent:
        edge.publish("gridwatch/v1/edge-01/incidents", p)
    edge.close()

    attackers = [
        Client(site, "edge-02", client_id="gridwatch-central", clean=False),  # central's configured client id
        Client(site, "edge-01", client_id="central", clean=False, v5=False, tls=True),  # central's user name
    ]
    for a, own in zip(attackers, ("edge-02", "edge-01"), strict=True):
        assert a.connected_ok()
        assert a.session_present is False  # a fresh session of its own, not central's
        a.subscribe("gridwatch/v1/+/incidents")
        # a resumed session's queue is sent right after CONNACK, before the SUBACK and this PUBACK
        a.publish(f"gridwatch/v1/{own}/heartbeat", b"{}")
        assert a.got() == [], f"attacker received {len(a.got())} of central's messages"
        a.close()

    # an edge login using another edge's client id does not kick that edge off either
    edge = Client(site, "edge-01", v5=False)
    assert edge.connected_ok()
    intruder = Client(site, "edge-02", client_id="edge-01", v5=False)
    assert intruder.connected_ok()
    intruder.publish("gridwatch/v1/edge-02/heartbeat", b"{}")
    edge.publish("gridwatch/v1/edge-01/incidents", b"after-attack")
    assert edge.disconnects == 0 and intruder.disconnects == 0

    back = Client(site, "central", client_id="gridwatch-central", clean=False)
    try:
        assert back.connected_ok()
        assert back.session_present is True
        got = back.wait_for(21)
        assert [p for _, p in got] == [*sent, b"after-attack"], f"central got {len(got)} of 21"
    finally:
        for c in (back, edge, intruder):
            c.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_anonymous_unknown_and_wrong_logins_are_refused(site: Site, tls: bool) -> None:
    attempts = [
        Client(site, None, tls=tls),
        Client(site, None, tls=tls, v5=False),
        Client(site, "city-hall-99", password="guess", tls=tls),
        Client(site, "edge-01", password="wrong-password", tls=tls, v5=False),
        Client(site, "edge-01", password=site.creds["edge-02"], tls=tls),  # another edge's password
    ]
    ok = Client(site, "edge-01", tls=tls)
    try:
        for a in attempts:
            reason = a.wait_connack()
            assert reason.is_failure, f"connection was accepted: {reason}"
        assert ok.connected_ok()
    finally:
        for c in (*attempts, ok):
            c.close()


def test_forged_incident_files_no_case_through_central_ingest(site: Site, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    c = make_central(url, tmp_path, {"mqtt": {
        "host": "127.0.0.1", "port": site.tls_port, "username": "central", "password": site.creds["central"],
        "client_id": "gridwatch-central", "keepalive_s": 5, "edges": EDGES,
        "tls": {"enabled": True, "ca_file": str(site.ca_file)}}})
    runner = MqttIngest(c.config, session_factory=c.session_factory, ingest=c.ingest)
    runner.start()
    forger = Client(site, "edge-02", tls=True)
    owner = Client(site, "edge-01", tls=True)
    try:
        assert runner.wait_subscribed(TIMEOUT), runner.health()
        assert forger.connected_ok() and owner.connected_ok()
        forger.publish("gridwatch/v1/edge-01/incidents", encode(incident_payload(edge_id="edge-01", zone="forged")))
        owner.publish("gridwatch/v1/edge-01/incidents", encode(incident_payload(edge_id="edge-01", zone="real")))

        def cases() -> list[str]:
            with c.session_factory() as s:
                return list(s.scalars(select(Case.zone)))

        import time

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not cases():
            time.sleep(0.05)
        assert cases() == ["real"]
        assert runner.health()["received"] == 1
        with c.session_factory() as s:
            assert s.scalar(select(func.count()).select_from(Case)) == 1
    finally:
        forger.close()
        owner.close()
        runner.stop()


# --------------------------------------------------------------------------- the command and the shipped default


def _non_comment(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_shipped_default_is_the_generator_output_and_starts(tmp_path: Path, capsys: Any, caplog: Any) -> None:
    shipped = (REPO / "deploy" / "mosquitto.conf").read_text()
    assert "allow_anonymous true" not in shipped
    docker = BrokerSite(edges=["x"], data_dir="/mosquitto/data/", log_dest="stdout")
    assert _non_comment(shipped) == _non_comment(render_conf(docker, "/mosquitto/site"))

    # generate site files with the CLI as docs/deploy.md says, then run the shipped file with local paths
    out = tmp_path / "broker"
    creds = tmp_path / "broker-credentials.yaml"
    rc = central_main(["broker-config", "--out", str(out), "--broker-dir", "/mosquitto/site", "--data-dir",
                       "/mosquitto/data/", "--log-dest", "stdout", "--edge", "edge-01", "--edge", "edge-02",
                       "--credentials", str(creds)])
    assert rc == 0
    assert _non_comment((out / "mosquitto.conf").read_text()) == _non_comment(shipped)
    text = creds.read_text()
    passwords = dict(re.findall(r'^([\w.-]+): "([^"]+)"', text, re.M))
    assert set(passwords) == {"central", "edge-01", "edge-02"}
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    printed = capsys.readouterr()
    logged = caplog.text
    for pw in passwords.values():
        assert len(pw) >= 32
        assert pw not in printed.out + printed.err + logged + (out / "passwd").read_text()

    port = free_port()
    (tmp_path / "data").mkdir()
    conf = shipped.replace("/mosquitto/site", str(out)).replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("log_dest stdout", f"log_dest file {tmp_path / 'mosquitto.log'}")
    if os.geteuid() == 0:
        conf += "user root\n"
    (tmp_path / "local.conf").write_text(conf)
    broker = _start_generated(tmp_path, tmp_path / "local.conf", port)
    s = Site(broker, passwords, port, tmp_path, out)
    try:
        anon = Client(s, None)
        edge = Client(s, "edge-01", v5=False)
        try:
            assert anon.wait_connack().is_failure
            assert edge.connected_ok()  # mosquitto_passwd hashes: accepted
            edge.publish("gridwatch/v1/edge-01/status", json.dumps({"state": "online"}).encode())
        finally:
            anon.close()
            edge.close()
    finally:
        broker.kill()


def test_rerun_keeps_passwords_rotate_changes_one(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "b"
    assert central_main(["broker-config", "--out", str(out), "--edge", "edge-01", "--edge", "edge-02"]) == 0
    first = dict(re.findall(r'^([\w.-]+): "([^"]+)"', capsys.readouterr().out, re.M))
    hashes = read_password_file(out / "passwd")
    assert set(first) == {"central", "edge-01", "edge-02"}
    assert all(verify_password(first[u], hashes[u]) for u in first)

    # add edge-03, drop edge-02: only edge-03 gets a password, the others keep theirs
    assert central_main(["broker-config", "--out", str(out), "--edge", "edge-01", "--edge", "edge-03"]) == 0
    second = dict(re.findall(r'^([\w.-]+): "([^"]+)"', capsys.readouterr().out, re.M))
    after = read_password_file(out / "passwd")
    assert set(second) == {"edge-03"}
    assert set(after) == {"central", "edge-01", "edge-03"}
    assert after["edge-01"] == hashes["edge-01"] and after["central"] == hashes["central"]
    acl = (out / "acl").read_text()
    assert "topic write gridwatch/v1/edge-03/#" in acl and "edge-02" not in acl

    assert central_main(["broker-config", "--out", str(out), "--edge", "edge-01", "--edge", "edge-03",
                         "--rotate", "edge-01"]) == 0
    third = dict(re.findall(r'^([\w.-]+): "([^"]+)"', capsys.readouterr().out, re.M))
    assert set(third) == {"edge-01"} and third["edge-01"] != first["edge-01"]
    assert verify_password(third["edge-01"], read_password_file(out / "passwd")["edge-01"])


def test_edges_from_central_yaml_and_bad_names(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "central.yaml"
    cfg.write_text("mqtt:\n  username: central-1\n  edges: [edge-a, edge-b]\n")
    assert central_main(["broker-config", "--config", str(cfg), "--out", str(tmp_path / "b")]) == 0
    assert set(read_password_file(tmp_path / "b" / "passwd")) == {"central-1", "edge-a", "edge-b"}
    acl = (tmp_path / "b" / "acl").read_text()
    assert "user central-1\ntopic read gridwatch/v1/+/#" in acl
    assert "user edge-a\ntopic write gridwatch/v1/edge-a/#" in acl
    capsys.readouterr()
    for bad in (["--edge", "a/b"], ["--edge", "+"], ["--edge", "x#"], ["--edge", "central"], ["--edge", "e:1"],
                ["--edge", "e1", "--edge", "e1"]):
        assert central_main(["broker-config", "--out", str(tmp_path / "x"), *bad]) == 2, bad
    assert "must match" in capsys.readouterr().err
    with pytest.raises(BrokerConfigError, match="no edges"):
        write_site(BrokerSite(edges=[]), tmp_path / "y")
    with pytest.raises(BrokerConfigError, match="no ca file"):
        from central.broker_config import find_tls_files

        find_tls_files(tmp_path)
