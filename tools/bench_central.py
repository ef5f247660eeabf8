"""Benchmark the central ingest through a real Mosquitto, on SQLite and PostgreSQL.

  .venv/bin/python tools/bench_central.py --edges 8 --incidents 3000 [--backends sqlite,postgresql]

For each backend: a fresh database, a Mosquitto on a free port, and the ingest in its own process (the same
MqttIngest that ``gridwatch-central ingest`` runs) so publishers and ingest do not share a GIL. K simulated edges
publish N incidents (opened with an 8 KB snapshot → updated → closed: 3 events each; a third of the incidents repeat
a spot, so they append to an open case). Figures:

- sustained ingest: all 3N events published as fast as QoS 1 allows; events/s between the first and the last commit.
- filing latency: incidents published at a fixed rate (--rate, below capacity); for each ``opened`` event, the time
  from publish to the commit of its transaction (the ingest worker timestamps events after commit; same host clock).
- case list: 100k cases bulk-inserted, then CaseService.list_cases (limit 50 + total count) with typical filters.
- flood (``--phases flood``): the throughput run with ``--malformed`` of the messages malformed (default 0.5: one
  hostile message, every kind of tests/hostile_incidents.py in turn, after each valid event); valid events/s and
  the ingest process's RSS when ready, mid-stream, at the end and its peak, and the receive queue's high-water mark.
- loaded: flood's control on one box. The publishers and the broker share the ingest's two cores, and a flood
  doubles their work too; here the same malformed messages are published to a topic the ingest does not read, so
  flood / loaded is what the malformed messages cost the ingest itself, flood / throughput what they cost this box.
- flood_drain: the same messages published while central is down (the broker holds the backlog), then drained: the
  ingest's own cost with the publishers out of the way, to compare with ``drain``.
- inprocess: no broker (tools/bench_central_inprocess.py): prepare + handle_batch in this process, clean and 1:1
  flooded runs alternating, so the cost of classifying and storing shows apart from the MQTT receive path.

``--repeat N`` runs the phases N times in turn (throughput, flood, throughput, flood, ...) and prints medians and,
per backend, the flood/clean ratios of adjacent runs (their median). ``--gc`` sets the ingest process's collector:
``tuned`` (what ``gridwatch-central ingest`` does), ``freeze`` (``gc.freeze()`` only) or ``default``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

SNAPSHOT = os.urandom(8000)


# --------------------------------------------------------------------------- broker


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    from tests.fixtures.mqtt import _port_open, free_port

    port = free_port()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence true",
             f"persistence_location {workdir / 'data'}/", "max_queued_messages 1000000", "max_inflight_messages 0",
             f"log_dest file {workdir / 'mosquitto.log'}"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.05)
    return proc, port


# --------------------------------------------------------------------------- ingest worker (child process)


def worker_main(config_path: str, out_path: str, gc_mode: str = "tuned") -> None:
    """Run MqttIngest; record (event_id, commit time) for every stored event; dump them on SIGTERM."""
    from central.config import load_central_config
    from central.db import make_engine, make_session_factory
    from central.events import EventBus
    from central.ingest_process import make_ingest
    from tools.bench_central_inprocess import set_gc

    cfg = load_central_config(config_path)
    bus = EventBus()
    stamps: list[tuple[str, float]] = []
    bus.subscribe(lambda kind, data: stamps.append((data["event_id"], time.time())) if kind == "incident.event"
                  else None)
    runner = make_ingest(cfg, session_factory=make_session_factory(make_engine(cfg.database_url)), bus=bus)
    set_gc(gc_mode)  # tuned: as gridwatch-central ingest does
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    cpu0 = time.process_time()  # from before start: a drain begins as soon as the broker has the subscription
    runner.start()
    runner.wait_subscribed(10)
    child = getattr(runner, "receiver_pid", None)  # mqtt.receiver: process — its start-up is not ingest work
    child_cpu0 = _process_cpu(child) if child is not None else 0.0
    rss = [(time.time(), _rss_mb())]  # memory over the run: sampled every 0.5 s while messages are processed
    if hasattr(runner, "client"):  # mqtt.receiver: thread
        threads = {"worker": runner._worker, "network": getattr(runner.client, "_thread", None)}
    else:  # process: the filer thread here, the receiver child apart
        threads = {"filer": runner._threads[0]}
    Path(out_path + ".ready").write_text("ok")
    while not done.wait(0.5):
        rss.append((time.time(), _rss_mb()))
    # CPU seconds of the run (the process idles once the stream is filed; the threads exist only for the run): a
    # figure the load of a shared box moves much less than events per wall-clock second
    cpu = {"process": round(time.process_time() - cpu0, 3), **{k: round(_thread_cpu(t), 3) for k, t in threads.items()}}
    if child is not None:
        cpu["receiver"] = round(_process_cpu(child) - child_cpu0, 3)
        cpu["process"] = round(cpu["process"] + cpu["receiver"], 3)  # the ingest's CPU: both processes
    runner.stop()
    Path(out_path).write_text(json.dumps({"stamps": stamps, "health": runner.health(), "rss": rss, "cpu": cpu}))


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live child process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, IndexError, ValueError):
        return 0.0


def _thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds a live thread has used (0.0 if it is gone or unknown)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))  # type: ignore[union-attr,arg-type]
    except (AttributeError, TypeError, OSError):
        return 0.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


# --------------------------------------------------------------------------- publishers


def incident_events(edge: str, spot: int, now: datetime) -> list[dict[str, Any]]:
    import base64
    import hashlib

    iid = str(uuid.uuid4())
    base = {
        "schema": "gridwatch.incident/1", "incident_id": iid, "type": "illegal_parking", "edge_id": edge,
        "started_at": (now - timedelta(seconds=60)).isoformat().replace("+00:00", "Z"),
        "last_seen_at": now.isoformat().replace("+00:00", "Z"), "dwell_s": 60.0, "ended_at": None,
        "emitted_at": now.isoformat().replace("+00:00", "Z"),
        "camera": {"id": f"{edge}-cam{spot % 4}", "name": "bench",
                   "location": {"lat": 22.5, "lon": 114.0, "address": None, "grid_cell": f"4403-{spot % 40:03d}"}},
        "zone": {"name": f"zone-{spot}", "type": "no_parking", "grid_cell": None, "location": None},
        "subject": {"class": "car", "track_ids": [1], "confidence": 0.8, "box": [0.1, 0.1, 0.2, 0.2],
                    "position": [0.15, 0.2], "members": 1},
        "crowd": None, "model": {"name": "ssd_mobilenet_v2_coco", "version": "2018_03_29"},
        "frame": {"width": 640, "height": 480}, "snapshot": None,
    }
    snap = {"content_type": "image/jpeg", "encoding": "base64", "sha256": hashlib.sha256(SNAPSHOT).hexdigest(),
            "bytes": len(SNAPSHOT), "data": base64.b64encode(SNAPSHOT).decode()}
    out = []
    for seq, ev in enumerate(("opened", "updated", "closed"), 1):
        p = {**base, "event_id": str(uuid.uuid4()), "seq": seq, "event": ev}
        if ev == "opened":
            p["snapshot"] = snap
        if ev == "closed":
            p["ended_at"] = p["last_seen_at"]
        out.append(p)
    return out


def publish(port: int, edges: int, incidents: int, rate: float | None, malformed: float = 0.0, void: bool = False
            ) -> dict[str, float]:
    """K edge clients publish; returns {event_id: publish time} for the opened events. With ``malformed`` = r, each
    valid event is followed by a malformed message with probability r/(1-r) (r = 0.5: one each), of every kind in
    tests/hostile_incidents.py in turn; with ``void`` they go to a topic nobody subscribes to (the same publishing
    and broker work, none of it for the ingest)."""
    from tests.hostile_incidents import hostile

    per_edge = incidents // edges
    extra = malformed / (1 - malformed) if malformed else 0.0
    sent: dict[str, float] = {}
    lock = threading.Lock()

    def edge_run(k: int) -> None:
        edge = f"bench-edge-{k:02d}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=edge)
        c.max_inflight_messages_set(500)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        now = datetime.now(UTC)
        interval = edges / rate if rate else 0.0
        start = time.monotonic()
        infos = []
        bad = [raw for _, _, raw in hostile(incident_events(edge, 0, now)[1])] if extra else []
        owed = 0.0
        for i in range(per_edge):
            spot = k * 10_000 + (i if i % 3 else max(0, i - 1))  # a third repeat the previous spot
            for p in incident_events(edge, spot, now):
                t = time.time()
                infos.append(c.publish(f"gridwatch/v1/{edge}/incidents", json.dumps(p).encode(), qos=1))
                if p["event"] == "opened":
                    with lock:
                        sent[p["event_id"]] = t
                owed += extra
                while owed >= 1:
                    owed -= 1
                    bad_topic = f"bench/void/{edge}" if void else f"gridwatch/v1/{edge}/incidents"
                    infos.append(c.publish(bad_topic, bad[len(infos) % len(bad)], qos=1))
            if interval:
                delay = start + (i + 1) * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        for info in infos:
            info.wait_for_publish(60)
        c.disconnect()
        c.loop_stop()

    threads = [threading.Thread(target=edge_run, args=(k,)) for k in range(edges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_ingest(url: str, workdir: Path, edges: int, incidents: int, rate: float | None, batch_max: int = 200,
               drain: bool = False, instances: int = 1, malformed: float = 0.0, gc_mode: str = "tuned",
               receiver: str = "process", void: bool = False) -> dict[str, Any]:
    """Publish while the ingest runs; with ``drain`` publish first (queued by the broker for central's persistent
    sessions) and then start the ingest, so it has the CPU to itself. ``instances`` > 1 runs that many ingest
    processes on a shared subscription."""
    from central.db import upgrade

    upgrade(url)
    broker, port = start_broker(workdir / "mqtt")
    outs = []
    for i in range(instances):
        mq = {"host": "127.0.0.1", "port": port, "client_id": f"bench-central-{i}", "batch_max": batch_max,
              "receiver": receiver}
        if instances > 1:
            mq["shared_group"] = "bench"
        cfg = {"database_url": url, "evidence_dir": str(workdir / "evidence"), "mqtt": mq}
        (workdir / f"central-{i}.yaml").write_text(json.dumps(cfg))
        outs.append(str(workdir / f"worker-{i}.json"))

    def start_workers() -> list[subprocess.Popen]:
        procs = []
        for i, out in enumerate(outs):
            Path(out + ".ready").unlink(missing_ok=True)
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(workdir / f"central-{i}.yaml"),
                                           out, gc_mode]))
        deadline = time.monotonic() + 30
        while not all(Path(out + ".ready").exists() for out in outs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("ingest worker did not start")
            time.sleep(0.05)
        return procs

    def stop(procs: list[subprocess.Popen]) -> None:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)

    procs = start_workers()  # subscribes: from here on the broker queues for the sessions
    try:
        if drain:
            stop(procs)
        t0 = time.time()
        sent = publish(port, edges, incidents, rate, malformed, void)
        publish_s = time.time() - t0
        if drain:
            procs = start_workers()
        expected = (incidents // edges) * edges * 3
        from sqlalchemy import func, select

        from central.db import IncidentEvent, make_engine, make_session_factory

        engine = make_engine(url)
        sf = make_session_factory(engine)
        deadline = time.monotonic() + 600
        while True:
            with sf() as s:
                n = s.scalar(select(func.count()).select_from(IncidentEvent))
            if n >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        from central.db import Case

        with sf() as s:  # correctness: one case per spot, whatever instance handled which event
            cases = s.scalar(select(func.count()).select_from(Case))
            spots = s.scalar(select(func.count(func.distinct(Case.dedup_key))))
        per_edge = incidents // edges
        expected_cases = edges * len({i if i % 3 else max(0, i - 1) for i in range(per_edge)})
        if not cases == spots == expected_cases:
            raise AssertionError(f"{cases} cases for {spots} dedup keys, expected {expected_cases}")
        engine.dispose()
    finally:
        stop(procs)
        broker.terminate()
        broker.wait(10)
    stamps: dict[str, float] = {}
    batches = dead = 0
    rss: list[list[float]] = []
    high_water = 0
    cpu: dict[str, float] = {}
    for out in outs:
        data = json.loads(Path(out).read_text())
        for k, v in data.get("cpu", {}).items():
            cpu[k] = cpu.get(k, 0.0) + v
        stamps.update(dict(data["stamps"]))
        batches += data["health"]["batches"]
        dead += data["health"]["dead_letters"]
        rss = rss or data.get("rss", [])
        high_water = max(high_water, data["health"].get("queue_high_water", 0))
    times = sorted(stamps.values())
    lat = [(stamps[e] - t) * 1000 for e, t in sent.items() if e in stamps]
    return {
        "events": len(stamps), "expected": expected, "publish_s": round(publish_s, 2),
        "events_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else 0.0,
        "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(pct(lat, 0.99), 1) if lat else None,
        "batches": batches, "dead_letters": dead,
        # RSS of the (first) ingest process: when it was ready, in the middle of the stream and at the end
        "rss_mb": [rss[0][1], rss[len(rss) // 2][1], rss[-1][1]] if rss else None,
        "rss_max_mb": max(x[1] for x in rss) if rss else None, "queue_high_water": high_water,
        # ingest CPU (all processes; with drain only the run that drained) per valid event, and its threads' shares
        "cpu_us_per_event": round(cpu["process"] / len(stamps) * 1e6) if cpu and stamps else None,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
    }


# --------------------------------------------------------------------------- case list at 100k


def run_case_list(url: str, n: int) -> dict[str, float]:
    from sqlalchemy import insert

    from central.clock import SystemClock
    from central.config import CentralConfig
    from central.db import Case, make_engine, make_session_factory, upgrade
    from central.events import EventBus
    from central.store import FileEvidenceStore
    from central.workflow import CaseFilters, CaseService

    upgrade(url)
    engine = make_engine(url)
    rnd = random.Random(7)
    # a steady state: most cases of the last 90 days are closed or archived; 15 % are still being worked on
    states = ["reported", "filed", "dispatched", "in_progress", "handled", "verifying", "closed", "archived"]
    weights = [2, 2, 4, 3, 2, 2, 40, 45]
    cats = ["illegal_parking", "street_vending", "crowd_density"]
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            rows = []
            for i in range(start, min(n, start + 10_000)):
                rep = now - timedelta(minutes=rnd.randint(0, 60 * 24 * 90))
                st = rnd.choices(states, weights)[0]
                rows.append({
                    "public_id": f"GW-B-{i:07d}", "category": rnd.choice(cats), "state": st, "dedup_key": f"k{i}",
                    "camera_id": f"cam-{rnd.randint(0, 499)}", "zone": f"z{rnd.randint(0, 20)}",
                    "grid_cell": f"4403-{rnd.randint(0, 199):03d}-{rnd.randint(0, 9)}", "reported_at": rep,
                    "stage_started_at": rep, "stage_deadline_at": rep + timedelta(hours=rnd.choice([1, 3, 8, 400])),
                    "due_at": rep + timedelta(hours=6), "updated_at": rep, "recurrence_count": 0, "rework_count": 0,
                    "incident_count": 1, "title": f"bench case {i}",
                })
            conn.execute(insert(Case), rows)
    seed_s = time.perf_counter() - t0
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cases")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    sf = make_session_factory(engine)
    cfg = CentralConfig()
    out: dict[str, float] = {"seed_s": round(seed_s, 1)}
    queries = {
        "no filter": CaseFilters(),
        "state=dispatched": CaseFilters(state="dispatched"),
        "category+state": CaseFilters(category="street_vending", state="filed"),
        "grid_cell prefix": CaseFilters(grid_cell="4403-042"),
        "camera": CaseFilters(camera_id="cam-42"),
        "overdue": CaseFilters(overdue=True),
        "last 24h": CaseFilters(since=now - timedelta(days=1)),
    }
    for name, f in queries.items():
        times = []
        for _ in range(15):
            with sf() as s:
                svc = CaseService(s, cfg, SystemClock(), FileEvidenceStore(tempfile.gettempdir()), EventBus())
                t = time.perf_counter()
                items, total = svc.list_cases(f, limit=50, offset=0)
                [svc.summary(c) for c in items]
                times.append((time.perf_counter() - t) * 1000)
        out[name] = round(statistics.median(times), 1)
        out[name + " p95"] = round(pct(times, 0.95), 1)
    # deep page via offset and via keyset
    with sf() as s:
        svc = CaseService(s, cfg, SystemClock(), FileEvidenceStore(tempfile.gettempdir()), EventBus())
        t = time.perf_counter()
        svc.list_cases(CaseFilters(), limit=50, offset=50_000)
        out["offset 50000"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        svc.list_cases(CaseFilters(before_id=n // 2), limit=50, with_total=False)
        out["keyset mid-table"] = round((time.perf_counter() - t) * 1000, 1)
    engine.dispose()
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edges", type=int, default=8)
    ap.add_argument("--incidents", type=int, default=3000, help="incidents for the throughput run (3 events each)")
    ap.add_argument("--rate", type=float, default=200.0, help="incidents/s for the latency run (~3× events/s)")
    ap.add_argument("--latency-incidents", type=int, default=1500)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--batch-max", type=int, default=200, help="mqtt.batch_max of the ingest")
    ap.add_argument("--instances", type=int, default=1, help="ingest processes on a shared subscription")
    ap.add_argument("--phases", default="throughput,drain,latency,caselist",
                    help="throughput, drain, latency, caselist, flood (throughput with --malformed of the messages "
                         "malformed, default half), loaded (throughput while the same malformed messages are published "
                         "to a topic the ingest does not read: flood's control with the same publishing and broker "
                         "work on the box), flood_drain (drain with them), inprocess (no broker), analytics "
                         "(the KPI endpoints on a year of cases: tools/bench_analytics.py)")
    ap.add_argument("--malformed", type=float, default=0.5, help="flood phases: share of malformed messages")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=1, help="run the phases this many times in turn; print medians")
    ap.add_argument("--gc", default="tuned", choices=["tuned", "freeze", "default"], help="the ingest's collector")
    ap.add_argument("--receiver", default="process", help="mqtt.receiver of the ingest: process, thread, or both "
                    "(thread,process: taken in turn within each repeat, figures labelled backend/receiver)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(*args.worker)
        return
    from tests.fixtures.postgres import create_database, drop_database
    from tools.bench_central_inprocess import run_inprocess, set_gc

    print(f"bench_central: {args.edges} edges, {args.instances} ingest process(es), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, gc {args.gc}, batch_max {args.batch_max}")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    receivers = args.receiver.split(",")
    for backend in args.backends.split(","):
        for _ in range(args.repeat):
            for receiver in receivers:
                label = backend if len(receivers) == 1 else f"{backend}/{receiver}"
                for phase in args.phases.split(","):
                    r = _phase(label, backend, phase, args, receiver, create_database, drop_database, run_inprocess,
                               set_gc)
                    results.setdefault((label, phase), []).append(r)
                    sys.stdout.flush()
        if args.repeat > 1:
            for receiver in receivers:
                _summary(backend if len(receivers) == 1 else f"{backend}/{receiver}", results, args.malformed)


def _phase(label: str, backend: str, phase: str, args: argparse.Namespace, receiver: str, create_database: Any,
           drop_database: Any, run_inprocess: Any, set_gc: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else create_database("gw_bench")
        common = {"instances": args.instances, "gc_mode": args.gc, "receiver": receiver}
        try:
            if phase in ("throughput", "loaded", "flood", "drain", "flood_drain"):
                flood = phase.startswith("flood") or phase == "loaded"
                r = run_ingest(url, Path(tmp), args.edges, args.incidents, None, args.batch_max,
                               drain=phase.endswith("drain"), malformed=args.malformed if flood else 0.0,
                               void=phase == "loaded", **common)
                what = {"throughput": "sustained ingest", "drain": "backlog drain (published while central was down)",
                        "loaded": f"sustained ingest while as many malformed messages go to a topic it does not "
                                  f"read ({args.malformed:.0%} of what is published)",
                        "flood": f"ingest with {args.malformed:.0%} malformed messages",
                        "flood_drain": f"backlog drain with {args.malformed:.0%} malformed messages"}[phase]
                print(f"[{label}] {what}: {r['events']}/{r['expected']} valid events, {r['events_per_s']} valid "
                      f"events/s, {r['dead_letters']} dead letters ({r['batches']} commits; publish took "
                      f"{r['publish_s']} s); ingest RSS ready/middle/end {r['rss_mb']} MiB, peak {r['rss_max_mb']} "
                      f"MiB; receive queue high water {r['queue_high_water']}; ingest CPU {r['cpu_us_per_event']} "
                      f"µs per valid event (CPU s {r['cpu_s']})")
            elif phase == "latency":
                r = run_ingest(url, Path(tmp), args.edges, args.latency_incidents, args.rate, args.batch_max, **common)
                print(f"[{label}] filing latency at {args.rate:.0f} incidents/s ({3 * args.rate:.0f} "
                      f"events/s): median {r['latency_ms_median']} ms, p99 {r['latency_ms_p99']} ms "
                      f"({r['events']}/{r['expected']} events)")
            elif phase == "inprocess":
                set_gc(args.gc)
                r = run_inprocess(url, Path(tmp), args.incidents // 3, args.batch_max, incident_events)
                gc.unfreeze()
                gc.set_threshold(*_GC_DEFAULT)
                print(f"[{label}] in process, no broker: clean {r['clean']} events/s, 50 % malformed {r['flood']} "
                      f"valid events/s (ratio {r['ratio']:.0%}); per CPU second {r['clean_cpu']} / {r['flood_cpu']} "
                      f"({r['ratio_cpu']:.0%}); RSS {r['rss_mb']} MiB")
            elif phase == "analytics":  # the KPI endpoints on a year of 40,000 cases (tools/bench_analytics.py)
                from tools.bench_analytics import report, run_analytics

                r = run_analytics(url)
                print(report(backend, r))
            elif phase == "caselist":
                r = run_case_list(url, args.cases)
                figures = ", ".join(f"{k} {v} ms" for k, v in r.items() if k != "seed_s")
                print(f"[{label}] case list at {args.cases} cases (seeded in {r['seed_s']} s), median of 15 "
                      f"(limit 50 + total): {figures}")
            else:
                raise SystemExit(f"--phases: unknown phase {phase!r}")
        finally:
            if backend != "sqlite":
                drop_database(url)
    return r


def _summary(backend: str, results: dict[tuple[str, str], list[dict[str, Any]]], malformed: float) -> None:
    """Medians over the repeats, and flood/clean ratios of adjacent runs."""
    med = statistics.median
    for phase in ("throughput", "loaded", "drain", "flood", "flood_drain"):
        runs = results.get((backend, phase))
        if runs:
            print(f"[{backend}] {phase}: median {med(r['events_per_s'] for r in runs)} events/s of "
                  f"{[r['events_per_s'] for r in runs]}; peak RSS {[r['rss_max_mb'] for r in runs]} MiB; ingest CPU "
                  f"per valid event {[r.get('cpu_us_per_event') for r in runs]} µs")
    for clean, flood in (("throughput", "flood"), ("loaded", "flood"), ("drain", "flood_drain")):
        a, b = results.get((backend, clean)), results.get((backend, flood))
        if a and b:
            ratios = [f["events_per_s"] / c["events_per_s"] for c, f in zip(a, b, strict=False) if c["events_per_s"]]
            print(f"[{backend}] {flood} / {clean} with {malformed:.0%} malformed: median ratio {med(ratios):.0%} "
                  f"({', '.join(f'{x:.0%}' for x in ratios)})")
    lat = results.get((backend, "latency"))
    if lat:
        print(f"[{backend}] latency p99: median {med(r['latency_ms_p99'] for r in lat)} ms of "
              f"{[r['latency_ms_p99'] for r in lat]}")
    runs = results.get((backend, "inprocess"))
    if runs:
        print(f"[{backend}] inprocess: median clean {med(r['clean'] for r in runs)}, flood "
              f"{med(r['flood'] for r in runs)} events/s, ratio {med(r['ratio'] for r in runs):.0%}")


_GC_DEFAULT = gc.get_threshold()


if __name__ == "__main__":
    main()
