"""Fault injection on the delivery path: a real Mosquitto, a real edge publisher (outbox), ``gridwatch-central
ingest`` processes and both databases, on loopback only. Prints, per database and scenario: attempts, lost,
duplicated, crashes.

  .venv/bin/python tools/chaos.py [--backends sqlite,postgresql] [--trials 3] [--scenarios all] [--incidents 120]
      [--receiver process|thread] [--no-wait-for-save]

Scenarios (each trial: a fresh database and broker, one edge streaming ``--incidents`` incidents, one fault):

- ``broker_restart``: SIGTERM Mosquitto mid-stream (it saves its persistence file), start it again on the same port.
- ``broker_kill``: SIGKILL Mosquitto mid-stream (no save: what it acknowledged since its last autosave, every
  second here, can be gone), start it again.
- ``edge_kill``: SIGKILL the edge process mid-stream; restart it: its outbox resends what was not acknowledged.
- ``central_kill``: SIGKILL the ingest mid-stream; restart it: the broker redelivers from central's session.
- ``flood``: no fault; the edge's stream plus one malformed message (every kind of tests/hostile_incidents.py)
  per incident, published alongside: each must be a dead letter with its reason, and every valid event stored.

lost = events the edge had committed to its outbox that never reached ``incident_events``; duplicated = cases
beyond one per spot, or incidents counted twice; crashes = an ingest or edge process that died without being
killed; bad = malformed messages not dead-lettered with their expected reason. Bounded: each trial gives up after
``--timeout`` seconds (reported as lost events).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from central.db import Case, DeadLetter, IncidentEvent, make_engine, make_session_factory, upgrade  # noqa: E402
from tests.central_support import incident_payload  # noqa: E402
from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto  # noqa: E402
from tests.hostile_incidents import hostile  # noqa: E402

EDGE_ID = "chaos-edge-01"
SCENARIOS = ("broker_restart", "broker_kill", "edge_kill", "central_kill", "flood")

EDGE_CHILD = r"""
import json, sys, time
from edge.config import parse_config
from edge.mqtt import EdgePublisher

doc, payload_file, start, interval = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
payloads = json.loads(open(payload_file).read())
pub = EdgePublisher(parse_config(doc, source="chaos-edge"))
pub.start()
for i in range(start, len(payloads)):
    pub.publish_incident(payloads[i])
    print("queued", i, flush=True)
    time.sleep(interval)
print("drained" if pub.wait_drained(120) else "not drained", flush=True)
pub.stop()
"""


class Edge:
    """The edge worker's publishing side in its own process (EdgePublisher + durable outbox)."""

    def __init__(self, workdir: Path, broker: MosquittoBroker, payload_file: Path, interval: float):
        self.doc = {"edge_id": EDGE_ID, "mqtt": broker.mqtt_config(),
                    "outbox": {"path": str(workdir / "outbox.sqlite")},
                    "cameras": [{"id": "cam-1", "url": "/dev/video0"}]}
        self.payload_file, self.interval = payload_file, interval
        self.last_queued = -1
        self.drained = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.killed = False

    def start(self) -> None:
        self.drained.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EDGE_CHILD, json.dumps(self.doc), str(self.payload_file), str(self.last_queued + 1),
             str(self.interval)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("queued "):
                self.last_queued = max(self.last_queued, int(line.split()[1]))
            elif line.startswith("drained"):
                self.drained.set()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def crashed(self) -> bool:
        return self.proc is not None and self.proc.poll() not in (None, 0) and not self.killed

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Central:
    """``gridwatch-central ingest`` in its own process."""

    def __init__(self, workdir: Path, url: str, broker: MosquittoBroker, receiver: str = "process"):
        self.config = workdir / "central.yaml"
        self.config.write_text(yaml.safe_dump({
            "database_url": url, "evidence_dir": str(workdir / "evidence"),
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "chaos-central", "keepalive_s": 5,
                     "batch_max": 50, "receiver": receiver},
        }))
        self.log = workdir / "ingest.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        exe = Path(sys.executable).with_name("gridwatch-central")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "central.cli"]
        before = self.log.read_text(errors="replace").count("ingesting from") if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*cmd, "--log-level", "WARNING", "ingest", "--config", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count("ingesting from") <= before:  # printed once subscribed
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"ingest did not subscribe:\n{self.log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _payloads(n: int) -> list[dict[str, Any]]:
    return [incident_payload(edge_id=EDGE_ID, zone=f"chaos-{i}", snapshot=(i % 10 == 0)) for i in range(n)]


