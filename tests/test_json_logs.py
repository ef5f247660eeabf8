"""Structured logs: ``GRIDWATCH_LOG_FORMAT=json`` / ``--log-format json`` make edge and central write one JSON object
per line (time, level, logger, message, extra fields), with credentials and API tokens still masked."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from edge.config import parse_config
from edge.logs import JsonFormatter, configure_logging, redact
from edge.mqtt.publisher import EdgePublisher

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]


def _lines(text: str) -> list[dict]:
    """Every non-empty line must be one JSON object."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(json.loads(line))  # a plain-text line fails here
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_json_record_has_the_fields_and_no_secrets() -> None:
    record = logging.LogRecord("gridwatch.edge", logging.WARNING, __file__, 1,
                               "camera %s: cannot open rtsp://admin:s3cret@10.0.0.5/live?token=abc123 (%s)",
                               ("cam-1", "timeout"), None)  # fmt: skip
    record.camera_id = "cam-1"
    record.detail = {"url": "http://u:pw@host/x", "api": "Bearer gwc_AbCdEf123456", "n": 3}
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "WARNING" and out["logger"] == "gridwatch.edge" and out["camera_id"] == "cam-1"
    assert out["time"].endswith("Z") and "T" in out["time"]
    assert out["message"] == "camera cam-1: cannot open rtsp://admin:***@10.0.0.5/live?token=*** (timeout)"
    assert out["detail"] == {"url": "http://u:***@host/x", "api": "Bearer gwc_***", "n": 3}
    text = json.dumps(out)
    for secret in ("s3cret", "abc123", ":pw@", "AbCdEf123456"):
        assert secret not in text
    assert redact("nothing to hide here") == "nothing to hide here"


def test_edge_publisher_errors_are_json_lines_with_the_password_masked(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json")
    try:
        cfg = parse_config({"edge_id": "edge-j", "cameras": [{"id": "c", "url": "0"}],
                            "mqtt": {"host": "127.0.0.1", "port": _free_port(), "username": "edge",
                                     "password": "hunter2-secret", "reconnect_min_s": 5}}, env={})  # fmt: skip
        cfg.outbox.path = tmp_path / "outbox.sqlite"
        pub = EdgePublisher(cfg)
        pub.start()
        deadline = time.monotonic() + 15
        while pub.stats()["last_error"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.stop(timeout=1)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    err = capfd.readouterr().err
    lines = _lines(err)
    refused = [r for r in lines if r["logger"] == "edge.mqtt.publisher" and "cannot connect" in r["message"]]
    assert refused and refused[0]["level"] == "WARNING", err
    assert "hunter2-secret" not in err


def test_central_serve_json_access_log_masks_the_token(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "central.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'c.db'}",
                "evidence_dir": str(tmp_path / "ev"),
                "mqtt": {"enabled": False},
            }
        )
    )
    env = {**os.environ, "GRIDWATCH_LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([PYTHON, "-m", "central.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=f, stderr=f, env=env, cwd=REPO)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?token=gwc_leakme123456", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("central did not start:\n" + log.read_text()[-2000:])
                time.sleep(0.3)
        deadline = time.monotonic() + 20
        while "/healthz" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    text = log.read_text()
    lines = _lines(text)
    access = [r for r in lines if r["logger"] == "uvicorn.access" and "/healthz" in r["message"]]
    assert access, text[-2000:]
    assert "token=***" in access[0]["message"]
    assert "leakme" not in text
    assert any(r["logger"].startswith("alembic") or r["logger"].startswith("uvicorn") for r in lines)


def test_unknown_log_format_is_a_clear_error() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "edge.cli", "check", str(REPO / "cameras.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "GRIDWATCH_LOG_FORMAT": "xml"},
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "GRIDWATCH_LOG_FORMAT" in done.stderr and "text, json" in done.stderr
