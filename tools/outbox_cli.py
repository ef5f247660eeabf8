"""Inspect or drain an edge's MQTT outbox (the SQLite file in cameras.yaml ``outbox.path``).

    .venv/bin/python tools/outbox_cli.py stats var/edge/outbox.sqlite
    .venv/bin/python tools/outbox_cli.py list var/edge/outbox.sqlite --limit 20
    .venv/bin/python tools/outbox_cli.py drain --config cameras.yaml --timeout 60

``stats``/``list`` only read. ``drain`` connects with the config's broker settings, publishes what is
queued and exits 0 once the outbox is empty (1 if not within the timeout). Do not run ``drain`` while the
edge worker itself is running: both would publish the same rows (harmless duplicates, but pointless).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge.config import ConfigError, load_config  # noqa: E402
from edge.mqtt import EdgePublisher, Outbox  # noqa: E402


def cmd_stats(path: Path) -> int:
    box = Outbox(path)
    age = box.oldest_age_s()
    print(json.dumps({"path": str(path), "pending": box.pending(), "by_event": box.counts_by_kind(),
                      "dropped_total": box.dropped, "oldest_age_s": None if age is None else round(age, 1),
                      **box.pragmas()}, indent=2))  # fmt: skip
    return 0


def cmd_list(path: Path, limit: int) -> int:
    box = Outbox(path)
    now = time.time()
    print(f"{'seq':>8}  {'event':8} {'age_s':>8} {'bytes':>8}  incident_id / event_id")
    for e in box.next_after(0, limit):
        print(f"{e.seq:>8}  {e.kind:8} {now - e.enqueued_at:8.1f} {len(e.payload):8}  {e.incident_id} / {e.event_id}")
    return 0


def cmd_drain(config: Path, timeout: float) -> int:
    cfg = load_config(config)
    pub = EdgePublisher(cfg)
    before = pub.outbox.pending()
    pub.start()
    ok = pub.wait_drained(timeout)
    stats = pub.stats()
    pub.stop()
    print(json.dumps({"pending_before": before, **stats}, indent=2))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stats", help="counts, oldest age, drops")
    p.add_argument("path", type=Path)
    p = sub.add_parser("list", help="queued events, oldest first")
    p.add_argument("path", type=Path)
    p.add_argument("--limit", type=int, default=50)
    p = sub.add_parser("drain", help="publish what is queued and exit")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        if args.cmd in ("stats", "list") and not args.path.is_file():
            print(f"outbox {args.path}: no such file", file=sys.stderr)
            return 2
        if args.cmd == "stats":
            return cmd_stats(args.path)
        if args.cmd == "list":
            return cmd_list(args.path, args.limit)
        return cmd_drain(args.config, args.timeout)
    except (ConfigError, ValueError) as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
