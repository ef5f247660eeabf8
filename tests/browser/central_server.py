"""A real central service for the browser tests: uvicorn in a thread, SQLite in a temp dir, MQTT ingest on.

``start_central(tmp_path, broker)`` migrates a fresh database, creates one API token per role, starts
``create_app(..., start_ingest=True)`` on a free port and waits for /healthz and the ingest's subscription.
``seed_demo`` fills it through central-core's own ingest service with real snapshots cut from the sample footage:
cases at several ages (so the deadline colours differ), edge status and heartbeats, and crowd figures.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import uvicorn

from central.app import create_app
from central.clock import FixedClock
from central.config import CentralConfig, parse_central_config
from central.db import make_engine, make_session_factory, upgrade
from central.ingest import IngestService
from central.tokens import ROLES, create_token
from tests.central_support import encode, incident_payload, snapshot_block
from tests.fixtures.media import MEDIA_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
EDGE_ID = "edge-demo-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningCentral:
    url: str
    config: CentralConfig
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    tokens: dict[str, str]
    zone_file: Path
    case_ids: dict[str, int] = field(default_factory=dict)  # "camera/zone" → case id, filled by seed_demo

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def central_config(
    tmp_path: Path, mqtt_host: str, mqtt_port: int, extra: dict[str, Any] | None = None
) -> CentralConfig:
    zone_file = tmp_path / "edge" / "cameras.yaml"
    zone_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "cameras.yaml", zone_file)
    return parse_central_config({
        "database_url": f"sqlite:///{tmp_path / 'central.db'}",
        "evidence_dir": str(tmp_path / "evidence"),
        "zone_config_path": str(zone_file),
        # Round-the-clock working calendar so deadline colours do not depend on the weekday the test runs.
        "calendar": {"work_periods": ["00:00-24:00"], "workdays": "mon-sun"},
        "mqtt": {"host": mqtt_host, "port": mqtt_port, "client_id": f"central-browser-{mqtt_port}",
                 "batch_wait_ms": 5},
        "routing": [{"category": "illegal_parking", "squad": "traffic-squad-1"},
                    {"category": "crowd_density", "squad": "patrol-2"}],
        # labels for the codes: the squad picker, department / camera / zone names (English and Chinese)
        "squads": [{"code": c, "name": n, "name_zh": z, "department": d} for c, n, z, d in SQUADS],
        "departments": [{"code": "traffic_police", "name": "Traffic police", "name_zh": "交警大队"},
                        {"code": "public_security", "name": "Public security", "name_zh": "派出所"}],
        "display_names": {
            "cameras": {"cam-intersection-01": {"name": "Hubin Rd junction", "name_zh": "湖滨路路口"}},
            "zones": {"junction-lanes": {"name": "Junction box", "name_zh": "路口网格线区"},
                      "cam-plaza-01/plaza-floor": {"name": "Plaza floor", "name_zh": "广场地面"}},
        },
        **(extra or {}),  # a test module's own settings (crowd plans, map tiles)
    })


# (code, name, Chinese name, department): what the dashboard's squad picker offers
SQUADS = [
    ("traffic-squad-1", "Traffic squad 1", "交警一中队", "traffic_police"),
    ("traffic-squad-3", "Traffic squad 3", "交警三中队", "traffic_police"),
    ("patrol-2", "Patrol 2", "巡逻二组", "public_security"),
]


def start_central(tmp_path: Path, mqtt_host: str, mqtt_port: int,
                  extra: dict[str, Any] | None = None) -> RunningCentral:
    cfg = central_config(tmp_path, mqtt_host, mqtt_port, extra)
    upgrade(cfg.database_url)
    sf = make_session_factory(make_engine(cfg.database_url))
    tokens: dict[str, str] = {}
    with sf() as s:
        for role in ROLES:
            tokens[role], _ = create_token(s, f"{role}-ui", role)
        s.commit()
    app = create_app(cfg, session_factory=sf, start_ingest=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="central-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:  # noqa: S310 - local test server
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError(f"central did not answer /healthz at {url}")
    # on a first start the broker keeps nothing for central until its subscription is acknowledged (the receiver
    # child needs a second or two to start): what a test publishes before that would be lost
    if not app.state.ingest.wait_subscribed(30):
        server.should_exit = True
        raise RuntimeError(f"central's MQTT ingest did not subscribe at {mqtt_host}:{mqtt_port}")
    return RunningCentral(url, cfg, app, server, thread, tokens, Path(cfg.zone_config_path or ""))


def footage_jpeg(name: str, at_s: float = 2.0, width: int = 640) -> bytes:
    """One frame of a sample clip (or a still), resized and JPEG-encoded: a real snapshot."""
    still = path = MEDIA_DIR / "stills" / name
    if still.suffix.lower() in {".png", ".jpg", ".jpeg"}:
        frame = cv2.imread(str(still))
        if frame is None:
            raise RuntimeError(f"cannot read the still {still}")
    else:
        path = MEDIA_DIR / name
        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
        ok, frame = cap.read()
        cap.release()
        if not ok:
            raise RuntimeError(f"cannot read a frame from {path}")
    h, w = frame.shape[:2]
    frame = cv2.resize(frame, (width, int(h * width / w)))
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


ADDRESSES = {
    "cam-intersection-01": "Hubin Rd x Xihu Ave", "cam-plaza-01": "People's Square",
    "cam-street-02": "Market Lane 12", "cam-residential-03": "Qingnian Rd 88",
}


def payload_with_snapshot(jpeg: bytes, **kwargs: Any) -> dict[str, Any]:
    """An incident per the v1 contract (central-core's test builder) carrying a real JPEG snapshot."""
    p = incident_payload(**kwargs)
    p["snapshot"] = snapshot_block(jpeg)
    p["frame"] = {"width": 640, "height": 360}
    p["camera"]["location"]["address"] = ADDRESSES.get(p["camera"]["id"], p["camera"]["location"]["address"])
    p["camera"]["name"] = p["camera"]["id"].replace("cam-", "").replace("-", " ").title()
    return p


SEED = [
    # (minutes ago, type, camera, zone, grid cell, footage)
    (200, "illegal_parking", "cam-intersection-01", "west-kerb-no-parking", "310101-001-03",
     "street_vans_parked_at_curb_muenster_1.jpg"),
    (24, "illegal_parking", "cam-intersection-01", "junction-lanes", "310101-001-03",
     "traffic_intersection_cctv_1.mp4"),
    (8, "street_vending", "cam-street-02", "market-lane", "310101-001-05", "pedestrian_street_cyclists_muenster.jpg"),
    (3, "illegal_parking", "cam-residential-03", "driveway", "310101-003-02", "street_parking_residential_1.mp4"),
    (40, "crowd_density", "cam-plaza-01", "plaza-floor", "310101-002-01", "crowd_plaza_1.mp4"),
]


def seed_demo(rc: RunningCentral) -> dict[str, int]:
    """Cases at several ages plus edge status/heartbeat and crowd figures, through central-core's ingest."""
    cfg = rc.config
    sf = rc.app.state.session_factory
    now = datetime.now(UTC)
    clock = FixedClock(now)
    ingest = IngestService(sf, cfg, clock=clock, store=rc.app.state.store, bus=rc.app.state.bus)
    case_ids: dict[str, int] = {}
    for minutes, typ, cam, zone, grid, clip in SEED:
        at = now - timedelta(minutes=minutes)
        clock.set(at)
        p = payload_with_snapshot(footage_jpeg(clip), type=typ, camera_id=cam, zone=zone, grid_cell=grid,
                                  edge_id=EDGE_ID, at=at)
        res = ingest.handle(f"gridwatch/v1/{EDGE_ID}/incidents", encode(p))
        assert res.case_id is not None, res
        case_ids[f"{cam}/{zone}"] = res.case_id
    rc.case_ids.update(case_ids)
    clock.set(now)
    topic = f"gridwatch/v1/{EDGE_ID}"
    ingest.handle(f"{topic}/status", encode({"edge_id": EDGE_ID, "state": "online", "at": now.isoformat(),
                                             "version": "0.1.0"}))
    cams = [
        {"camera_id": "cam-intersection-01", "state": "online", "input_fps": 25.0, "last_frame_at": now.timestamp(),
         "reconnects": 0, "last_error": None, "name": "Intersection, north-west corner"},
        {"camera_id": "cam-plaza-01", "state": "online", "input_fps": 29.97, "last_frame_at": now.timestamp(),
         "reconnects": 1, "last_error": None, "name": "Central plaza, overhead"},
        {"camera_id": "cam-residential-03", "state": "offline", "input_fps": 0.0,
         "last_frame_at": (now - timedelta(minutes=6)).timestamp(), "reconnects": 4,
         "last_error": "RTSP read timed out after 10 s", "name": "Residential street"},
    ]
    ingest.handle(f"{topic}/heartbeat", encode({"edge_id": EDGE_ID, "at": now.isoformat(), "uptime_s": 5400,
                                                "cameras": cams, "counters": {}, "outbox": {"pending": 0}}))
    for i, count in enumerate([12, 15, 19, 26, 31, 34]):
        clock.set(now - timedelta(seconds=60 - 10 * i))
        ingest.handle(f"{topic}/crowd", encode({
            "edge_id": EDGE_ID, "camera_id": "cam-plaza-01", "zone": "plaza-floor",
            "at": clock.now().isoformat(), "count": count, "density": round(count / 400, 4),
            "level": "elevated" if count > 25 else "normal",
        }))
    return case_ids
