"""The edge worker end to end on real footage: CLI, --once, hot reload, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from edge.config import load_config
from edge.worker import EdgeWorker
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _write_config(path: Path, media_dir: Path, zones: list[dict] | None = None, **camera_overrides) -> Path:
    cam = {
        "id": "cam-x",
        "url": str(media_dir / "traffic_intersection_cctv_1.mp4"),
        "detect_fps": 2,
        "playback": "fast",
        "zones": zones or [],
    }
    cam.update(camera_overrides)
    doc = {
        "edge_id": "edge-test",
        "outbox": {"path": str(path.parent / "outbox.sqlite")},
        "snapshots": {"dir": str(path.parent / "snaps")},
        "cameras": [cam],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_check_prints_effective_settings_for_the_example_config():
    out = subprocess.run(
        [PYTHON, "-m", "edge", "check", str(REPO / "cameras.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    cfg = load_config(REPO / "cameras.yaml")
    for cam in cfg.cameras:
        assert cam.id in out.stdout
        for zone in cam.zones:
            assert zone.name in out.stdout
    # defaults are merged into each camera: every camera inherits `loop: true` from defaults
    assert out.stdout.count("(loop)") == len(cfg.cameras)
    assert all(c.loop and c.stall_timeout_s == cfg.defaults.stall_timeout_s for c in cfg.cameras)


def test_check_reports_path_and_reason_and_masks_secrets(tmp_path, media_dir):
    bad = tmp_path / "cameras.yaml"
    bad.write_text(
        "edge_id: e1\n"
        "cameras:\n"
        "  - id: c1\n"
        "    url: rtsp://admin:${CAM_PW}@10.0.0.9/stream\n"
        "    zones:\n"
        "      - {name: z, type: no_parking, points: [[0, 0], [1.2, 0], [0, 1]]}\n"
    )
    env = {**os.environ, "CAM_PW": "hunter2-secret"}
    out = subprocess.run([PYTHON, "-m", "edge", "check", str(bad)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "cameras[0].zones[0].points" in out.stderr and "outside 0..1" in out.stderr
    assert "hunter2-secret" not in out.stderr + out.stdout

    bad.write_text("edge_id: e1\ncameras:\n  - id: c1\n    url: rtsp://admin:${CAM_PW}@10.0.0.9/stream\n")
    out = subprocess.run([PYTHON, "-m", "edge", "check", str(bad)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0
    assert "admin:***@10.0.0.9" in out.stdout and "hunter2-secret" not in out.stdout


def test_run_once_prints_detections_for_every_camera(tmp_path, media_dir):
    cfg = _write_config(tmp_path / "cameras.yaml", media_dir)
    doc = yaml.safe_load(cfg.read_text())
    doc["cameras"].append({"id": "cam-plaza", "url": str(media_dir / "crowd_plaza_1.mp4"), "playback": "fast"})
    cfg.write_text(yaml.safe_dump(doc))
    out = subprocess.run(
        [PYTHON, "-m", "edge", "run", "--config", str(cfg), "--once"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[cam-x]" in out.stdout and "car×" in out.stdout
    assert "[cam-plaza]" in out.stdout and "person×" in out.stdout


def test_hot_reload_applies_zone_edits_and_rejects_invalid_ones_without_dropping_the_stream(tmp_path, media_dir):
    path = _write_config(tmp_path / "cameras.yaml", media_dir, loop=True, playback="realtime", detect_fps=1)
    worker = EdgeWorker(load_config(path), config_path=path, reload_interval_s=0.2)
    worker.start()
    runner = threading.Thread(target=worker.run, kwargs={"duration_s": 30}, daemon=True)
    runner.start()
    try:
        wait_until(lambda: worker.counters["frames_analyzed"] >= 1, 20, "first frame")
        source_before = worker.pipelines["cam-x"].source
        engine_before = worker.pipelines["cam-x"].engine

        zone = {"name": "kerb", "type": "no_parking", "points": [[0, 0.55], [0.2, 0.55], [0.2, 0.82], [0, 0.82]]}
        _write_config(path, media_dir, zones=[zone], loop=True, playback="realtime", detect_fps=1)
        _bump_mtime(path)
        wait_until(lambda: worker.counters["reloads_applied"] == 1, 10, "valid reload")
        p = worker.pipelines["cam-x"]
        assert [z.name for z in p.camera.zones] == ["kerb"]
        assert p.source is source_before and p.engine is engine_before  # zones swapped in place, stream kept

        path.write_text(path.read_text().replace("0.55", "1.55", 1))  # a point out of range
        _bump_mtime(path)
        wait_until(lambda: worker.counters["reloads_rejected"] == 1, 10, "invalid reload")
        assert [z.name for z in worker.pipelines["cam-x"].camera.zones] == ["kerb"]
        analysed = worker.counters["frames_analyzed"]
        wait_until(lambda: worker.counters["frames_analyzed"] > analysed, 10, "frames after rejected reload")
        assert worker.pipelines["cam-x"].source.health.reconnects == 0
    finally:
        worker.stop()
        runner.join(timeout=15)
        worker.close()


def test_sigterm_shuts_down_cleanly(tmp_path, media_dir):
    cfg = _write_config(tmp_path / "cameras.yaml", media_dir, loop=True, playback="realtime", detect_fps=1)
    proc = subprocess.Popen(
        [PYTHON, "-m", "edge", "run", "--config", str(cfg), "--no-mqtt", "--print"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "[cam-x]" not in line:
            line = proc.stdout.readline()
        assert "[cam-x]" in line, "worker never analysed a frame"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        err = proc.stderr.read()
        assert rc == 0, err[-2000:]
        assert "received SIGTERM, shutting down" in err and "stopped:" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_configuration_docs_are_generated_from_the_models():
    cmd = [PYTHON, str(REPO / "tools" / "gen_config_docs.py"), "--check"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))
