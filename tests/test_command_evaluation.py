"""Evaluation tables against hand-computed figures on a small set, their agreement with the KPIs, CSV / XLSX export,
the category catalogue, and the fast working-hours arithmetic the analytics rely on."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from central.analytics import kpis
from central.catalogue import CatalogueError, import_entries, load_catalogue, parse_csv
from central.clock import FixedClock
from central.command_models import CaseEscalation
from central.config import CategoryConfig, StageLimits, default_categories, parse_central_config
from central.db import Case, CaseAudit, make_engine, make_session_factory, upgrade
from central.evaluation import COLUMNS, evaluate, to_csv, to_xlsx
from central.grid import load_grid
from central.sla import WorkingCalendar
from tests.central_support import T0
from tests.test_api_support import make_api
from tests.test_command_grid import GRID

ROOT = Path(__file__).resolve().parents[1]
SINCE = datetime(2026, 11, 22, 16, tzinfo=UTC)
UNTIL = datetime(2026, 11, 29, 16, tzinfo=UTC)
NOW = datetime(2026, 12, 2, tzinfo=UTC)
TEST_CAL = CategoryConfig(code="test_cal", name="Test", name_zh="测试", unit="calendar",
                          limits=StageLimits(file=1, dispatch=1, handle=6, verify=2))  # L = 10 h
CATALOGUE = {"entries": [{"code": "A-99", "class": "A", "name": "Test matter", "incident_types": ["test_cal"]}]}


def Z(day: int, hour: int = 0) -> datetime:  # noqa: N802
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def config() -> object:
    return parse_central_config({"categories": [c.model_dump() for c in [*default_categories(), TEST_CAL]],
                                 "grid": GRID, "catalogue": CATALOGUE,
                                 "squads": [{"code": "S-A", "name": "Squad A", "name_zh": "甲中队"},
                                            {"code": "S-B", "name": "Squad B"}]})


def seed(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    n = iter(range(1, 1000))
    h = timedelta(hours=1)

    def case(state: str, reported: datetime, closed: datetime | None, cell: str, squad: str, assignee: str | None,
             rework: int = 0) -> Case:
        return Case(category="test_cal", state=state, dedup_key=f"k{next(n)}", reported_at=reported,
                    due_at=reported + 10 * h, closed_at=closed, grid_cell=cell, squad=squad, assignee=assignee,
                    rework_count=rework, recurrence_count=0, incident_count=1, updated_at=reported,
                    handled_at=(closed - h / 2) if closed else None)

    with sf() as s:
        cs = {
            "A": case("closed", Z(24), Z(24, 8), "440305-001-07", "S-A", "wang"),  # on time, 8 h
            "B": case("closed", Z(25), Z(25, 15), "440305-001-08", "S-A", "wang", rework=1),  # late 0.5, 15 h
            "C": case("in_progress", Z(26), None, "440305-002-01", "S-B", "li"),  # open: (88 - 10) / 10 = 7.8
            "D": case("closed", Z(27), Z(27, 4), "440305-009-01", "S-B", "li"),  # on time, 4 h, escalated twice
            "E": case("rejected", Z(25), None, "440305-001-07", "S-A", "wang"),  # not a case
            "F": case("closed", Z(20), Z(21), "440305-001-07", "S-A", "wang"),  # previous period, late
            "G": case("closed", Z(28), Z(28, 6), "440305-001-07", "S-A", "wang"),  # on time, 6 h, done by zhao
        }
        s.add_all(cs.values())
        s.flush()
        for key, actor in (("A", "wang#3"), ("B", "wang#3"), ("D", "li#4"), ("G", "zhao#5"), ("F", "wang#3")):
            s.add(CaseAudit(case_id=cs[key].id, at=cs[key].handled_at, actor=actor, action="feedback"))
        for key, frm, to, rank, at in (("C", "cell", "community", 1, Z(26, 8)), ("D", "cell", "community", 1, Z(27, 1)),
                                       ("D", "community", "street", 2, Z(27, 2))):
            s.add(CaseEscalation(case_id=cs[key].id, at=at, from_level=frm, to_level=to, to_rank=rank,
                                 reason="deadline", actor="system"))
        s.commit()
    return engine, sf


def rows_by_key(rows: list[dict]) -> dict:
    return {r["key"]: r for r in rows}


def test_evaluation_matches_hand_computed_figures(db_url: str) -> None:
    cfg = config()
    engine, sf = seed(db_url)
    clock = FixedClock(NOW)
    with sf() as s:
        grid = load_grid(s, cfg)
        cat = load_catalogue(s, cfg)

        def ev(by: str) -> list[dict]:
            return evaluate(s, SINCE, UNTIL, by, config=cfg, clock=clock, grid=grid, catalogue=cat)

        squad = ev("squad")
        assert [r["key"] for r in squad] == ["S-A", "S-B"] and [r["rank"] for r in squad] == [1, 2]
        a, b = squad
        assert (a["name"], a["name_zh"]) == ("Squad A", "甲中队")
        assert {k: a[k] for k in ("cases", "handled", "closed", "closure_rate", "on_time", "on_time_rate",
                                  "failed_verifications", "rework_rate", "escalations", "escalated_cases")} == {
            "cases": 3, "handled": 3, "closed": 3, "closure_rate": 1.0, "on_time": 2, "on_time_rate": 0.6667,
            "failed_verifications": 1, "rework_rate": 0.3333, "escalations": 0, "escalated_cases": 0}
        assert a["avg_overtime_multiple"] == pytest.approx((0 + 0.5 + 0) / 3, abs=1e-4)
        assert a["median_handling_h"] == 8.0 and a["avg_handling_h"] == pytest.approx((8 + 15 + 6) / 3, abs=1e-4)
        # previous period: only F (closed late) → on-time 0 → change +0.6667
        assert (a["prev_cases"], a["prev_on_time_rate"], a["on_time_rate_change"]) == (1, 0.0, 0.6667)
        assert {k: b[k] for k in ("cases", "handled", "closed", "closure_rate", "on_time_rate", "escalations",
                                  "escalated_cases", "median_handling_h", "prev_cases")} == {
            "cases": 2, "handled": 1, "closed": 1, "closure_rate": 0.5, "on_time_rate": 0.5, "escalations": 3,
            "escalated_cases": 2, "median_handling_h": 4.0, "prev_cases": None}
        assert b["avg_overtime_multiple"] == pytest.approx((7.8 + 0) / 2, abs=1e-4)

        person = ev("person")  # the feedback's token name; the assignee for a case not handled yet
        assert [(r["key"], r["cases"], r["closed"], r["on_time_rate"]) for r in person] == [
            ("zhao", 1, 1, 1.0), ("wang", 2, 2, 0.5), ("li", 2, 1, 0.5)]
        assert [(r["key"], r["cases"]) for r in ev("level")] == [("street", 1), ("cell", 3), ("community", 1)]
        assert [(r["key"], r["cases"], r["on_time_rate"]) for r in ev("street")] == [("S2", 1, 1.0),
                                                                                      ("S1", 4, 0.5)]
        assert {r["key"]: r["cases"] for r in ev("community")} == {"C1": 3, "C2": 1, "C3": 1}
        assert {r["key"]: r["cases"] for r in ev("class")} == {"A": 5}
        only_s1 = evaluate(s, SINCE, UNTIL, "squad", config=cfg, clock=clock, grid=grid, grid_unit="S1")
        assert {r["key"]: r["cases"] for r in only_s1} == {"S-A": 3, "S-B": 1}
        with pytest.raises(ValueError, match="unknown grid unit"):
            evaluate(s, SINCE, UNTIL, "squad", config=cfg, clock=clock, grid=grid, grid_unit="nope")

        # the same population and definitions as the KPIs
        k = {r["group"]: r for r in kpis(s, SINCE, UNTIL, "squad", clock, cfg)}
        for r in squad:
            kr = k[r["key"]]
            assert (kr["due"], kr["closed"], kr["on_time_rate"], kr["closure_rate"], kr["rework_rate"]) == (
                r["cases"], r["closed"], r["on_time_rate"], r["closure_rate"], r["rework_rate"])
            assert kr["avg_overtime_multiple"] == r["avg_overtime_multiple"]

        # exports
        text = to_csv(squad, "squad")
        assert text.startswith("\ufeffrank,squad,name,name_zh,cases")
        lines = text.strip().splitlines()
        assert len(lines) == 3 and lines[1].startswith("1,S-A,Squad A,甲中队,3,3,3,1.0,2,0.6667")
        wb = load_workbook(io.BytesIO(to_xlsx(squad, "squad", since=SINCE, until=UNTIL, tz=cfg.tz)))
        ws = wb.active
        assert "2026-11-23 00:00 → 2026-11-30 00:00" in ws["A1"].value
        assert [c.value for c in ws[2]] == ["squad" if c == "key" else c for c in COLUMNS]
        assert [c.value for c in ws[3]][:6] == [1, "S-A", "Squad A", "甲中队", 3, 3]
        assert ws.cell(row=3, column=COLUMNS.index("on_time_rate") + 1).number_format == "0.0%"
    engine.dispose()


def test_evaluation_api_json_csv_xlsx(db_url: str, tmp_path: Path) -> None:
    env = make_api(db_url, tmp_path, {"categories": [c.model_dump() for c in [*default_categories(), TEST_CAL]],
                                      "grid": GRID, "catalogue": CATALOGUE})
    seed(db_url)[0].dispose()
    env.central.clock.set(NOW)
    h = env.auth("viewer")
    q = {"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "by": "squad"}
    r = env.client.get("/api/v1/evaluation", params=q, headers=h)
    assert r.status_code == 200, r.text
    assert [(x["key"], x["cases"]) for x in r.json()["rows"]] == [("S-A", 3), ("S-B", 2)]
    r = env.client.get("/api/v1/evaluation", params={**q, "format": "csv"}, headers=h)
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    assert r.text.splitlines()[1].startswith("1,S-A")
    r = env.client.get("/api/v1/evaluation", params={**q, "format": "xlsx", "by": "street"}, headers=h)
    assert r.status_code == 200 and load_workbook(io.BytesIO(r.content)).active["B3"].value == "S2"
    assert env.client.get("/api/v1/evaluation", params={**q, "by": "planet"}, headers=h).status_code == 422
    r = env.client.get("/api/v1/evaluation", params={**q, "grid_unit": "zz"}, headers=h)
    assert r.status_code == 422 and "grid_unit" in r.json()["detail"]
    assert env.client.get("/api/v1/evaluation", params=q).status_code == 401
    cat = env.client.get("/api/v1/catalogue", headers=h).json()
    assert cat["incident_types"] == {"test_cal": "A-99"} and cat["items"][0]["class"] == "A"
    assert env.client.get("/api/v1/catalogue/A-99", headers=h).json()["name"] == "Test matter"
    assert env.client.get("/api/v1/catalogue/none", headers=h).status_code == 404


CSV = """class,code,name_zh,name_en,standard,department,unit,file_h,dispatch_h,handle_h,verify_h,incident_types
A,A-01-01,占道经营,Street vending,"劝离, 暂扣",urban_management,working,1,1,8,4,street_vending
B,B-03-02,乱堆物料,Piled materials,Remove within a day,urban_management,calendar,,2,24,,
"""


def test_catalogue_csv_import(db_url: str, tmp_path: Path) -> None:
    cfg = parse_central_config({"catalogue": {"entries": [
        {"code": "A-01-03", "class": "A", "name": "Parking", "incident_types": ["illegal_parking"]}]}})
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        entries = parse_csv(CSV, "std.csv")
        assert [(e.code, e.class_code, e.limits.handle, e.unit) for e in entries] == [
            ("A-01-01", "A", 8.0, "working"), ("B-03-02", "B", 24.0, "calendar")]
        assert entries[0].standard == "劝离, 暂扣" and entries[1].limits.file is None
        assert import_entries(s, cfg, entries, T0, "std.csv") == {"created": 2, "updated": 0}
        s.commit()
        cat = load_catalogue(s, cfg)
        assert cat.by_type == {"illegal_parking": "A-01-03", "street_vending": "A-01-01"}
        assert cat.class_of("street_vending") == "A" and cat.for_type("crowd_density") is None
        assert [e["code"] for e in cat.as_list()] == ["A-01-01", "A-01-03", "B-03-02"]
        assert import_entries(s, cfg, parse_csv(CSV, "std.csv"), T0, "again") == {"created": 0, "updated": 2}
        bad = {
            "class,code,name\nA,A 1,x\n": r"line 2: code",
            "class,code,name,handle_h\nA,A1,x,-3\n": r"line 2: .*time limit",
            "class,code,name\nA,A1,x\nA,A1,y\n": "line 3: code 'A1' appears more than once",
            "code,name\nA1,x\n": "header needs",
        }
        for text, msg in bad.items():
            with pytest.raises(CatalogueError, match=msg):
                parse_csv(text, "bad.csv")
        clash = parse_csv("class,code,name,incident_types\nA,Z1,x,illegal_parking\n", "c.csv")
        with pytest.raises(CatalogueError, match="already mapped to 'A-01-03'"):
            import_entries(s, cfg, clash, T0, "c.csv")
        with pytest.raises(CatalogueError, match="central.yaml"):
            import_entries(s, cfg, parse_csv("class,code,name\nA,A-01-03,x\n", "c.csv"), T0, "c.csv")
        with pytest.raises(CatalogueError, match="not configured categories"):
            import_entries(s, cfg, parse_csv("class,code,name,incident_types\nA,Z2,x,ufo\n", "c.csv"), T0, "c")
    engine.dispose()


def test_catalogue_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(db)
    (tmp_path / "std.csv").write_text(CSV, encoding="utf-8")
    run = [sys.executable, "-m", "central.cli"]
    out = subprocess.run([*run, "catalogue", "import", str(tmp_path / "std.csv"), "--database-url", db],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "2 entries created" in out.stdout, out.stderr
    out = subprocess.run([*run, "catalogue", "show", "--database-url", db], capture_output=True, text=True, cwd=ROOT)
    assert "B-03-02" in out.stdout and "1/1/8/4" in out.stdout


def test_fast_working_hours_equal_the_day_by_day_sum() -> None:
    cfg = parse_central_config({"calendar": {"holidays": ["2026-10-01", "2026-10-02", "2026-10-05"],
                                             "extra_workdays": ["2026-10-10"]}})
    rng = random.Random(5)
    base = datetime(2026, 9, 1, tzinfo=UTC)
    for _ in range(3):  # fresh calendars: the prefix sums grow up and down in different orders
        cal = WorkingCalendar(cfg.calendar, cfg.tz)
        for _ in range(3000):
            a = base + timedelta(seconds=rng.randrange(0, 86400 * 150), microseconds=rng.randrange(10**6))
            b = a + timedelta(seconds=rng.choice([rng.randrange(0, 9000), rng.randrange(0, 86400 * 400)]))
            if rng.random() < 0.1:
                a, b = b, a
            assert cal.working_hours_between(a, b) == cal._working_hours_between_slow(a, b), (a, b)
