"""Prometheus metrics of the central service, scraped over HTTP and parsed with prometheus-client's own parser:

- ``GET /metrics`` of the API app after real ingest (an incident that opens a case, a duplicate, a dead letter):
  messages by outcome, dead letters by reason (this process and stored), filing latency, cases by state, SSE
  clients, webhook backlog; ``api.metrics_token`` protects it when set;
- ``gridwatch-central ingest --metrics-port`` (a separate process, real Mosquitto): its own listener counts what it
  ingested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.central_support import encode, incident_payload, make_central, topic
from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto, free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples[(name, tuple(sorted(labels.items())))]


def test_metrics_endpoint_counts_ingest_and_reads_the_database(sqlite_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    central = make_central(sqlite_url, tmp_path, {"webhooks": [{"url": "http://127.0.0.1:9/hook"}]})
    app = central.app(include_web=False)
    ingest = app.state.metrics.instrument(central.ingest)
    emitted = datetime.now(UTC) - timedelta(seconds=2)  # the edge sent it 2 s ago
    p = incident_payload(at=emitted)
    assert ingest.handle(topic(), encode(p)).case_created
    assert ingest.handle(topic(), encode(p)).outcome == "duplicate"
    assert ingest.handle(topic(), b"{not json").outcome == "dead_letter"
    ingest.handle_batch(
        [
            (topic(), encode(incident_payload(type="street_vending", zone="z2", at=emitted))),
            (topic(), encode({"schema": "gridwatch.incident/9"})),
        ]
    )

    with TestClient(app) as client:
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = samples(r.text)
    assert value(m, "gridwatch_ingest_messages_total", outcome="applied") == 2
    assert value(m, "gridwatch_ingest_messages_total", outcome="duplicate") == 1
    assert value(m, "gridwatch_ingest_messages_total", outcome="dead_letter") == 2
    assert value(m, "gridwatch_ingest_dead_letters_total", reason="malformed_json") == 1
    assert value(m, "gridwatch_ingest_dead_letters_total", reason="unknown_version") == 1
    assert value(m, "gridwatch_dead_letters_stored", reason="malformed_json") == 1  # from the table
    assert value(m, "gridwatch_ingest_cases_created_total") == 2
    assert value(m, "gridwatch_ingest_batch_seconds_count") == 4
    # filing latency: both cases about 2 s after the edge emitted them
    assert value(m, "gridwatch_filing_latency_seconds_count") == 2
    assert value(m, "gridwatch_filing_latency_seconds_bucket", le="1.0") == 0
    assert value(m, "gridwatch_filing_latency_seconds_bucket", le="5.0") == 2
    assert 4 <= value(m, "gridwatch_filing_latency_seconds_sum") < 10
    # cases by state from the database: parking is auto-filed, vending waits as reported; every state is listed
    assert value(m, "gridwatch_cases", state="filed") == 1
    assert value(m, "gridwatch_cases", state="reported") == 1
    assert value(m, "gridwatch_cases", state="closed") == 0
    assert value(m, "gridwatch_sse_clients") == 0
    assert value(m, "gridwatch_database_up") == 1
    # the webhook dispatcher ran in the app's lifespan; its receiver (port 9) refuses, so deliveries wait to retry
    assert ("gridwatch_webhook_backlog", ()) in m


def test_metrics_token_when_configured(sqlite_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    central = make_central(sqlite_url, tmp_path, {"api": {"metrics_token": "s3cret-scrape"}})
    app = central.app(include_web=False)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 200


@pytest.mark.slow
def test_separate_ingest_process_serves_its_own_metrics(sqlite_url: str, tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto", binary=ensure_mosquitto())
    broker.start()
    port = free_port()
    cfg = tmp_path / "central.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database_url": sqlite_url,
                "evidence_dir": str(tmp_path / "evidence"),
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "client_id": f"ingest-metrics-{port}",
                    "batch_wait_ms": 5,
                },
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central.cli",
            "ingest",
            "--config",
            str(cfg),
            "--no-migrate",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> dict | None:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - local test process
                    return samples(r.read().decode())
            except OSError:
                return None

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = scrape()
            if m and value(m, "gridwatch_ingest_connected") == 1:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the ingest process never served connected metrics")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="metrics-edge")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        payload = incident_payload(edge_id="edge-m", at=datetime.now(UTC))
        pub.publish(topic("edge-m"), json.dumps(payload), qos=1).wait_for_publish(5)
        pub.publish(topic("edge-m"), b"garbage", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = scrape() or {}
            if (
                m.get(("gridwatch_ingest_messages_total", (("outcome", "dead_letter"),))) == 1
                and m.get(("gridwatch_ingest_messages_total", (("outcome", "applied"),))) == 1
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"ingest metrics did not count the two messages: {m}")
        pub.loop_stop()
        pub.disconnect()
        assert value(m, "gridwatch_ingest_cases_created_total") == 1
        assert value(m, "gridwatch_filing_latency_seconds_count") == 1
        assert value(m, "gridwatch_cases", state="filed") == 1
        assert value(m, "gridwatch_ingest_queue_depth") == 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        broker.kill()
