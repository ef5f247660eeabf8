"""In a real Chromium: a live frame published over MQTT like an edge does (retained, on the camera's frame topic)
becomes the zone editor's background and the camera's thumbnail on the cameras page; a camera without one falls
back to its newest case snapshot."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
from playwright.sync_api import expect

from edge.config import LiveFrameConfig
from edge.live_frames import encode_frame, frame_message
from tests.browser.central_server import EDGE_ID, RunningCentral
from tests.browser.conftest import shot
from tests.fixtures.media import MEDIA_DIR
from tests.fixtures.mqtt import MosquittoBroker

CAMERA = "cam-street-02"  # has a case snapshot in the seeded demo, and no live frame until this test sends one


def _cameras(central: RunningCentral) -> list[dict]:
    req = urllib.request.Request(f"{central.url}/api/v1/cameras",
                                 headers={"Authorization": f"Bearer {central.tokens['viewer']}"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - local test server
        return json.load(r)["items"]


def test_live_frame_is_the_zone_editor_background_and_the_thumbnail(
    sign_in, central: RunningCentral, broker: MosquittoBroker, artifacts: Path
) -> None:  # noqa: ANN001
    cap = cv2.VideoCapture(str(MEDIA_DIR / "street_parking_residential_1.mp4"))
    ok, image = cap.read()
    cap.release()
    assert ok
    jpeg, w, h = encode_frame(image, LiveFrameConfig())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-edge-frames-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        msg = frame_message(EDGE_ID, CAMERA, jpeg, w, h, time.time())
        client.publish(f"gridwatch/v1/{EDGE_ID}/cameras/{CAMERA}/frame", json.dumps(msg), qos=0,
                       retain=True).wait_for_publish(5)  # fmt: skip
        deadline = time.monotonic() + 15
        while not any(c["camera_id"] == CAMERA and c["live_frame"] for c in _cameras(central)):
            assert time.monotonic() < deadline, "central did not store the live frame"
            time.sleep(0.2)
    finally:
        client.disconnect()
        client.loop_stop()

    page = sign_in("admin", viewport={"width": 1366, "height": 960}, next_path=f"/zones?camera={CAMERA}")
    expect(page.locator("body[data-ready=true]")).to_have_count(1)
    expect(page.locator("#ze-source")).to_have_attribute("data-source", "live")
    expect(page.locator("#ze-svg image.ze-bg-live")).to_have_count(1)
    assert page.locator("#ze-svg").get_attribute("viewBox") == f"0 0 {w} {h}"  # drawn at the frame's own size
    shot(page, artifacts, "zones-live-frame")
    # a camera with no live frame: its newest case snapshot, said so
    page.select_option("#ze-camera", "cam-intersection-01")
    expect(page.locator("#ze-source")).to_have_attribute("data-source", "snapshot")
    expect(page.locator("#ze-svg image.ze-bg-snapshot")).to_have_count(1)

    cams = sign_in("viewer", next_path="/cameras")
    card = cams.locator(f'article[data-camera-id="{CAMERA}"] .cam-snap')
    expect(card).to_have_attribute("data-source", "live")
    expect(card.locator(".cam-snap-time")).to_contain_text("Live")
    loaded = card.locator("img").evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert loaded == w
    expect(cams.locator('article[data-camera-id="cam-intersection-01"] .cam-snap')).to_have_attribute(
        "data-source", "snapshot"
    )
