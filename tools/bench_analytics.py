"""Analytics endpoints on a year of data: the ``analytics`` phase of tools/bench_central.py (or on its own).

    .venv/bin/python tools/bench_analytics.py --backends sqlite,postgresql [--cases 40000] [--repeat 5]

Seeds a year of ~40,000 cases over 600 grid cells (tools/gen_cases.py) into a fresh database, then times each
endpoint through the real application (FastAPI routing, token check, JSON encoding; ``TestClient`` in-process, no
network), with the whole year as the period. Prints the median wall time and this process's CPU time per request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENDPOINTS = [
    ("kpis", "/api/v1/kpis", {}),
    ("kpis by street", "/api/v1/kpis", {"group_by": "street"}),
    ("kpis by grid cell", "/api/v1/kpis", {"group_by": "grid_cell"}),
    ("kpis by squad", "/api/v1/kpis", {"group_by": "squad"}),
    ("kpis by category", "/api/v1/kpis", {"group_by": "category"}),
    ("kpis of one street", "/api/v1/kpis", {"grid_unit": "330102-003"}),
    ("kpis/levels by month", "/api/v1/kpis/levels", {"bucket": "month"}),
    ("evaluation by squad", "/api/v1/evaluation", {"by": "squad", "trend": "false"}),
    ("findings", "/api/v1/findings", {}),
]


def run_analytics(url: str, cases: int = 40_000, repeat: int = 5) -> dict[str, Any]:
    """Seed ``url`` (an empty database) and time the endpoints; returns {name: (wall_ms, cpu_ms)} and the seed."""
    from fastapi.testclient import TestClient

    from central.app import create_app
    from central.clock import FixedClock
    from central.config import CentralConfig
    from central.db import make_engine, make_session_factory, upgrade
    from central.tokens import create_token
    from tools.gen_cases import Plan, generate

    upgrade(url)
    engine = make_engine(url)
    sf = make_session_factory(engine)
    cfg = CentralConfig(database_url=url, evidence_dir=Path(tempfile.mkdtemp(prefix="bench-ev-")))
    plan = Plan(cases=cases)
    with sf() as s:
        g = generate(s, cfg, plan)
        token, _ = create_token(s, "bench", "viewer")
        s.commit()
    app = create_app(cfg, session_factory=sf, clock=FixedClock(plan.end + timedelta(days=1)), include_web=False)
    client = TestClient(app)
    period = {"since": plan.start.isoformat(), "until": plan.end.isoformat()}
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {"cases": g.cases, "cells": len(g.cells), "seed_s": round(g.seconds, 1)}
    for name, path, params in ENDPOINTS:
        walls, cpus = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            r = client.get(path, params={**period, **params}, headers=headers)
            walls.append(1000 * (time.perf_counter() - t))
            cpus.append(1000 * (time.process_time() - c))
            if r.status_code != 200:
                raise RuntimeError(f"{path} {params}: HTTP {r.status_code} {r.text[:300]}")
        out[name] = (round(statistics.median(walls)), round(statistics.median(cpus)))
    engine.dispose()
    return out


def report(backend: str, r: dict[str, Any]) -> str:
    lines = [
        f"[{backend}] analytics over a year: {r['cases']} cases, {r['cells']} cells (seeded in {r['seed_s']} s); "
        f"median wall / CPU ms per request, load average {os.getloadavg()[0]:.1f}"
    ]
    lines += [
        f"  {name:28s} {wall:6d} ms {cpu:6d} ms"
        for name, (wall, cpu) in ((k, v) for k, v in r.items() if isinstance(v, tuple))
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--cases", type=int, default=40_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from tests.fixtures.postgres import create_database, drop_database

    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
            url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else create_database("gw_bench")
            try:
                print(report(backend, run_analytics(url, args.cases, args.repeat)), flush=True)
            finally:
                if backend != "sqlite":
                    drop_database(url)


if __name__ == "__main__":
    main()
