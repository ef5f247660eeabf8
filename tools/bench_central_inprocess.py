"""The ``inprocess`` phase of tools/bench_central.py: ingest without a broker, to separate the cost of classifying
and storing from the cost of the MQTT receive path.

Batches are made as ``MqttIngest._next_batch`` makes them (each message prepared as it is taken; up to
``batch_max`` messages that will be stored plus the dead letters among them, at most 4 × ``batch_max``) and written
with ``IngestService.handle_batch``. Clean and 1:1 flooded runs alternate (the box is shared: adjacent runs see the
same load); figures are valid events per wall-clock second and per CPU second of this process, and its RSS.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def set_gc(mode: str) -> None:
    """``tuned``: what ``gridwatch-central ingest`` does (central.mqtt_ingest.tune_gc: freeze + higher thresholds);
    ``freeze``: ``gc.freeze()`` after start-up only, thresholds unchanged; ``default``: CPython's defaults."""
    from central.mqtt_ingest import tune_gc

    if mode == "tuned":
        tune_gc()
    elif mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode != "default":
        raise ValueError(f"--gc {mode!r}: expected tuned, freeze or default")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def run_inprocess(
    url: str,
    workdir: Path,
    incidents: int,
    batch_max: int,
    incident_events: Callable[[str, int, datetime], list[dict[str, Any]]],
    rounds: int = 3,
) -> dict[str, Any]:
    """``rounds`` × (clean run, flooded run) of ``incidents`` incidents (3 events each, made by
    ``incident_events(edge, spot, now)``, tools/bench_central.py's)."""
    from central.config import CentralConfig
    from central.db import make_engine, make_session_factory, upgrade
    from central.ingest import IngestService
    from central.ingest_parse import DeadLetterReason
    from central.store import FileEvidenceStore
    from tests.hostile_incidents import hostile

    upgrade(url)
    engine = make_engine(url)
    cfg = CentralConfig.model_validate({"database_url": url, "evidence_dir": str(workdir / "evidence")})
    ingest = IngestService(make_session_factory(engine), cfg, store=FileEvidenceStore(cfg.evidence_dir))
    edge, now = "bench-edge-00", datetime.now(UTC)
    topic = f"gridwatch/v1/{edge}/incidents"
    bad = [raw for _, _, raw in hostile(incident_events(edge, 0, now)[1])]
    spot = iter(range(10**9))

    def valid(n: int) -> list[bytes]:
        return [json.dumps(p).encode() for _ in range(n) for p in incident_events(edge, next(spot), now)]

    def run(raws: list[bytes]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        batch: list[Any] = []
        good = 0
        for raw in raws:
            m = ingest.prepare(topic, raw)
            batch.append(m)
            good += not isinstance(m.parsed, DeadLetterReason)
            if good >= batch_max or len(batch) >= 4 * batch_max:
                ingest.handle_batch(batch)
                batch, good = [], 0
        if batch:
            ingest.handle_batch(batch)
        return time.perf_counter() - wall, time.process_time() - cpu

    run(valid(20))  # warm up: connections, caches, compiled validators
    clean, flood, clean_cpu, flood_cpu, rss = [], [], [], [], [_rss_mb()]
    for _ in range(rounds):
        raws = valid(incidents)
        wall, cpu = run(raws)
        clean.append(len(raws) / wall)
        clean_cpu.append(len(raws) / cpu)
        raws = valid(incidents)
        mixed = [m for i, raw in enumerate(raws) for m in (raw, bad[i % len(bad)])]
        wall, cpu = run(mixed)
        flood.append(len(raws) / wall)
        flood_cpu.append(len(raws) / cpu)
        rss.append(_rss_mb())
    engine.dispose()
    med = statistics.median
    return {
        "clean": round(med(clean)),
        "flood": round(med(flood)),
        "ratio": round(med(f / c for f, c in zip(flood, clean, strict=True)), 2),
        "clean_cpu": round(med(clean_cpu)),
        "flood_cpu": round(med(flood_cpu)),
        "ratio_cpu": round(med(f / c for f, c in zip(flood_cpu, clean_cpu, strict=True)), 2),
        "rss_mb": rss,
    }
