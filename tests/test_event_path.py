"""One durable event path across central processes: a case filed by a separate ``gridwatch-central ingest``
process (real subprocess, real Mosquitto) appears on the API process's SSE stream — with its outbox id — and
reaches a webhook receiver with the same event id, on SQLite and PostgreSQL.

The API process here is this test process (uvicorn in a thread, no MQTT ingest of its own): it shares nothing
with the ingest process but the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from central.app import create_app
from central.config import parse_central_config
from central.db import Case, WebhookDelivery, make_engine, make_session_factory
from central.tokens import create_token
from central.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.central_support import encode, incident_payload, topic
from tests.polling import wait_until
from tests.sse import SseFrames
from tests.test_api_webhooks import Receiver

pytestmark = pytest.mark.slow
SECRET = "path-secret"


def _start_ingest(config_path: Path, log_path: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("gridwatch-central")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "central.cli"]
    return subprocess.Popen(
        [*cmd, "--log-level", "WARNING", "ingest", "--config", str(config_path), "--no-migrate"],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class SseReader(threading.Thread):
    """Reads the API's stream in the background; ``frames`` collects (event, data, id)."""

    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.frames: list[tuple[str, str, int | None]] = []
        self.connected = threading.Event()
        self.stop = False

    def run(self) -> None:
        with (
            httpx.Client(base_url=self.base, timeout=30) as client,
            client.stream("GET", "/api/v1/stream", headers={"Authorization": f"Bearer {self.token}"}) as resp,
        ):
            self.connected.set()
            frames = SseFrames()
            for line in resp.iter_lines():  # keep-alive comments every 0.3 s: the stop flag is seen soon
                if self.stop:
                    return
                if frame := frames.feed(line):
                    self.frames.append(frame)


def test_case_from_a_separate_ingest_process_reaches_sse_and_webhook(
    db_url: str, tmp_path: Path, mosquitto: Any
) -> None:
    import uvicorn

    receiver = Receiver()
    log_path = tmp_path / "ingest.log"
    doc = {
        "database_url": db_url,
        "evidence_dir": str(tmp_path / "evidence"),
        "mqtt": {
            "host": mosquitto.host,
            "port": mosquitto.port,
            "client_id": f"ingest-{uuid.uuid4().hex[:6]}",
            "keepalive_s": 5,
            "batch_wait_ms": 5,
        },
        "webhooks": [{"url": receiver.url, "secret": SECRET, "events": ["case.created"]}],
        "events": {"poll_s": 0.2},
    }
    config_path = tmp_path / "central.yaml"
    config_path.write_text(yaml.safe_dump(doc))
    proc = _start_ingest(config_path, log_path)  # first: it takes the longest to start
    cfg = parse_central_config(doc)
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    with sf() as s:
        token, _ = create_token(s, "wall", "viewer")
        s.commit()
    app = create_app(cfg, session_factory=sf, include_web=False)  # the API process: no MQTT of its own
    app.state.sse_keepalive_s = 0.3
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2)
    )
    api = threading.Thread(target=server.run, daemon=True)
    api.start()
    sse: SseReader | None = None
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:6]}")
    try:
        wait_until(lambda: server.started, 30, "uvicorn")
        port = server.servers[0].sockets[0].getsockname()[1]
        sse = SseReader(f"http://127.0.0.1:{port}", token)
        sse.start()
        assert sse.connected.wait(30)
        wait_until(lambda: "ingesting from" in log_path.read_text(errors="replace"), 30, "the ingest process")
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        payload = incident_payload(type="illegal_parking", zone=f"z-{uuid.uuid4().hex[:6]}")
        pub.publish(topic(), encode(payload), qos=1).wait_for_publish(10)

        wait_until(lambda: any(e == "case.created" for e, _, _ in sse.frames), 30, "case.created on the SSE stream")
        ((kind, data, event_id),) = [f for f in sse.frames if f[0] == "case.created"]
        with sf() as s:
            case = s.scalars(select(Case).where(Case.zone == payload["zone"]["name"])).one()
        assert json.loads(data)["id"] == case.id and event_id is not None
        headers, body = receiver.wait_for(1, timeout=30)[0]
        assert int(headers[EVENT_ID_HEADER.lower()]) == event_id  # the same id on both paths: dedup key
        assert json.loads(body)["data"]["id"] == case.id
        assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()], headers[TIMESTAMP_HEADER.lower()])
        wait_until(lambda: _statuses(sf) == ["delivered"], 30, "the delivery record")
        # the auto-file of illegal parking is part of the created case; nothing else was owed
        assert [e for e, _, eid in sse.frames if eid is not None] == ["case.created"]
    finally:
        if sse is not None:
            sse.stop = True
            sse.join(5)  # it leaves at the next keep-alive, so the server need not wait for the stream
        pub.loop_stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.should_exit = True
        api.join(10)
        receiver.close()
        engine.dispose()


def _statuses(sf: Any) -> list[str]:
    with sf() as s:
        return list(s.scalars(select(WebhookDelivery.status)))
