"""The edge's HTTP endpoint (``health.listen``): Prometheus metrics and /healthz, scraped over real HTTP from a worker
that publishes through a real Mosquitto. No footage and no model: a stub detector, frames made with numpy, and an
incident opened with constructed detections."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.config import parse_config
from edge.detections import Detections
from edge.metrics import start_health_server
from edge.mqtt import EdgePublisher
from edge.sources import Frame
from edge.worker import EdgeWorker
from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto
from tests.test_worker_lifecycle import KERB, PARKED

FRAME = (640, 480)
T0 = 1_763_780_400.0


class StubDetector:
    name = "stub"
    version = "0"
    last_timings: dict = {}

    def detect_batch(self, images, tilings=None, class_maps=None):  # noqa: ANN001 - the Detector interface
        time.sleep(0.003)
        return [Detections.empty() for _ in images]


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - local test server
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_config_listen_is_validated() -> None:
    base = {"edge_id": "e", "cameras": [{"id": "c", "url": "x.mp4"}]}
    assert parse_config({**base, "health": {"listen": "127.0.0.1:9108"}}, env={}).health.address() == ("127.0.0.1",
                                                                                                         9108)
    assert parse_config(base, env={}).health.address() is None
    assert parse_config({**base, "health": {"listen": "${X:-}"}}, env={}).health.listen is None
    with pytest.raises(Exception, match="HOST:PORT"):
        parse_config({**base, "health": {"listen": "9108"}}, env={})


@pytest.fixture
def broker(tmp_path: Path):
    b = MosquittoBroker(tmp_path / "mosquitto", binary=ensure_mosquitto())
    b.start()
    yield b
    b.kill()


def test_metrics_and_healthz_of_a_running_worker(tmp_path: Path, broker: MosquittoBroker) -> None:
    cfg = parse_config({
        "edge_id": "edge-m",
        "mqtt": {"host": broker.host, "port": broker.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "snapshots": {"dir": str(tmp_path / "snaps")},
        "cameras": [
            {"id": "cam-a", "url": str(tmp_path / "missing-a.mp4"), "detect_fps": 2, "stall_timeout_s": 60,
             "zones": [{"name": "kerb", "type": "no_parking", "points": KERB, "dwell_s": 5, "grace_s": 5}]},
            {"id": "cam-b", "url": str(tmp_path / "missing-b.mp4"), "enabled": False},
        ],
    }, env={})
    publisher = EdgePublisher(cfg)
    worker = EdgeWorker(cfg, publisher=publisher, detector=StubDetector())  # type: ignore[arg-type]
    worker.start()
    server = start_health_server(worker, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        # three analysed frames through the worker's own batch path (detector → tracker → rules)
        p = worker.pipelines["cam-a"]
        image = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
        for i in range(3):
            worker._process([(p, Frame("cam-a", image, T0 + i, float(i), i, time.monotonic()))])
        # an incident, published and acknowledged by the broker
        for i in range(13):
            for event in p.engine.update(PARKED, T0 + 10 + i * 0.5, FRAME).events:
                worker._evidence.put((p, event, None, time.monotonic()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and publisher.stats()["acked"] < 1:
            time.sleep(0.05)
        assert publisher.stats()["acked"] == 1

        status, body = get(f"{base}/metrics")
        assert status == 200
        m = samples(body.decode())
        a = (("camera_id", "cam-a"),)
        assert m[("gridwatch_edge_camera_detect_fps_target", a)] == 2
        assert m[("gridwatch_edge_camera_detect_fps_target", (("camera_id", "cam-b"),))] == 0
        assert m[("gridwatch_edge_camera_frames_analysed_total", a)] == 3
        assert m[("gridwatch_edge_camera_analysed_fps", a)] > 0
        assert abs(m[("gridwatch_edge_camera_last_analysed_timestamp_seconds", a)] - time.time()) < 30
        assert ("gridwatch_edge_camera_decode_fps", a) in m
        assert m[("gridwatch_edge_camera_state", (("camera_id", "cam-b"), ("state", "disabled")))] == 1
        assert sum(v for (name, labels), v in m.items()
                   if name == "gridwatch_edge_camera_state" and ("camera_id", "cam-a") in labels) == 1
        assert m[("gridwatch_edge_camera_open_incidents", a)] == 1
        assert m[("gridwatch_edge_detector_batch_seconds_count", ())] == 3
        assert m[("gridwatch_edge_detector_batch_seconds_bucket", (("le", "+Inf"),))] == 3
        assert m[("gridwatch_edge_detector_batch_seconds_sum", ())] >= 0.009  # the stub sleeps 3 ms per batch
        assert m[("gridwatch_edge_incident_events_total", (("event", "opened"),))] == 0  # counted by the loop only
        assert m[("gridwatch_edge_outbox_depth", ())] == 0
        assert m[("gridwatch_edge_mqtt_connected", ())] == 1
        assert m[("gridwatch_edge_events_acked_total", ())] == 1
        assert abs(m[("gridwatch_edge_last_publish_timestamp_seconds", ())] - time.time()) < 30

        status, body = get(f"{base}/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok", health
        assert health["cameras"] == {"cam-a": worker.health()[0]["state"], "cam-b": "disabled"}
        assert health["mqtt"]["connected"] is True

        assert get(f"{base}/nothing")[0] == 404
        worker.last_loop_at = time.monotonic() - 600  # the pipeline loop stopped turning
        status, body = get(f"{base}/healthz")
        assert status == 503 and json.loads(body)["status"] == "error"
    finally:
        server.stop()
        worker.close()
