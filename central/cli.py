"""gridwatch-central: serve | ingest | migrate | create-token | kpis | hotspots | broker-config.

Every command takes ``--config central.yaml`` (default: $GRIDWATCH_CENTRAL_CONFIG, else built-in defaults) and
``--database-url`` to override the configured database.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from central.config import CentralConfig, CentralConfigError, load_central_config
from edge.logs import ENV_VAR, FORMATS, configure_logging

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """'7d', '12h', '30m', '2w' (before now) or an ISO 8601 date / datetime (UTC when no offset)."""
    m = _REL.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a duration like 7d/12h nor an ISO date") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _load(args: argparse.Namespace) -> CentralConfig:
    path = args.config or os.environ.get("GRIDWATCH_CENTRAL_CONFIG")
    cfg = load_central_config(path)
    if args.database_url:
        cfg = cfg.model_copy(update={"database_url": args.database_url})
    return cfg


def _session(cfg: CentralConfig):  # type: ignore[no-untyped-def]
    from central.db import make_engine, make_session_factory

    return make_session_factory(make_engine(cfg.database_url))()


# --------------------------------------------------------------------------- commands


def cmd_migrate(args: argparse.Namespace) -> int:
    from central.db import upgrade

    cfg = _load(args)
    upgrade(cfg.database_url)
    print(f"database at {_redact(cfg.database_url)} is at the latest schema")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central.app import create_app
    from central.db import upgrade

    cfg = _load(args)
    if not args.no_migrate:
        upgrade(cfg.database_url)
    app = create_app(cfg, start_ingest=not args.no_ingest, start_escalation=True)
    # An open SSE stream would otherwise hold shutdown forever: give clients 5 s, then close them.
    # log_config=None: uvicorn's loggers go to the root handler set up in main (text or JSON, redacted)
    uvicorn.run(app, host=args.host or cfg.http_host, port=args.port or cfg.http_port, log_level="info",
                timeout_graceful_shutdown=5, log_config=None)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """MQTT ingest only (no HTTP): for dedicated ingest instances on a shared subscription."""
    from central.db import make_engine, make_session_factory, upgrade
    from central.ingest_process import make_ingest
    from central.mqtt_ingest import tune_gc

    cfg = _load(args)
    if not args.no_migrate:
        upgrade(cfg.database_url)
    sf = make_session_factory(make_engine(cfg.database_url))
    from central.events import EventBus

    bus = EventBus()
    runner = make_ingest(cfg, session_factory=sf, bus=bus)
    tune_gc()  # a dedicated ingest process: see mqtt_ingest.tune_gc
    responder = None
    if cfg.crowd_response.plans:  # crowd incident events are live, seen only here: this process sends the plans
        from central.clock import SystemClock
        from central.crowd_plans import CrowdResponder

        responder = CrowdResponder(sf, cfg, SystemClock(), bus)
        responder.start()
    if args.metrics_port:
        from central.clock import SystemClock
        from central.metrics import CentralMetrics, serve_metrics

        metrics = CentralMetrics()
        metrics.instrument(runner.ingest)
        metrics.bind(session_factory=sf, ingest=lambda: runner, clock=SystemClock(),
                     webhook_keys=[w.key for w in cfg.webhooks])
        serve_metrics(metrics, args.metrics_port, args.metrics_addr)
        print(f"metrics at http://{args.metrics_addr}:{args.metrics_port}/metrics", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runner.start()
    # "ingesting" only once the broker has acknowledged the subscriptions: before that, on a first start (no session
    # yet), the broker drops what edges publish — announcing readiness earlier is how a test once lost events
    waited = 0.0
    while not done.is_set() and not runner.wait_subscribed(1.0):
        waited += 1.0
        if waited % 10 == 0:
            print(f"still not subscribed at {cfg.mqtt.host}:{cfg.mqtt.port} after {waited:.0f} s: "
                  f"{runner.health().get('last_error')}", file=sys.stderr, flush=True)
    if runner.subscribed:
        print(f"ingesting from {cfg.mqtt.host}:{cfg.mqtt.port} as {cfg.mqtt.client_id}: {cfg.mqtt.topics()} "
              f"(subscribed; session present: {runner.stats['session_present']})", flush=True)
    while not done.wait(1.0):
        pass
    runner.stop()
    if responder is not None:
        responder.stop()
    print(json.dumps(runner.health()), flush=True)
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    from central.tokens import create_token

    name = args.name or args.name_option
    if not name:
        raise argparse.ArgumentTypeError("create-token needs a NAME (positional or --name), e.g. ops-desk")
    cfg = _load(args)
    with _session(cfg) as s:
        plaintext, row = create_token(s, name, args.role)
        s.commit()
        print(f"token {row.id} '{row.name}' role={row.role} (shown once, store it now):", file=sys.stderr)
        print(plaintext)
    return 0


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]
    return "\n".join(out)


def _period(args: argparse.Namespace) -> tuple[datetime, datetime]:
    """--since / --until (absolute or relative such as 7d) → (since, until), until defaulting to now."""
    now = datetime.now(UTC)
    return parse_when(args.since, now), parse_when(args.until, now) if args.until else now


def cmd_kpis(args: argparse.Namespace) -> int:
    from central.analytics import kpis
    from central.clock import SystemClock

    cfg = _load(args)
    since, until = _period(args)
    with _session(cfg) as s:
        from central.grid import load_grid

        grid = load_grid(s, cfg)
        if args.grid_unit and grid.get(args.grid_unit) is None:
            raise argparse.ArgumentTypeError(f"unknown grid unit {args.grid_unit!r}")
        rows = kpis(s, since, until, args.group_by, SystemClock(), cfg, grid=grid,
                    cells=grid.cells_under(args.grid_unit) if args.grid_unit else None)
    if args.json:
        print(json.dumps({"since": since.isoformat(), "until": until.isoformat(), "rows": rows}, default=str))
        return 0
    print(f"KPIs {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC" + (f" by {args.group_by}" if args.group_by
                                                                         else ""))
    headers = ["group", "incidents", "filed", "due", "closed", "on time", "closure", "on-time", "rework",
               "avg handling h", "avg overtime x"]
    table = [[str(r["group"]), _fmt(r["incidents"]), _fmt(r["cases_filed"]), _fmt(r["due"]), _fmt(r["closed"]),
              _fmt(r["on_time"]), _fmt(r["closure_rate"], True), _fmt(r["on_time_rate"], True),
              _fmt(r["rework_rate"], True), _fmt(r["avg_handling_h"]), _fmt(r["avg_overtime_multiple"])]
             for r in rows]
    print(render_table(headers, table))
    return 0


def cmd_hotspots(args: argparse.Namespace) -> int:
    from central.analytics import hotspots

    cfg = _load(args)
    since, until = _period(args)
    with _session(cfg) as s:
        out = hotspots(s, since, until, cfg.timezone, top=args.top)
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    print(f"Hotspots {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC ({out['total']} incidents, "
          f"previous period {out['previous_total']}); hours in {out['timezone']}")
    print("\nTop locations")
    print(render_table(["camera", "zone", "type", "count", "grid cell"],
                       [[x["camera_id"], x["zone"], x["type"], str(x["count"]), x["grid_cell"] or "-"]
                        for x in out["top_locations"]]))
    print("\nBusiest zone × hour of day")
    print(render_table(["camera", "zone", "type", "hour", "count"],
                       [[x["camera_id"], x["zone"], x["type"], f"{x['hour']:02d}:00", str(x["count"])]
                        for x in out["by_zone_hour"][: args.top]]))
    print("\nChange vs previous period")
    print(render_table(["camera", "zone", "type", "now", "before", "change"],
                       [[x["camera_id"], x["zone"], x["type"], str(x["count"]), str(x["previous"]),
                         "new" if x["change_pct"] is None else f"{x['change_pct']:+.0f}%"]
                        for x in out["change_vs_previous"][: args.top]]))
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    """Mosquitto config directory for this site: logins, ACL, client ids bound to user names, TLS."""
    from central.broker_config import (
        BrokerConfigError,
        BrokerSite,
        find_tls_files,
        render_credentials,
        write_credentials,
        write_site,
    )

    cfg = _load(args)
    edges = args.edge or list(cfg.mqtt.edges)
    centrals = args.central or [cfg.mqtt.username or "central"]
    try:
        site = BrokerSite(
            edges=edges, centrals=centrals, topic_prefix=cfg.mqtt.topic_prefix, port=args.port, bind=args.bind,
            plain=not args.no_plain, tls=find_tls_files(args.tls_dir) if args.tls_dir else None,
            tls_port=args.tls_port, tls_bind=args.tls_bind, broker_dir=args.broker_dir, data_dir=args.data_dir,
            log_dest=args.log_dest, run_as=args.run_as,
        )
        result = write_site(site, args.out, rotate=args.rotate or (), rotate_all=args.rotate_all)
    except BrokerConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    print(f"wrote {', '.join(str(f) for f in result.files)}", file=sys.stderr)
    print(f"users: {', '.join(result.users)} (hashes by {result.hasher})"
          + (f"; kept passwords of {', '.join(result.kept)}" if result.kept else "")
          + (f"; removed {', '.join(result.removed)}" if result.removed else ""), file=sys.stderr)
    if not result.new_credentials:
        print("no new passwords (existing users kept theirs; --rotate USER or --rotate-all to change them)",
              file=sys.stderr)
        return 0
    text = render_credentials(result.new_credentials, site)
    if args.credentials:
        write_credentials(args.credentials, text)
        print(f"new passwords for {', '.join(result.new_credentials)} written to {args.credentials} (mode 0600)",
              file=sys.stderr)
    else:
        print("new passwords (shown once, store them now):", file=sys.stderr)
        sys.stdout.write(text)
    return 0


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridwatch-central", description=__doc__.split("\n")[0])
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=FORMATS, default=None,
                   help=f"text (default) or json: one JSON object per line (also ${ENV_VAR})")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", "-c", type=Path, help="central.yaml")
        sp.add_argument("--database-url", help="override database_url")
        return sp

    sp = add("serve", "HTTP API + dashboard, with the MQTT ingest")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--no-ingest", action="store_true", help="API only")
    sp.add_argument("--no-migrate", action="store_true")
    sp.set_defaults(func=cmd_serve)
    sp = add("ingest", "MQTT ingest only")
    sp.add_argument("--no-migrate", action="store_true")
    sp.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port")
    sp.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                    help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)")
    sp.set_defaults(func=cmd_ingest)
    add("migrate", "apply database migrations").set_defaults(func=cmd_migrate)
    sp = add("create-token", "create an API token (printed once)")
    sp.add_argument("name", nargs="?", help="who or what the token is for, e.g. ops-desk")
    sp.add_argument("--name", dest="name_option", metavar="NAME", help="the same as the positional NAME")
    sp.add_argument("--role", required=True, choices=["viewer", "dispatcher", "handler", "admin"])
    sp.set_defaults(func=cmd_create_token)
    sp = add("broker-config", "write a Mosquitto config directory (logins, ACL, TLS) for this site's edges")
    sp.add_argument("--out", "-o", type=Path, required=True, help="directory to write (created if missing)")
    sp.add_argument("--edge", action="append", metavar="EDGE_ID",
                    help="an edge id (repeatable); default: mqtt.edges of central.yaml")
    sp.add_argument("--central", action="append", metavar="NAME",
                    help="a central instance's user name (repeatable; one per instance); default: mqtt.username "
                    "or 'central'")
    sp.add_argument("--tls-dir", type=Path, help="directory with ca.crt, server.crt and server.key: adds a TLS "
                    "listener (the plain one then listens on 127.0.0.1 only, unless --bind)")
    sp.add_argument("--port", type=int, default=1883, help="plain listener port (default 1883)")
    sp.add_argument("--bind", help="plain listener address (default: all interfaces; 127.0.0.1 with --tls-dir)")
    sp.add_argument("--no-plain", action="store_true", help="no plain listener (TLS only)")
    sp.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (default 8883)")
    sp.add_argument("--tls-bind", help="TLS listener address (default: all interfaces)")
    sp.add_argument("--broker-dir", help="the output directory as the broker sees it, e.g. /mosquitto/site in "
                    "the Docker image (default: its absolute path here)")
    sp.add_argument("--data-dir", default="/var/lib/mosquitto/", help="persistence_location (default "
                    "/var/lib/mosquitto/; /mosquitto/data/ in the Docker image)")
    sp.add_argument("--log-dest", default="stderr", help="Mosquitto log_dest (default stderr)")
    sp.add_argument("--run-as", metavar="USER", help="Mosquitto's `user` option (the account it drops to)")
    sp.add_argument("--credentials", type=Path, help="write the new passwords to this file (mode 0600) instead "
                    "of stdout")
    sp.add_argument("--rotate", action="append", metavar="USER", help="new password for USER (repeatable)")
    sp.add_argument("--rotate-all", action="store_true", help="new passwords for every user")
    sp.set_defaults(func=cmd_broker_config)
    for name, func, help_ in (("kpis", cmd_kpis, "KPI table for a period"),
                              ("hotspots", cmd_hotspots, "where and when incidents happen")):
        sp = add(name, help_)
        sp.add_argument("--since", default="7d", help="7d, 12h, 2w or an ISO date (default 7d)")
        sp.add_argument("--until", help="default now")
        sp.add_argument("--json", action="store_true")
        if name == "kpis":
            sp.add_argument("--group-by", choices=["grid_cell", "squad", "camera", "category", "community", "street",
                                                   "district"])
            sp.add_argument("--grid-unit", help="only cases in this grid unit (district, street, community, cell)")
        else:
            sp.add_argument("--top", type=int, default=10)
        sp.set_defaults(func=func)
    from central.command_cli import register  # grid, catalogue, escalate, evaluate, findings

    register(sub, add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_format)
    except ValueError as e:  # $GRIDWATCH_LOG_FORMAT set to something else
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except CentralConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OperationalError as e:
        text = str(e.orig) if e.orig is not None else str(e)
        if "no such table" in text or "does not exist" in text:
            print(f"database error: {text.splitlines()[0]} — the database has no GridWatch schema yet; run "
                  "`gridwatch-central migrate --config <central.yaml>` first", file=sys.stderr)
        else:
            print(f"database error: {text.splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
