"""Issue 12 item 4: every incident message is classified before it touches the database.

A flood of 50 % malformed messages of every kind the issue found (NaN, 1e400, 5,000-digit integers, lone
surrogates, 100,000-deep nesting, NUL, U+202E, U+FFFF, seq = 2^31, …) mixed into batches with valid events, on
SQLite and PostgreSQL: each malformed one is a dead letter with its specific reason (the same on both databases),
no batch fails (no processing_error), valid events keep ≥ 80 % of their clean throughput (per CPU second of the
ingest) and memory stays flat.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from central.db import Case, DeadLetter, IncidentEvent
from central.ingest_parse import DeadLetterReason
from central.mqtt_ingest import tune_gc
from tests.central_support import encode, incident_payload, topic
from tests.hostile_incidents import hostile

BATCH = 200


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _valid(n_incidents: int) -> list[bytes]:
    out = []
    for i in range(n_incidents):
        iid = str(uuid.uuid4())
        zone = f"flood-{i % 50}"
        for seq, ev in enumerate(("opened", "updated", "closed"), 1):
            out.append(encode(incident_payload(event=ev, seq=seq, incident_id=iid, zone=zone, snapshot=(seq == 1))))
    return out


def _run(central: Any, raws: list[bytes]) -> tuple[float, list[Any]]:
    """Batches as MqttIngest._next_batch makes them: each message prepared (parsed) as it is taken, up to BATCH
    messages that will be stored plus the dead letters among them (at most 4 × BATCH). Returns the CPU seconds of
    this process (the ingest: parsing, SQLAlchemy, SQLite itself) — on a shared 2-core box wall-clock time swings
    by ±50 % with other jobs, CPU time much less; tools/bench_central.py --phases flood gives wall-clock figures."""
    results: list[Any] = []
    t = time.process_time()
    batch: list[Any] = []
    good = 0
    for raw in raws:
        m = central.ingest.prepare(topic(), raw)
        batch.append(m)
        good += not isinstance(m.parsed, DeadLetterReason)
        if good >= BATCH or len(batch) >= 4 * BATCH:
            results += central.ingest.handle_batch(batch)
            batch, good = [], 0
    if batch:
        results += central.ingest.handle_batch(batch)
    return time.process_time() - t, results


def test_every_kind_gets_its_own_reason_in_one_batch(central: Any) -> None:
    kinds = hostile(incident_payload())
    good = incident_payload()
    results = central.ingest.handle_batch([(topic(), raw) for _, _, raw in kinds] + [(topic(), encode(good))])
    for (name, reason, _), r in zip(kinds, results, strict=False):
        assert (r.outcome, r.reason) == ("dead_letter", reason), (name, r.detail)
        assert r.detail
    assert results[-1].outcome == "applied"
    with central.session_factory() as s:
        stored = Counter(s.scalars(select(DeadLetter.reason)))
        assert stored == Counter(reason for _, reason, _ in kinds)
        assert s.scalar(select(func.count()).select_from(Case)) == 1
    # the identifiers that got through are clean: no zone with NUL, bidi or non-characters became a case
    assert {r.reason for r in results} >= {"invalid_number", "invalid_text", "too_deep", "too_large", "schema"}


def test_flood_of_half_malformed_keeps_throughput_and_memory(central: Any) -> None:
    kinds = hostile(incident_payload())
    _run(central, _valid(10))  # warm up: connections, caches, compiled validators
    thresholds = gc.get_threshold()
    tune_gc()  # as `gridwatch-central ingest` runs (the test process's heap is otherwise pytest's)
    clean_rates, rates, rss = [], [], []
    for _ in range(5):  # alternate clean and flooded runs: the box is shared, compare the best of each
        clean = _valid(200)  # 600 events
        t_clean, res = _run(central, clean)
        assert {r.outcome for r in res} == {"applied"}
        clean_rates.append(len(clean) / t_clean)
        valid = _valid(200)
        mixed: list[bytes] = []
        for i, raw in enumerate(valid):  # 1:1, every kind in turn
            mixed += [raw, kinds[i % len(kinds)][2]]
        t_flood, res = _run(central, mixed)
        rates.append(len(valid) / t_flood)
        rss.append(_rss_mb())
        outcomes = Counter(r.outcome for r in res)
        assert outcomes == {"applied": len(valid), "dead_letter": len(valid)}, outcomes
        expected = [kinds[i % len(kinds)][1] for i in range(len(valid))]
        assert [r.reason for r in res[1::2]] == expected
        assert "processing_error" not in {r.reason for r in res}
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    ratio = statistics.median(f / c for f, c in zip(rates, clean_rates, strict=True))  # paired: adjacent runs
    print(
        f"valid events per CPU second: clean {[round(r) for r in clean_rates]}, with 50 % malformed "
        f"{[round(r) for r in rates]} (median ratio {ratio:.0%}); RSS after each flood {[round(x) for x in rss]} MiB"
    )
    # The target (≥ 80 %) is measured end to end by tools/bench_central.py --phases flood (docs/benchmarks.md): this
    # guards the mechanism — the poison messages used to cut valid throughput to ~5 % — with a margin for
    # a box where other jobs move CPU-time figures by ±15 %.
    assert ratio >= 0.7, (clean_rates, rates)
    assert rss[-1] - rss[0] < 25, rss  # flat: a third flood costs no more memory than the first
    with central.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(IncidentEvent)) == 30 + 10 * 600
        reasons = Counter(s.scalars(select(DeadLetter.reason)))
        assert sum(reasons.values()) == 5 * 600 and "processing_error" not in reasons


def test_fast_schema_accepts_exactly_what_the_schema_file_accepts() -> None:
    """The fast validator compiles a rewrite of edge/schemas/incident.v1.json ($refs inlined, oneOf [null, X] as
    if/else): it must accept and refuse the same documents as jsonschema on the file itself."""
    from central.ingest_parse import fast_incident_validator, incident_validator

    fast, reference = fast_incident_validator(), incident_validator()

    def fast_ok(p: Any) -> bool:
        try:
            fast(p)
            return True
        except Exception:
            return False

    bases = [
        incident_payload(),
        incident_payload(snapshot=True),
        incident_payload(type="street_vending"),
        incident_payload(type="crowd_density", position=None),
        incident_payload(position=None),
        {**incident_payload(event="closed"), "close_reason": "left"},
        {
            **incident_payload(snapshot=True),
            "evidence": [
                {
                    "kind": "arrival",
                    "at": "2026-11-23T01:58:00Z",
                    "snapshot": incident_payload(snapshot=True)["snapshot"],
                }
            ],
        },
    ]
    variants: list[Any] = []
    for base in bases:
        variants.append(base)
        for key in base:
            variants.append({k: v for k, v in base.items() if k != key})
            for bad in (None, "x", 1, 1.5, [], {}, True):
                variants.append({**base, key: bad})
        for key in ("camera", "zone", "subject", "crowd", "snapshot"):
            if isinstance(base.get(key), dict):
                for sub in base[key]:
                    for bad in (None, "x", -1, [], {}):
                        variants.append({**base, key: {**base[key], sub: bad}})
    assert len(variants) > 500
    disagree = [v for v in variants if fast_ok(v) != reference.is_valid(v)]
    assert not disagree, disagree[:3]
    assert sum(fast_ok(v) for v in variants) >= len(bases)
