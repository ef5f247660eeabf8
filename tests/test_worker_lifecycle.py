"""Camera lifecycle on hot reload: removing a camera or changing its stream settings closes its open incidents
(``close_reason`` ``camera_removed`` / ``reconfigured``) before its pipeline is dropped, through the same evidence
thread as every other event. No footage and no detector: incidents are opened with constructed detections."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np

from edge.config import parse_config
from edge.detections import Detections
from edge.worker import EdgeWorker

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "edge/schemas/incident.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
FRAME = (640, 480)
T0 = 1_763_780_400.0
KERB = [[0.0, 0.5], [0.3, 0.5], [0.3, 0.9], [0.0, 0.9]]
PARKED = Detections([[20, 300, 120, 380]], [0.8], np.zeros(1), ["car"], [1])


class StubDetector:
    name = "stub"
    version = "0"


class RecordingPublisher:
    def __init__(self) -> None:
        self.incidents: list[dict] = []
        self.lock = threading.Lock()

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def publish_crowd(self, figure: dict) -> None: ...
    def publish_heartbeat(self, cameras: list, counters: dict) -> None: ...

    def publish_incident(self, payload: dict) -> None:
        with self.lock:
            self.incidents.append(payload)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.incidents) >= n:
                    return list(self.incidents)
            time.sleep(0.01)
        raise AssertionError(f"expected {n} incident events, got {self.incidents}")


def _config(tmp_path: Path, cameras: list[dict]):
    return parse_config({
        "edge_id": "edge-t",
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "snapshots": {"dir": str(tmp_path / "snaps")},
        # sources that never deliver a frame: the test drives the rule engines itself
        "cameras": [{"url": str(tmp_path / f"{c['id']}-missing.mp4"), "stall_timeout_s": 60, **c} for c in cameras],
    }, env={})


def _camera(cam_id: str, **over) -> dict:
    return {"id": cam_id, "zones": [{"name": "kerb", "type": "no_parking", "points": KERB, "dwell_s": 5,
                                     "grace_s": 5}], **over}


def _open_incident(worker: EdgeWorker, cam_id: str) -> None:
    """A car parks for 6 s in the kerb zone of ``cam_id``; the ``opened`` event goes through the evidence thread."""
    p = worker.pipelines[cam_id]
    for i in range(13):
        for event in p.engine.update(PARKED, T0 + i * 0.5, FRAME).events:
            worker._evidence.put((p, event, None, time.monotonic()))


def test_removed_and_reconfigured_cameras_close_their_open_incidents(tmp_path: Path) -> None:
    pub = RecordingPublisher()
    cfg = _config(tmp_path, [_camera("cam-a"), _camera("cam-b"), _camera("cam-c")])
    worker = EdgeWorker(cfg, publisher=pub, detector=StubDetector())  # type: ignore[arg-type]
    worker.start()
    try:
        for cam in ("cam-a", "cam-b", "cam-c"):
            _open_incident(worker, cam)
        opened = {e["camera"]["id"]: e for e in pub.wait_for(3)}
        assert {e["event"] for e in opened.values()} == {"opened"}

        # cam-a removed, cam-b's stream settings change, cam-c only gets a new name (zones/rules path: stays open)
        worker.apply_config(_config(tmp_path, [_camera("cam-b", detect_fps=2), _camera("cam-c", name="C")]))
        events = pub.wait_for(5)[3:]
        closed = {e["camera"]["id"]: e for e in events}
        assert set(closed) == {"cam-a", "cam-b"}
        for cam, reason in (("cam-a", "camera_removed"), ("cam-b", "reconfigured")):
            e = closed[cam]
            VALIDATOR.validate(e)
            assert e["event"] == "closed" and e["close_reason"] == reason
            assert e["incident_id"] == opened[cam]["incident_id"] and e["seq"] == opened[cam]["seq"] + 1
            assert e["ended_at"] is not None
        assert "cam-a" not in worker.pipelines
        assert worker.pipelines["cam-b"].engine.open_incident_count() == 0  # a fresh pipeline
        assert worker.pipelines["cam-c"].engine.open_incident_count() == 1
        time.sleep(0.1)
        assert len(pub.incidents) == 5  # nothing else was closed
    finally:
        worker.close()
    # shutdown closes what is still open (cam-c) and nothing twice
    last = pub.incidents[5:]
    assert [(e["camera"]["id"], e["close_reason"]) for e in last] == [("cam-c", "shutdown")]


def test_a_zone_close_still_pending_is_sent_when_the_camera_goes(tmp_path: Path) -> None:
    """A reload that removes a zone queues its ``zone_removed`` close for the next frame; if the camera is removed
    before that frame, the close must still go out (once), not vanish with the pipeline."""
    pub = RecordingPublisher()
    cfg = _config(tmp_path, [_camera("cam-a"), _camera("cam-z", zones=[])])
    worker = EdgeWorker(cfg, publisher=pub, detector=StubDetector())  # type: ignore[arg-type]
    worker.start()
    try:
        _open_incident(worker, "cam-a")
        pub.wait_for(1)
        keep = _camera("cam-z", zones=[])
        worker.apply_config(_config(tmp_path, [_camera("cam-a", zones=[]), keep]))  # zone removed: close pending
        worker.apply_config(_config(tmp_path, [keep]))  # then the camera, before another frame
        events = pub.wait_for(2)
        time.sleep(0.1)
        assert [(e["event"], e.get("close_reason")) for e in pub.incidents] == [("opened", None),
                                                                                ("closed", "zone_removed")]
        VALIDATOR.validate(events[1])
    finally:
        worker.close()
    assert len(pub.incidents) == 2
