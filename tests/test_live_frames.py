"""Live frames end to end: a real edge worker on real footage publishes a small clean frame per camera on start,
retained, through a real Mosquitto; central's ingest validates and keeps it; the API serves it (Bearer or the signed
URL in /api/v1/cameras). Malformed frames become dead letters naming the camera and the cause, and never replace
the good frame already kept. No detector: detection is not what is tested (a stub returns no boxes)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select

from central.db import DeadLetter
from central.live_frames import LiveFrameIngest, LiveFrameStore
from central.mqtt_ingest import MqttIngest
from edge.config import LiveFrameConfig, parse_config
from edge.live_frames import LiveFrames, encode_frame, frame_message
from edge.mqtt.publisher import EdgePublisher
from edge.worker import EdgeWorker
from tests.detector_stubs import NoBoxes
from tests.fixtures.media import clip
from tests.fixtures.mqtt import MqttCollector
from tests.polling import wait_until
from tests.test_api_support import make_api

CLIP = "traffic_intersection_cctv_1.mp4"  # 640x480


def clip_frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip(CLIP)))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def _off_pixels(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ by more than JPEG noise could make them (drawn lines and labels do)."""
    return float(np.mean(cv2.absdiff(a, b).max(axis=2) > 64))


def test_edge_publishes_a_clean_frame_on_start_and_central_serves_it(
    sqlite_url: str, tmp_path: Path, mosquitto: Any
) -> None:
    env = make_api(
        sqlite_url,
        tmp_path,
        {"mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": f"central-{uuid.uuid4().hex[:6]}"}},
    )
    runner = MqttIngest(env.central.config, session_factory=env.central.session_factory, ingest=env.central.ingest)
    env.app.state.ingest = runner
    runner.start()
    assert runner.wait_subscribed(10)
    edge_cfg = parse_config({
        "edge_id": "edge-lf",
        "mqtt": mosquitto.mqtt_config(live_frames={"interval_s": 3600, "max_width": 320}, heartbeat_s=1),
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "snapshots": {"dir": str(tmp_path / "snaps"), "annotated_every_s": 1},  # overlays exist, but elsewhere
        "cameras": [{"id": "cam-lf", "url": str(clip(CLIP)), "detect_fps": 2, "location": {"grid_cell": "g-1"},
                     "zones": [{"name": "kerb", "type": "no_parking", "points": [[0, 0.5], [0.5, 0.5], [0.5, 1]]}]}],
    }, env={})  # fmt: skip
    publisher = EdgePublisher(edge_cfg)
    worker = EdgeWorker(edge_cfg, publisher=publisher, detector=NoBoxes())
    worker.start()
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 60}, daemon=True)
    thread.start()
    try:
        store = LiveFrameStore(env.central.config.live_frames.directory(env.central.config.evidence_dir))
        frame = wait_until(lambda: store.get("cam-lf"), 30, "central to store the edge's first live frame")
        wait_until(lambda: env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"], 20,
                   "the heartbeat's camera row")  # fmt: skip
    finally:
        worker.stop()
        thread.join(20)
        worker.close()
        runner.stop()
    assert (frame.edge_id, frame.width, frame.height) == ("edge-lf", 320, 240)  # scaled to live_frames.max_width
    assert publisher.stats()["frames_sent"] == 1  # on start; the next one is due in an hour

    res = env.client.get("/api/v1/cameras/cam-lf/frame", headers=env.auth("viewer"))
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    assert res.headers["x-frame-at"] == frame.at and res.headers["etag"] == f'"{frame.sha256}"'
    img = cv2.imdecode(np.frombuffer(res.content, np.uint8), cv2.IMREAD_COLOR)
    # clean: it is one of the clip's own first frames (JPEG noise only), not the annotated copy with zones drawn in
    frames = clip_frames(90, (320, 240))
    live_off = min(_off_pixels(img, f) for f in frames)
    annotated = cv2.resize(cv2.imread(str(tmp_path / "snaps" / "annotated" / "cam-lf.jpg")), (320, 240))
    drawn_off = min(_off_pixels(annotated, f) for f in frames)
    print(f"pixels off by > 64 levels: live frame {live_off:.4f}, annotated {drawn_off:.4f}")
    assert live_off < 0.003, f"the live frame is not one of the clip's frames ({live_off:.2%} pixels differ)"
    assert drawn_off > 0.01  # the check would see overlays: the annotated copy (zones drawn in) fails it

    cam = env.client.get("/api/v1/cameras", headers=env.auth("viewer")).json()["items"][0]
    assert cam["camera_id"] == "cam-lf" and cam["live_frame"]["at"] == frame.at
    signed = env.client.get(cam["live_frame"]["url"])  # an <img> needs no header: the signed URL is the credential
    assert signed.status_code == 200 and signed.content == res.content
    assert env.client.get("/api/v1/cameras/cam-lf/frame").status_code == 401

    # retained on the broker: a dashboard process that subscribes later still gets it at once
    late = MqttCollector(mosquitto, "gridwatch/v1/+/cameras/+/frame", qos=0)
    try:
        assert late.wait_for(lambda c: c.snapshot(), 10)
        topic, payload, retained = late.snapshot()[0]
        assert topic == "gridwatch/v1/edge-lf/cameras/cam-lf/frame" and retained
        assert base64.b64decode(json.loads(payload)["data"]) == res.content
    finally:
        late.close()