def trial(backend: str, scenario: str, incidents: int, timeout: float, rnd: random.Random, receiver: str = "process",
          wait_for_save: bool = True) -> dict[str, Any]:
    from tests.fixtures.postgres import create_database, drop_database

    with tempfile.TemporaryDirectory(prefix=f"chaos-{scenario}-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'central.db'}" if backend == "sqlite" else create_database("gw_chaos")
        broker = MosquittoBroker(work / "mqtt", binary=ensure_mosquitto())
        edge = central = None
        try:
            upgrade(url)
            engine = make_engine(url)
            sf = make_session_factory(engine)
            broker.start()
            central = Central(work, url, broker, receiver)
            central.start()
            # the fault comes once the broker has saved central's new session (autosave, every second here): a
            # broker killed before that loses the session, and everything the edge publishes until central
            # subscribes again — Mosquitto's limit, not central's (docs/reliability.md, "Broker crash")
            saved = time.monotonic() + (10 if wait_for_save else 0)
            while time.monotonic() < saved and "Saving in-memory database" not in broker.log_text().rsplit(
                    "as chaos-central", 1)[-1]:
                time.sleep(0.05)
            payloads = _payloads(incidents)
            (work / "payloads.json").write_text(json.dumps(payloads))
            edge = Edge(work, broker, work / "payloads.json", interval=0.02)
            expected_ids = {p["event_id"] for p in payloads}

            def stored() -> set[str]:
                with sf() as s:
                    return set(s.scalars(select(IncidentEvent.event_id)))

            flood = _start_flood(broker, payloads) if scenario == "flood" else None
            edge.start()
            at = rnd.uniform(0.2, 0.6) * incidents  # fault once this many events are stored
            deadline = time.monotonic() + timeout
            while len(stored()) < at and time.monotonic() < deadline:
                time.sleep(0.05)
            if scenario == "broker_restart":
                broker.stop()
                time.sleep(rnd.uniform(0.2, 1.5))
                broker.start()
            elif scenario == "broker_kill":
                broker.kill()
                time.sleep(rnd.uniform(0.2, 1.5))
                broker.start()
            elif scenario == "edge_kill":
                edge.killed = True
                edge.kill()
                time.sleep(rnd.uniform(0.1, 1.0))
                edge.killed = False
                edge.start()
            elif scenario == "central_kill":
                central.kill()
                time.sleep(rnd.uniform(0.1, 1.0))
                central.start()
            while time.monotonic() < deadline and not expected_ids <= stored():
                if not central.alive() or edge.crashed():
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # nothing more trickles in
            got = stored()
            crashes = int(not central.alive()) + int(edge.crashed())
            with sf() as s:
                cases = s.scalar(select(func.count()).select_from(Case)) or 0
                spots = s.scalar(select(func.count(func.distinct(Case.dedup_key)))) or 0
                counted = s.scalar(select(func.sum(Case.incident_count))) or 0
                reasons = Counter(s.scalars(select(DeadLetter.reason)))
            bad = 0
            if flood is not None:
                client, sent, thread = flood
                thread.join(60)
                want = Counter(sent)
                bad = sum((want - reasons).values()) + sum((reasons - want).values()) + len(payloads) - len(sent)
                client.disconnect()
                client.loop_stop()
            engine.dispose()
            return {"lost": len(expected_ids - got), "duplicated": (cases - spots) + max(0, counted - incidents),
                    "crashes": crashes, "bad": bad, "starts": central.starts}
        finally:
            if edge is not None:
                edge.stop()
            if central is not None:
                central.stop()
            broker.kill()
            if backend != "sqlite":
                drop_database(url)


def _start_flood(broker: MosquittoBroker, payloads: list[dict[str, Any]]) -> tuple[Any, list[str], threading.Thread]:
    """One malformed message per valid incident, every kind in turn, published by a second client (QoS 1)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    kinds = hostile(incident_payload(edge_id=EDGE_ID))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-flood-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(100)
    c.connect(broker.host, broker.port)
    c.loop_start()
    sent = []
    topic = f"gridwatch/v1/{EDGE_ID}/incidents"

    def run() -> None:
        for i in range(len(payloads)):
            _, reason, raw = kinds[i % len(kinds)]
            c.publish(topic, raw, qos=1).wait_for_publish(10)
            sent.append(reason)
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return c, sent, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--scenarios", default="all", help=f"comma-separated: {', '.join(SCENARIOS)}")
    ap.add_argument("--trials", type=int, default=3, help="faults per scenario and database")
    ap.add_argument("--incidents", type=int, default=120, help="incidents the edge streams per trial")
    ap.add_argument("--timeout", type=float, default=120.0, help="per trial, seconds")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--receiver", default="process", choices=["process", "thread"], help="the ingest's mqtt.receiver")
    ap.add_argument("--no-wait-for-save", action="store_true",
                    help="inject the fault without waiting for the broker to save central's session "
                         "(docs/reliability.md, broker crash)")
    args = ap.parse_args()
    scenarios = SCENARIOS if args.scenarios == "all" else tuple(args.scenarios.split(","))
    rnd = random.Random(args.seed)
    print(f"chaos: {args.trials} trial(s) per scenario, {args.incidents} incidents each, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'database':10} {'scenario':15} {'attempts':>8} {'lost':>5} {'duplicated':>10} {'crashes':>7} "
          f"{'bad':>4} {'seconds':>7}")
    total = Counter()
    for backend in args.backends.split(","):
        for scenario in scenarios:
            t0 = time.monotonic()
            sums = Counter()
            for _ in range(args.trials):
                try:
                    r = trial(backend, scenario, args.incidents, args.timeout, rnd, args.receiver,
                              not args.no_wait_for_save)
                except Exception as e:  # a trial that could not even run is a crash, said so
                    print(f"  {backend} {scenario}: trial failed: {e!r}"[:400], flush=True)
                    r = {"lost": 0, "duplicated": 0, "crashes": 1, "bad": 0}
                sums.update({k: r[k] for k in ("lost", "duplicated", "crashes", "bad")})
            total.update(sums)
            print(f"{backend:10} {scenario:15} {args.trials:8d} {sums['lost']:5d} {sums['duplicated']:10d} "
                  f"{sums['crashes']:7d} {sums['bad']:4d} {time.monotonic() - t0:7.0f}", flush=True)
    print(f"total: lost {total['lost']}, duplicated {total['duplicated']}, crashes {total['crashes']}, "
          f"bad {total['bad']}")
    sys.exit(1 if any(total.values()) else 0)


if __name__ == "__main__":
    main()
