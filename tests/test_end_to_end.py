"""The whole chain with real processes: edge worker on a sample clip → Mosquitto → central → case + snapshot.

Also: the edge is SIGKILLed while the broker is down and restarted; its outbox drains and central files
every incident exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.polling import wait_until

PYTHON = sys.executable
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edge_config(tmp: Path, media_dir: Path, broker) -> Path:
    doc = {
        "edge_id": "edge-e2e",
        "mqtt": broker.mqtt_config(),
        "outbox": {"path": str(tmp / "edge" / "outbox.sqlite")},
        "snapshots": {"dir": str(tmp / "edge" / "snaps")},
        "detector": {"class_thresholds": {"car": 0.12}, "max_box_area": 0.15},
        "cameras": [
            {
                "id": "cam-e2e",
                "name": "Intersection (e2e)",
                "url": str(media_dir / "traffic_intersection_cctv_1.mp4"),
                "detect_fps": 2,
                "playback": "fast",
                "tiling": {"enabled": True},
                "location": {"grid_cell": "310101-001-03", "address": "Hubin Rd x Xihu Ave"},
                "zones": [
                    {
                        "name": "west-kerb",
                        "type": "no_parking",
                        "dwell_s": 10,
                        "grace_s": 5,
                        "points": [[0.0, 0.6], [0.25, 0.6], [0.25, 0.95], [0.0, 0.95]],
                    }
                ],
            }
        ],
    }
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Central:
    """`gridwatch-central serve` as a subprocess on SQLite, with an admin token made by the CLI."""

    def __init__(self, tmp: Path, broker):
        self.tmp = tmp
        self.port = _free_port()
        self.config = tmp / "central.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite:///{tmp / 'central.db'}",
                    "evidence_dir": str(tmp / "evidence"),
                    "mqtt": {"host": broker.host, "port": broker.port, "client_id": "central-e2e"},
                }
            )
        )
        subprocess.run(
            [PYTHON, "-m", "central.cli", "migrate", "--config", str(self.config)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        out = subprocess.run(
            [PYTHON, "-m", "central.cli", "create-token", "--config", str(self.config), "--role", "admin", "e2e"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.token = out.stdout.strip().splitlines()[-1]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.tmp / "central.log", "a")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "central.cli",
                "serve",
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=log,
        )
        # ready once its MQTT ingest is subscribed: on a first start the broker keeps nothing for central before
        # that (the receiver child takes a second or two), and a test that stops the broker at once would lose it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if (json.load(r).get("ingest") or {}).get("subscribed"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("central did not start:\n" + (self.tmp / "central.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str) -> tuple[bytes, str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read(), resp.headers.get("content-type", "")

    def cases(self) -> list[dict]:
        body, _ = self.get("/api/v1/cases?limit=100")
        return json.loads(body)["items"]


@pytest.fixture
def central(tmp_path, mosquitto):
    c = Central(tmp_path, mosquitto)
    c.start()
    yield c
    c.stop()


def test_edge_incident_becomes_a_case_with_its_snapshot(tmp_path, media_dir, mosquitto, central):
    cfg = _edge_config(tmp_path, media_dir, mosquitto)
    edge = subprocess.run(
        [PYTHON, "-m", "edge", "run", "--config", str(cfg), "--print"], capture_output=True, text=True, timeout=240
    )
    assert edge.returncode == 0, edge.stderr[-3000:]
    assert "INCIDENT opened: illegal_parking in west-kerb" in edge.stdout, edge.stdout[-3000:]

    cases = wait_until(
        lambda: [c for c in central.cases() if c["category"] == "illegal_parking"], 20, "a case", every=0.3
    )
    assert len(cases) == 1, cases
    detail, _ = central.get(f"/api/v1/cases/{cases[0]['id']}")
    case = json.loads(detail)
    assert case["camera_id"] == "cam-e2e" and case["zone"] == "west-kerb"
    assert case["grid_cell"] == "310101-001-03"
    shas = [e["sha256"] for e in case["evidence"] if e["kind"] == "before"]
    assert shas, case["evidence"]
    jpeg, ctype = central.get(f"/api/v1/evidence/{shas[0]}")
    assert ctype.startswith("image/jpeg") and jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) > 5_000


def test_edge_killed_while_broker_down_drains_its_outbox_after_restart(tmp_path, media_dir, mosquitto, central):
    """Broker down → edge keeps events in its outbox → edge SIGKILLed → broker and edge back → all delivered."""
    cfg = _edge_config(tmp_path, media_dir, mosquitto)
    mosquitto.stop()
    proc = subprocess.Popen(
        [PYTHON, "-m", "edge", "run", "--config", str(cfg), "--print"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    opened = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not opened:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        opened = "INCIDENT opened" in line
    assert opened, "the edge never opened an incident"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    import sqlite3

    pending = sqlite3.connect(tmp_path / "edge" / "outbox.sqlite").execute("select count(*) from outbox").fetchone()[0]
    assert pending >= 1, "the opened event should be waiting in the outbox"

    mosquitto.start()
    # The restarted edge drains its outbox first, then replays the clip: the same parked car is reported
    # again as a new incident, which central must fold into the same open case (dedup key by position).
    rerun = subprocess.run(
        [PYTHON, "-m", "edge", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=240
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    cases = wait_until(
        lambda: [c for c in central.cases() if c["category"] == "illegal_parking"], 20, "the case", every=0.3
    )
    assert len(cases) == 1, cases
    # the pre-kill incident was not lost and the re-run's incident was folded into the same case
    case = wait_until(
        lambda: _case_with_incidents(central, cases[0]["id"], 2), 20, "both incidents on the case", every=0.3
    )
    assert any(a["action"] == "incident_appended" for a in case["audit"])
    remaining = sqlite3.connect(tmp_path / "edge" / "outbox.sqlite").execute("select count(*) from outbox").fetchone()
    assert remaining[0] == 0


def _case_with_incidents(central: Central, case_id: int, count: int) -> dict | None:
    detail, _ = central.get(f"/api/v1/cases/{case_id}")
    case = json.loads(detail)
    return case if case["incident_count"] >= count else None
