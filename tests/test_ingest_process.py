"""``mqtt.receiver: process`` (central/ingest_process.py) through a real Mosquitto: a receiver child that is killed
mid-stream is started again and nothing is lost or filed twice; the child dies with its parent, so a killed central
leaves no orphan holding its broker session."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from central.db import Case, DeadLetter, IncidentEvent, make_engine, make_session_factory
from central.ingest_parse import DeadLetterReason
from central.ingest_process import ProcessIngest, make_ingest
from central.mqtt_ingest import MqttIngest
from tests.central_support import encode, incident_payload, make_central, topic
from tests.polling import wait_until
from tests.test_central_mqtt import Publisher, _start_ingest_process, _stop_ingest_process, mqtt_section, scalar

pytestmark = pytest.mark.slow


def test_dead_letter_reasons_cross_the_pipe_intact() -> None:
    reason = pickle.loads(pickle.dumps(DeadLetterReason("schema", "seq: 0 is outside 1..2147483647")))
    assert (reason.reason, reason.detail) == ("schema", "seq: 0 is outside 1..2147483647")


def test_the_receiver_setting_chooses_the_ingest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for receiver, cls in (("process", ProcessIngest), ("thread", MqttIngest)):
        c = make_central(url, tmp_path, {"mqtt": {"receiver": receiver}})
        assert type(make_ingest(c.config, session_factory=c.session_factory, ingest=c.ingest)) is cls


def test_killed_receiver_is_restarted_and_nothing_is_lost_or_filed_twice(db_url: str, tmp_path: Path,
                                                                         mosquitto: Any) -> None:
    c = make_central(db_url, tmp_path, mqtt_section(mosquitto, batch_max=20))
    runner = ProcessIngest(c.config, session_factory=c.session_factory, ingest=c.ingest)
    runner.start()
    pub = Publisher(mosquitto)
    events = lambda: scalar(c.session_factory, select(func.count()).select_from(IncidentEvent))  # noqa: E731
    n = 300
    payloads = [incident_payload(zone=f"spot-{i}") for i in range(n)]
    published = threading.Event()

    def publish_all() -> None:
        for i, p in enumerate(payloads):
            pub.publish(topic(), encode(p), wait=False).wait_for_publish(10)
            if i % 50 == 0:
                pub.publish(topic(), b"{not json", wait=False)  # dead letters cross the pipe too
            time.sleep(0.005)
        published.set()

    try:
        assert runner.wait_subscribed(30)
        first = runner.receiver_pid
        threading.Thread(target=publish_all, daemon=True).start()
        wait_until(lambda: events() >= 60, 30, "first 60 events")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: runner.receiver_pid != first and runner.subscribed, 30, "a new receiver, subscribed")
        assert published.wait(60)
        wait_until(lambda: events() == n, 60, f"all {n} events")
        time.sleep(0.5)
        assert events() == n
        with c.session_factory() as s:
            assert s.scalar(select(func.count()).select_from(Case)) == n
            assert {r for (r,) in s.execute(select(DeadLetter.reason))} == {"malformed_json"}
            assert s.scalar(select(func.count()).select_from(DeadLetter)) >= 6  # once each, or again if redelivered
        assert runner.stats["receiver_exits"] == 1 and runner.stats["receiver_starts"] == 2
    finally:
        pub.close()
        runner.stop()
        c.session_factory.kw["bind"].dispose()
    assert runner.receiver_pid is not None and not _alive(runner.receiver_pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def test_receiver_dies_with_a_killed_central(tmp_path: Path, mosquitto: Any) -> None:
    from central.db import upgrade

    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    upgrade(url)
    cfg = {"database_url": url, "evidence_dir": str(tmp_path / "evidence"),
           "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "central-orphan", "keepalive_s": 5}}
    config_path = tmp_path / "central.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    log_path = tmp_path / "ingest.log"
    proc = _start_ingest_process(config_path, log_path)
    engine = make_engine(url)
    try:
        wait_until(lambda: "ingesting from" in log_path.read_text(errors="replace"), 30, "ingest process start")
        children = _children(proc.pid)  # the receiver, and multiprocessing's resource tracker
        receivers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(receivers) == 1, children
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not _alive(receivers[0]), 10, "the receiver child gone with its parent")
        wait_until(lambda: not any(_alive(c) for c in children), 10, "every child gone")
        # and a new central gets the session: what is published now is filed
        proc = _start_ingest_process(config_path, log_path)
        wait_until(lambda: log_path.read_text(errors="replace").count("ingesting from") == 2, 30, "restart")
        pub = Publisher(mosquitto)
        try:
            pub.publish(topic(), encode(incident_payload(zone="after")))
            sf = make_session_factory(engine)
            wait_until(lambda: scalar(sf, select(func.count()).select_from(IncidentEvent)) == 1, 20, "the event")
        finally:
            pub.close()
    finally:
        _stop_ingest_process(proc)
        engine.dispose()