def _frame_payload(jpeg: bytes, camera_id: str = "cam-x", **over: Any) -> bytes:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    msg = frame_message("edge-x", camera_id, jpeg, img.shape[1], img.shape[0], time.time())
    return json.dumps({**msg, **over}).encode()


def _with_data(data: bytes) -> dict[str, Any]:
    return {"data": base64.b64encode(data).decode(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_malformed_frames_are_dead_letters_naming_camera_and_cause(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path, {"live_frames": {"max_bytes": 60_000}})
    cfg = env.central.config
    store = LiveFrameStore(cfg.live_frames.directory(cfg.evidence_dir))
    ingest = LiveFrameIngest(cfg, store, env.central.session_factory)
    topic = "gridwatch/v1/edge-x/cameras/cam-x/frame"
    good_image = clip_frames(1, (320, 240))[0]
    good = encode_frame(good_image, LiveFrameConfig(max_width=320))[0]
    assert ingest.process(topic, _frame_payload(good)) == "stored"

    ok, png = cv2.imencode(".png", good_image[:48, :64])
    big = good + bytes(61_000 - len(good))  # over max_bytes decoded, while its payload is under the payload bound
    refused = {
        "png": (_frame_payload(good, **_with_data(png.tobytes())), "bad_frame", "only JPEG"),
        "html": (
            _frame_payload(good, **_with_data(b"\xff\xd8\xff<html>not a picture</html>")),
            "bad_frame",
            "no valid JPEG header",
        ),
        "truncated": (_frame_payload(good, **_with_data(good[: len(good) // 3])), "bad_frame", "does not decode"),
        "too big": (_frame_payload(good, **_with_data(big)), "bad_frame", "over live_frames.max_bytes=60000"),
        "huge payload": (b"{" + b" " * 200_000 + b"}", "oversized", "for live_frames.max_bytes=60000"),
        "wrong sha": (_frame_payload(good, sha256="0" * 64), "bad_frame", "does not match its bytes/sha256"),
        "not json": (b"\xff\xd8\xff\xe0 raw jpeg bytes", "malformed_json", ""),
        "other camera": (_frame_payload(good, camera_id="cam-y"), "topic_mismatch", "cam-y"),
    }
    for name, (payload, _, _) in refused.items():
        assert ingest.process(topic, payload) == "dead_letter", name
    with env.central.session_factory() as s:
        rows = s.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
    assert len(rows) == len(refused)
    for row, (name, (payload, reason, cause)) in zip(rows, refused.items(), strict=True):
        assert (row.topic, row.reason) == (topic, reason), name
        assert "camera 'cam-x'" in row.detail and cause in row.detail, (name, row.detail)
        assert row.size == len(payload)
    # nothing refused replaced the good frame
    res = env.client.get("/api/v1/cameras/cam-x/frame", headers=env.auth("viewer"))
    assert res.status_code == 200 and res.content == good

    # ids never become paths; an empty retained payload (camera removed at the edge) clears the frame
    assert ingest.process("gridwatch/v1/edge-x/cameras/..%2f..%2fetc/frame", _frame_payload(good)) == "dead_letter"
    assert env.client.get("/api/v1/cameras/..%2Fevil/frame", headers=env.auth("viewer")).status_code in (400, 404)
    bad_id = env.client.get("/api/v1/cameras/.hidden/frame", headers=env.auth("viewer"))
    assert bad_id.status_code == 400 and bad_id.json()["code"] == "invalid_camera_id"
    assert ingest.process(topic, b"") == "cleared"
    gone = env.client.get("/api/v1/cameras/cam-x/frame", headers=env.auth("viewer"))
    assert gone.status_code == 404 and gone.json()["code"] == "no_live_frame"
    assert sorted(p.name for p in store.root.iterdir()) == []


def test_live_frames_rate_and_size(tmp_path: Path) -> None:
    """One frame per camera on its first offer, then none until the interval has passed; scaled and bounded."""
    sent: list[tuple[str, dict]] = []
    lf = LiveFrames(LiveFrameConfig(interval_s=60, max_width=200, max_bytes=10_000), "edge-r",
                    lambda cam, msg: sent.append((cam, msg)))  # fmt: skip
    frame = clip_frames(1, (640, 480))[0]
    assert lf.offer("a", frame) and lf.offer("b", frame)
    assert not lf.offer("a", frame)  # within the interval
    lf._last["a"] -= 61  # an interval later
    assert lf.offer("a", frame)
    assert [c for c, _ in sent] == ["a", "b", "a"]
    msg = sent[0][1]
    jpeg = base64.b64decode(msg["data"])
    assert (msg["width"], msg["height"]) == (200, 150) and len(jpeg) == msg["bytes"] <= 10_000
    assert hashlib.sha256(jpeg).hexdigest() == msg["sha256"]
    lf.forget("a")  # a reopened camera sends at once
    assert lf.offer("a", frame)
