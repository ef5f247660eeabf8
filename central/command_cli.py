"""Command-center subcommands of ``gridwatch-central`` (registered by ``central.cli.build_parser``):

grid import FILE...            CSV or GeoJSON units into the database (all validated first)
grid show [--level L] [--json] the merged hierarchy
grid schema                    JSON Schema of the grid / escalation / catalogue sections
catalogue import FILE.csv      the category standard
catalogue show [--json]
escalate                       one escalation sweep (for cron, when serve does not run it)
evaluate --by squad --since 30d [--grid-unit U] [--csv F] [--xlsx F] [--json]
findings --since 365d [--level community] [--html F] [--lang zh-CN] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from central.config import CentralConfig


def _cli() -> Any:
    from central import cli

    return cli


@contextmanager
def _importing(cfg: CentralConfig, error: type[Exception]) -> Iterator[Session]:
    """A session for one import command: committed when the block ends, rolled back on ``error`` (the usage error
    then says nothing was imported)."""
    with _cli()._session(cfg) as s:
        try:
            yield s
            s.commit()
        except error as e:
            s.rollback()
            raise argparse.ArgumentTypeError(f"{e} (nothing was imported)") from None


def cmd_grid_import(args: argparse.Namespace) -> int:
    from central.grid import GridError, import_file

    cfg = _cli()._load(args)
    totals = {"created": 0, "updated": 0, "boundaries": 0}
    with _importing(cfg, GridError) as s:
        for f in args.files:
            r = import_file(s, cfg, f, datetime.now(UTC))
            for k in totals:
                totals[k] += r[k]
            print(f"{f}: {r['created']} new, {r['updated']} updated, {r['boundaries']} boundaries")
    print(f"grid: {totals['created']} units created, {totals['updated']} updated")
    return 0


def cmd_grid_show(args: argparse.Namespace) -> int:
    from central.command_config import LEVELS
    from central.grid import load_grid

    cli = _cli()
    cfg = cli._load(args)
    with cli._session(cfg) as s:
        g = load_grid(s, cfg)
    if args.json:
        print(json.dumps({"districts": g.tree(), "problems": g.problems()}, ensure_ascii=False))
        return 0
    print("  ".join(f"{lvl}: {len(g.of_level(lvl))}" for lvl in LEVELS))
    levels = [args.level] if args.level else list(LEVELS)
    rows = [
        [
            u.level,
            u.code,
            u.name,
            u.name_zh or "-",
            u.parent or "-",
            u.team or "-",
            u.source,
            "yes" if u.boundary else "-",
        ]
        for lvl in levels
        for u in g.of_level(lvl)
    ]
    print(cli.render_table(["level", "code", "name", "name_zh", "parent", "team", "from", "boundary"], rows))
    for p in g.problems():
        print(f"problem: {p}", file=sys.stderr)
    return 0


def cmd_grid_schema(args: argparse.Namespace) -> int:
    from central.command_config import CatalogueConfig, EscalationConfig, GridConfig

    print(
        json.dumps(
            {
                "grid": GridConfig.model_json_schema(),
                "escalation": EscalationConfig.model_json_schema(),
                "catalogue": CatalogueConfig.model_json_schema(by_alias=True),
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


def cmd_catalogue_import(args: argparse.Namespace) -> int:
    from central.catalogue import CatalogueError, import_file

    cfg = _cli()._load(args)
    with _importing(cfg, CatalogueError) as s:
        r = import_file(s, cfg, args.file, datetime.now(UTC))
    print(f"catalogue: {r['created']} entries created, {r['updated']} updated")
    return 0


def cmd_catalogue_show(args: argparse.Namespace) -> int:
    from central.catalogue import load_catalogue

    cli = _cli()
    cfg = cli._load(args)
    with cli._session(cfg) as s:
        cat = load_catalogue(s, cfg)
    items = cat.as_list()
    if args.json:
        print(json.dumps(items, ensure_ascii=False))
        return 0
    rows = [
        [
            e["class"],
            e["code"],
            e["name_zh"] or "-",
            e["name"],
            e["department"] or "-",
            "/".join(
                "-" if e["limits"][k] is None else f"{e['limits'][k]:g}"
                for k in ("file", "dispatch", "handle", "verify")
            ),
            ",".join(e["incident_types"]) or "-",
        ]
        for e in items
    ]
    print(cli.render_table(["class", "code", "name_zh", "name", "department", "limits h", "incident types"], rows))
    return 0


def cmd_escalate(args: argparse.Namespace) -> int:
    from central.clock import SystemClock
    from central.db import make_engine, make_session_factory
    from central.escalation import escalation_tick

    cfg = _cli()._load(args)
    if not cfg.escalation.enabled:
        print(
            "escalation is not enabled (escalation.enabled in central.yaml); only placing cases by position",
            file=sys.stderr,
        )
    result = escalation_tick(make_session_factory(make_engine(cfg.database_url)), cfg, SystemClock())
    for e in result.escalated:
        print(
            f"case {e['case_id']}: {e['from_level']} → {e['to_level']} {e['unit_code'] or ''} "
            f"(squad {e['to_squad'] or '-'}, next deadline {e['deadline_at']})"
        )
    print(f"{len(result.escalated)} escalated, {result.located} placed by position")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from central.catalogue import load_catalogue
    from central.clock import SystemClock
    from central.evaluation import evaluate, to_csv, to_xlsx
    from central.grid import load_grid

    cli = _cli()
    cfg = cli._load(args)
    since, until = cli._period(args)
    with cli._session(cfg) as s:
        try:
            rows = evaluate(
                s,
                since,
                until,
                args.by,
                config=cfg,
                clock=SystemClock(),
                grid=load_grid(s, cfg),
                catalogue=load_catalogue(s, cfg),
                grid_unit=args.grid_unit,
            )
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if args.csv:
        Path(args.csv).write_text(to_csv(rows, args.by), encoding="utf-8")
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.xlsx:
        Path(args.xlsx).write_bytes(to_xlsx(rows, args.by, since=since, until=until, tz=cfg.tz))
        print(f"wrote {args.xlsx}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {"since": since.isoformat(), "until": until.isoformat(), "by": args.by, "rows": rows},
                ensure_ascii=False,
            )
        )
        return 0
    if args.csv or args.xlsx:
        return 0
    f = cli._fmt
    print(f"Evaluation by {args.by}, {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC")
    print(
        cli.render_table(
            [
                "#",
                args.by,
                "cases",
                "closed",
                "closure",
                "on-time",
                "overtime x",
                "rework",
                "escalations",
                "median h",
                "on-time Δ",
            ],
            [
                [
                    str(r["rank"]),
                    str(r["key"]),
                    f(r["cases"]),
                    f(r["closed"]),
                    f(r["closure_rate"], True),
                    f(r["on_time_rate"], True),
                    f(r["avg_overtime_multiple"]),
                    f(r["rework_rate"], True),
                    f(r["escalations"]),
                    f(r["median_handling_h"]),
                    "-" if r["on_time_rate_change"] is None else f"{100 * r['on_time_rate_change']:+.1f} pt",
                ]
                for r in rows
            ],
        )
    )
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from central.clock import SystemClock
    from central.findings import findings, to_html
    from central.grid import load_grid

    cli = _cli()
    cfg = cli._load(args)
    since, until = cli._period(args)
    with cli._session(cfg) as s:
        report = findings(s, since, until, config=cfg, grid=load_grid(s, cfg), clock=SystemClock(), level=args.level)
    if args.html:
        Path(args.html).write_text(to_html(report, lang=args.lang), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    key = "text_zh" if args.lang.startswith("zh") else "text"
    print(f"Findings {since:%Y-%m-%d} → {until:%Y-%m-%d}: {report['cases']} cases, tests {report['tests']}")
    for f in report["findings"] or [{key: "Nothing stands out."}]:
        print(f"- {f[key]}")
    return 0


def register(sub: Any, add: Any) -> None:
    """Add the command-center subcommands; ``add(name, help)`` is build_parser's helper (adds --config)."""
    grid = sub.add_parser("grid", help="grid hierarchy: import, show, schema")
    gsub = grid.add_subparsers(dest="grid_command", required=True)

    def add_to(parent: Any, name: str, help_: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_)
        sp.add_argument("--config", "-c", type=Path, help="central.yaml")
        sp.add_argument("--database-url", help="override database_url")
        return sp

    sp = add_to(gsub, "import", "import units from CSV or GeoJSON files (validated first; upserted)")
    sp.add_argument("files", nargs="+", type=Path)
    sp.set_defaults(func=cmd_grid_import)
    sp = add_to(gsub, "show", "print the merged hierarchy")
    sp.add_argument("--level", choices=["district", "street", "community", "cell"])
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_grid_show)
    add_to(gsub, "schema", "JSON Schema of the grid, escalation and catalogue sections").set_defaults(
        func=cmd_grid_schema
    )

    cat = sub.add_parser("catalogue", help="category standard: import, show")
    csub = cat.add_subparsers(dest="catalogue_command", required=True)
    sp = add_to(csub, "import", "import catalogue entries from a CSV file")
    sp.add_argument("file", type=Path)
    sp.set_defaults(func=cmd_catalogue_import)
    sp = add_to(csub, "show", "print the catalogue")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_catalogue_show)

    add("escalate", "run one escalation sweep (cases whose level ran out of time go up one level)").set_defaults(
        func=cmd_escalate
    )

    for name, func, help_ in (
        ("evaluate", cmd_evaluate, "ranked evaluation tables (CSV / XLSX export)"),
        ("findings", cmd_findings, "automatic findings in plain sentences"),
    ):
        sp = add(name, help_)
        sp.add_argument("--since", default="30d" if name == "evaluate" else "365d", help="7d, 12h, 2w or an ISO date")
        sp.add_argument("--until", help="default now")
        sp.add_argument("--json", action="store_true")
        if name == "evaluate":
            sp.add_argument(
                "--by",
                default="squad",
                choices=["person", "squad", "cell", "community", "street", "district", "level", "category", "class"],
            )
            sp.add_argument("--grid-unit", help="only cases in this grid unit (any level)")
            sp.add_argument("--csv", type=Path, help="write the table as CSV")
            sp.add_argument("--xlsx", type=Path, help="write the table as XLSX")
        else:
            sp.add_argument("--level", default="community", choices=["cell", "community", "street", "district"])
            sp.add_argument("--html", type=Path, help="write the report as an HTML page")
            sp.add_argument("--lang", default="en", choices=["en", "zh-CN"])
        sp.set_defaults(func=func)
