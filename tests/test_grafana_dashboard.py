"""deploy/grafana/gridwatch.json only charts metrics that exist: every ``gridwatch_*`` name in its queries appears in
the real output of central's /metrics (with ingest, a live frame and a dead letter behind it) or of the edge's
exporter (a worker that analysed a frame)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from central.mqtt_ingest import MqttIngest
from edge.config import parse_config
from edge.metrics import EdgeMetrics
from edge.mqtt.publisher import EdgePublisher
from edge.sources import Frame
from edge.worker import EdgeWorker
from tests.central_support import encode, incident_payload, make_central, topic
from tests.detector_stubs import NoBoxes

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "gridwatch.json"
METRIC = re.compile(r"\bgridwatch_[a-z0-9_]+\b")


def sample_names(exposition: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines() if line and line[0] != "#"}


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def central_exposition(sqlite_url: str, tmp_path: Path) -> str:
    from fastapi.testclient import TestClient

    central = make_central(sqlite_url, tmp_path)
    app = central.app(include_web=False)
    ingest = app.state.metrics.instrument(central.ingest)
    assert ingest.handle(topic(), encode(incident_payload())).case_created
    assert ingest.handle(topic(), b"{not json").outcome == "dead_letter"
    status = {"edge_id": "edge-test-01", "state": "online", "at": central.clock.now().isoformat()}
    assert ingest.handle(topic(leaf="status"), encode(status)).outcome != "dead_letter"
    runner = MqttIngest(central.config, session_factory=central.session_factory, ingest=ingest)  # never started
    assert runner.frames is not None
    runner.frames.process("gridwatch/v1/edge-test-01/cameras/cam-1/frame", b"")
    with TestClient(app) as client:
        app.state.ingest = runner
        return client.get("/metrics").text


def edge_exposition(tmp_path: Path) -> str:
    cfg = parse_config({
        "edge_id": "edge-g", "mqtt": {"host": "127.0.0.1", "port": 9},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")}, "snapshots": {"dir": str(tmp_path / "snaps")},
        "cameras": [{"id": "cam-g", "url": str(tmp_path / "missing.mp4"), "stall_timeout_s": 60}],
    }, env={})  # fmt: skip
    worker = EdgeWorker(cfg, publisher=EdgePublisher(cfg), detector=NoBoxes())  # the publisher is never started
    metrics = EdgeMetrics(worker)
    worker._add_camera(cfg.cameras[0])  # its source finds no file; the frame below goes through the batch path
    p = worker.pipelines["cam-g"]
    try:
        image = np.zeros((240, 320, 3), np.uint8)
        worker._process([(p, Frame("cam-g", image, time.time(), 0.0, 0, time.monotonic()))])
        return metrics.render().decode()
    finally:
        p.source.stop()


def test_every_dashboard_metric_is_exported(sqlite_url: str, tmp_path: Path) -> None:
    exported = sample_names(central_exposition(sqlite_url, tmp_path)) | sample_names(edge_exposition(tmp_path))
    queries = dashboard_queries()
    assert len(queries) >= 20
    referenced = {(title, name) for title, expr in queries for name in METRIC.findall(expr)}
    missing = sorted({f"{name} (panel {title!r})" for title, name in referenced if name not in exported})
    assert not missing, f"the dashboard charts metrics no exporter has: {missing}"
    # and it covers what the operations issue asks to watch
    names = {name for _, name in referenced}
    wanted = {
        "gridwatch_ingest_messages_total", "gridwatch_ingest_dead_letters_total",
        "gridwatch_filing_latency_seconds_bucket", "gridwatch_cases", "gridwatch_sse_clients",
        "gridwatch_webhook_backlog", "gridwatch_edge_camera_analysed_fps", "gridwatch_edge_camera_decode_fps",
        "gridwatch_edge_detector_batch_seconds_bucket", "gridwatch_edge_outbox_depth",
        "gridwatch_edge_last_publish_timestamp_seconds", "gridwatch_live_frames_total",
    }  # fmt: skip
    assert wanted <= names, sorted(wanted - names)


def test_dashboard_is_importable_grafana_json() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["uid"] == "gridwatch" and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
