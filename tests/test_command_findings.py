"""Automatic findings on a seeded year of cases over 600 grid cells (tools/gen_cases.py): the report names exactly the
planted patterns — a night-time parking hotspot, a badly closing category, an escalation-heavy community, and in the
hotspot community a night-time parking shortfall (its legal bays full while the illegal parking is there) — and
nothing else (not the office car park full by day, not the residents' car park full at night without excess illegal
parking); on data without them it names only what was planted there (a sudden rise)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from central.clock import FixedClock
from central.config import CentralConfig
from central.db import make_engine, make_session_factory, upgrade
from central.findings import findings, to_html
from central.grid import load_grid
from tests.test_api_support import make_api
from tools.gen_cases import Plan, generate

CASES = 12_000  # a fifth of the sub-district's year keeps the test quick; the patterns are as strong per case


def run(db_url: str, plan: Plan) -> dict:
    cfg = CentralConfig(database_url=db_url)
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        g = generate(s, cfg, plan)
        assert len(g.cells) == 600 and g.cases >= plan.cases
        t = time.perf_counter()
        report = findings(s, plan.start, plan.end, config=cfg, grid=load_grid(s, cfg),
                          clock=FixedClock(plan.end + timedelta(days=2)))
        report["_seconds"] = time.perf_counter() - t
    engine.dispose()
    return report


def named(report: dict) -> set[tuple]:
    return {(f["kind"], f.get("area"), f.get("band"), f.get("category")) for f in report["findings"]}


def test_findings_name_exactly_the_planted_patterns(db_url: str) -> None:
    plan = Plan(cases=CASES)
    report = run(db_url, plan)
    assert named(report) == {
        ("hotspot", plan.hotspot_community, "night", "illegal_parking"),
        ("closes_worst", None, None, plan.bad_category),
        ("escalation_heavy", plan.escalation_community, None, None),
        ("parking_shortfall", plan.hotspot_community, "night", "illegal_parking"),
    }, [f["text"] for f in report["findings"]]
    assert report["tests"] == {"hotspot": 60 * 4 * 3, "closes_worst": 3, "escalation_heavy": 60, "sudden_rise": 180,
                               "parking_shortfall": 4 * 4}  # 4 communities with parking zones × 4 bands
    by_kind = {f["kind"]: f for f in report["findings"]}
    hot = by_kind["hotspot"]
    assert hot["ratio"] > 3 and hot["p_value"] * hot["tests"] < 0.05 and hot["hours"] == "19:00–07:00"
    assert "Community 3-4" in hot["text"] and "night (19:00–07:00)" in hot["text"] and "Poisson" in hot["text"]
    assert "Bonferroni over 720" in hot["text"] and "夜间" in hot["text_zh"]
    worst = by_kind["closes_worst"]
    assert 0.83 < worst["closure_rate"] < 0.89 and worst["others_closure_rate"] > 0.95
    assert f"{100 * worst['closure_rate']:.1f}%" in worst["text"] and "binomial" in worst["text"]
    esc = by_kind["escalation_heavy"]
    assert 0.25 < esc["share"] < 0.36 and esc["others_share"] < 0.05
    short = by_kind["parking_shortfall"]
    assert short["supply"] == 40 and short["occupancy_rate"] > 0.98 and short["demand"] > short["supply"]
    assert short["ratio"] > 3 and short["p_value"] * short["tests"] < 0.05 and short["shortfall"] > 0
    assert short["text"].startswith("Parking demand exceeds supply in Community 3-4 (330102-003-04) between 19:00 "
                                    "and 07:00") and "40 legal spaces" in short["text"]
    assert "停车需求超过供给" in short["text_zh"]
    assert report["_seconds"] < 5


def test_without_plants_only_a_sudden_rise_is_found(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'null.db'}"
    upgrade(db)
    plan = Plan(cases=CASES, seed=11, hotspot_extra=0, bad_closure=0.985, heavy_escalation=0.03, rise_extra=25)
    report = run(db, plan)
    assert named(report) == {("sudden_rise", plan.rise_community, None, "street_vending")}, \
        [f["text"] for f in report["findings"]]
    rise = report["findings"][0]
    assert rise["count"] >= 25 and rise["ratio"] > 5 and "last 7 days" in rise["text"]
    html = to_html(report)
    assert "Sudden rises" in html and "<script" not in html and "Community 2-2" in html


def test_findings_api(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(db)
    env = make_api(db, tmp_path)
    plan = Plan(cases=4000, hotspot_extra=0.04, audit=False)
    with env.central.session_factory() as s:
        generate(s, env.central.config, plan)
    env.central.clock.set(plan.end + timedelta(days=1))
    h = env.auth("viewer")
    q = {"since": plan.start.isoformat(), "until": plan.end.isoformat()}
    r = env.client.get("/api/v1/findings", params=q, headers=h)
    assert r.status_code == 200, r.text
    kinds = {f["kind"] for f in r.json()["findings"]}
    assert "hotspot" in kinds
    r = env.client.get("/api/v1/findings", params={**q, "format": "html", "lang": "zh-CN"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "时空热点" in r.text and "泊松检验" in r.text
    assert env.client.get("/api/v1/findings", params={**q, "level": "planet"}, headers=h).status_code == 422
