"""create_app(start_ingest=True): the lifespan runs central-core's MQTT ingest against a real Mosquitto, and a
published incident becomes a case visible through the API; shutdown stops the ingest."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient

from central.db import upgrade
from central.tokens import create_token
from tests.central_support import encode, incident_payload, make_central


def test_lifespan_runs_mqtt_ingest(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    central = make_central(
        url,
        tmp_path,
        {"mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": f"central-{uuid.uuid4().hex[:8]}"}},
    )
    app = central.app(start_ingest=True)
    with central.session_factory() as s:
        token, _ = create_token(s, "viewer", "viewer")
        s.commit()
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        ingest = app.state.ingest
        assert ingest is not None and ingest.wait_subscribed(10)
        health = client.get("/healthz").json()["ingest"]
        assert health["connected"] is True and health["subscribed"] is True
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:8]}")
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        payload = incident_payload(type="illegal_parking", snapshot=True)
        pub.publish("gridwatch/v1/edge-test-01/incidents", encode(payload), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 10
        items: list = []
        while time.monotonic() < deadline and not items:
            items = client.get("/api/v1/cases", headers=h).json()["items"]
            time.sleep(0.05)
        assert len(items) == 1 and items[0]["category"] == "illegal_parking" and items[0]["state"] == "filed"
        assert items[0]["snapshot_sha256"] == payload["snapshot"]["sha256"]
        assert items[0]["camera_id"] == "cam-1"
    assert app.state.ingest is None and not ingest.connected
