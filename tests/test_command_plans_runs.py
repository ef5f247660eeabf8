"""Command center, the remaining parts: crowd response plans (config, the plan for a case's level, one notification
per case and level on the event bus), the stored weekly findings runs (the schedule in the site's time zone, one
run per slot, on demand, HTML export), the map's tile server setting (CSP) and a case's grid path."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from central.command_config import CrowdPlan, CrowdResponseConfig, FindingsScheduleConfig, MapConfig
from central.command_models import FindingsRun
from central.config import CentralConfigError, load_central_config, parse_central_config
from central.db import Case, CaseAudit, upgrade
from central.findings_runs import findings_tick, last_slot, next_slot
from tests.central_support import incident_payload
from tests.polling import wait_until
from tests.test_api_support import make_api
from tests.test_command_grid import GRID
from tools.gen_cases import Plan, generate

ROOT = Path(__file__).resolve().parents[1]
INCIDENT_1, INCIDENT_2, INCIDENT_9 = (str(uuid.UUID(int=n, version=4)) for n in (1, 2, 9))
SQUADS = [{"code": "patrol-2", "name": "Patrol 2"}, {"code": "traffic-1", "name": "Traffic 1"}]
PLANS = {
    "plans": [
        {
            "zone": "plaza-floor",
            "level": "high",
            "plan": "Open the east gate; stewards to the stairs.",
            "plan_zh": "打开东门，引导员到楼梯口。",
            "notify": ["public_security", "metro-duty"],
            "dispatch": ["patrol-2"],
        },
        {
            "zone": "plaza-floor",
            "level": "critical",
            "plan": "Close the square's entrances; call the district.",
            "notify": ["district-command"],
            "dispatch": ["patrol-2", "traffic-1"],
        },
        {"zone": "*", "level": "elevated", "plan": "Watch the camera; warn the grid worker."},
    ]
}


def documented(model: Any) -> list[str]:
    schema = model.model_json_schema()
    out = [k for k, p in schema.get("properties", {}).items() if not p.get("description")]
    for name, d in schema.get("$defs", {}).items():
        out += [f"{name}.{k}" for k, p in d.get("properties", {}).items() if not p.get("description")]
    return out


# --------------------------------------------------------------------------- configuration


def test_plan_lookup_prefers_the_camera_zone_then_the_zone_then_any_and_falls_back_to_a_lower_level() -> None:
    cfg = CrowdResponseConfig.model_validate(
        {"plans": [*PLANS["plans"], {"zone": "cam-9/plaza-floor", "level": "high", "plan": "camera 9's own plan"}]}
    )
    assert cfg.plan_for("cam-1", "plaza-floor", "high").plan.startswith("Open the east gate")
    assert cfg.plan_for("cam-9", "plaza-floor", "high").plan == "camera 9's own plan"
    assert cfg.plan_for("cam-9", "plaza-floor", "critical").plan == "camera 9's own plan"  # its highest ≤ critical
    assert cfg.plan_for("cam-1", "plaza-floor", "critical").plan.startswith("Close the square")
    assert cfg.plan_for("cam-1", "mall-atrium", "high").plan.startswith("Watch the camera")  # "*", elevated ≤ high
    assert cfg.plan_for("cam-1", "plaza-floor", "normal") is None
    assert cfg.plan_for("cam-1", "plaza-floor", None) is None
    assert documented(CrowdResponseConfig) == [] and documented(CrowdPlan) == []
    assert documented(MapConfig) == [] and documented(FindingsScheduleConfig) == []


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (
            {
                "squads": SQUADS,
                "crowd_response": {"plans": [{"zone": "p", "level": "high", "plan": "x", "dispatch": ["nobody"]}]},
            },
            "crowd_response.plans[0].dispatch 'nobody' is not one of the configured squads",
        ),
        (
            {
                "crowd_response": {
                    "plans": [{"zone": "p", "level": "high", "plan": "x"}, {"zone": "p", "level": "high", "plan": "y"}]
                }
            },
            "more than one plan for the same zone and level: ['p@high']",
        ),
        (
            {"crowd_response": {"plans": [{"zone": "p", "level": "panic", "plan": "x"}]}},
            "crowd_response.plans[0].level: Input should be",
        ),
        ({"map": {"tile_url": "javascript:alert(1)//{z}"}}, "map.tile_url"),
        ({"map": {"tile_url": "https://t.internal/{z}/{x}/{y}.png", "bounds": [121, 31, 120, 32]}}, "west < east"),
        ({"map": {"min_zoom": 12, "max_zoom": 10}}, "min_zoom must not exceed max_zoom"),
        ({"findings": {"weekday": "monday"}}, "findings.weekday"),
        ({"findings": {"time": "25:00"}}, "findings.time"),
    ],
)
def test_bad_settings_name_the_key_and_the_cause(doc: dict, needle: str) -> None:
    with pytest.raises(CentralConfigError) as e:
        parse_central_config(doc)
    assert needle in str(e.value)


def test_example_configs_carry_the_new_sections() -> None:
    for path in (ROOT / "central.yaml", ROOT / "deploy" / "config" / "central.yaml"):
        cfg = (
            load_central_config(path)
            if path.parent == ROOT
            else parse_central_config(
                __import__("yaml").safe_load(path.read_text()), str(path), env={"GRIDWATCH_DATABASE_URL": "sqlite://"}
            )
        )
        assert cfg.crowd_response.plan_for("cam-plaza-01", "plaza-floor", "high") is not None, path
        assert cfg.map.tile_url is None and cfg.findings.enabled, path


# --------------------------------------------------------------------------- crowd response plans


def crowd_event(
    incident_id: str, level: str, seq: int, event: str, at: datetime, camera_id: str = "cam-plaza-01"
) -> dict[str, Any]:
    p = incident_payload(
        type="crowd_density",
        camera_id=camera_id,
        zone="plaza-floor",
        incident_id=incident_id,
        seq=seq,
        event=event,
        at=at,
    )
    p["crowd"] = {
        "count": {"elevated": 30, "high": 60, "critical": 120}[level],
        "density": 0.5,
        "level": level,
        "previous_level": None,
        "count_low": 50,
        "count_high": 70,
        "forecast": {
            "predicted_density": 0.9,
            "horizon_s": 120.0,
            "predicted_level": "critical",
            "early_warning": False,
        },
    }
    return p


def test_a_crowd_case_is_sent_the_plan_of_each_level_it_reaches_once(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path, {"squads": SQUADS, "crowd_response": PLANS})
    central = env.central
    sent = lambda: [d for k, d in central.events if k == "case.updated" and d.get("action") == "response_plan"]  # noqa: E731
    with env.client:  # the lifespan starts the responder
        r = central.send(crowd_event(INCIDENT_1, "high", 1, "opened", central.clock.now()))
        assert r.case_id is not None
        first = wait_until(sent)
        assert first[0]["id"] == r.case_id
        plan = first[0]["response_plan"]
        assert (plan["level"], plan["plan_level"], plan["dispatch"]) == ("high", "high", ["patrol-2"])
        assert plan["notify"] == ["public_security", "metro-duty"] and plan["plan"].startswith("Open the east gate")
        detail = env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()
        assert detail["crowd"]["level"] == "high" and detail["crowd"]["forecast"]["predicted_level"] == "critical"
        assert detail["crowd_plan"]["plan_zh"] == "打开东门，引导员到楼梯口。"
        audit = [a for a in detail["audit"] if a["action"] == "response_plan"]
        assert len(audit) == 1 and audit[0]["note"].startswith("level high: plan for high sent to public_security")

        central.clock.set(central.clock.now() + timedelta(minutes=2))
        central.send(crowd_event(INCIDENT_1, "critical", 2, "updated", central.clock.now()))
        wait_until(lambda: len(sent()) == 2)
        assert sent()[1]["response_plan"]["dispatch"] == ["patrol-2", "traffic-1"]
        detail = env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()
        assert detail["crowd_plan"]["level"] == "critical" and detail["crowd_plan"]["notify"] == ["district-command"]

        # back to high (already sent): no second notification for the same level
        central.clock.set(central.clock.now() + timedelta(minutes=2))
        central.send(crowd_event(INCIDENT_1, "high", 3, "updated", central.clock.now()))
        probe = central.send(crowd_event(INCIDENT_2, "elevated", 1, "opened", central.clock.now(), "cam-probe"))
        assert probe.case_id != r.case_id
        wait_until(lambda: any(d["id"] == probe.case_id for d in sent()))  # the queue got past the repeat
        assert [d["response_plan"]["level"] for d in sent() if d["id"] == r.case_id] == ["high", "critical"]
    with central.session_factory() as s:
        n = s.scalar(
            select(func.count(CaseAudit.id)).where(CaseAudit.case_id == r.case_id, CaseAudit.action == "response_plan")
        )
    assert n == 2


def test_no_plans_no_responder_and_no_plan_in_the_case(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path)
    with env.client:
        assert env.app.state.crowd_response is None
        r = env.central.send(crowd_event(INCIDENT_9, "critical", 1, "opened", env.central.clock.now()))
        detail = env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()
    assert detail["crowd"]["level"] == "critical" and detail["crowd_plan"] is None


# --------------------------------------------------------------------------- grid path


def test_case_detail_carries_its_grid_path(sqlite_url: str, tmp_path: Path) -> None:
    env = make_api(sqlite_url, tmp_path, {"grid": GRID})
    r = env.central.send(incident_payload(grid_cell="440305-001-08"))
    detail = env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()
    assert [(p["level"], p["code"], p["name"]) for p in detail["grid_path"]] == [
        ("district", "D1", "District"),
        ("street", "S1", "Street 1"),
        ("community", "C1", "Community 1"),
        ("cell", "440305-001-08", "Cell B"),
    ]
    r = env.central.send(incident_payload(grid_cell="999999-unknown", camera_id="cam-2"))
    assert env.client.get(f"/api/v1/cases/{r.case_id}", headers=env.auth("viewer")).json()["grid_path"] == []


# --------------------------------------------------------------------------- map tiles


def test_tile_server_is_allowed_by_the_csp_only_when_configured(sqlite_url: str, tmp_path: Path) -> None:
    plain = make_api(sqlite_url, tmp_path)
    r = plain.client.get("/api/v1/map/config", headers=plain.auth("viewer"))
    assert r.json()["tile_url"] is None
    assert "img-src 'self' data: blob:;" in r.headers["content-security-policy"]
    tiles = {
        "tile_url": "https://tiles.internal:8443/osm/{z}/{x}/{y}.png",
        "attribution": "© city GIS",
        "bounds": [121.4, 31.2, 121.5, 31.3],
        "max_zoom": 18,
    }
    env = make_api(sqlite_url, tmp_path, {"map": tiles})
    r = env.client.get("/api/v1/map/config", headers=env.auth("viewer"))
    assert r.json() == {**tiles, "min_zoom": 0}
    assert "img-src 'self' data: blob: https://tiles.internal:8443;" in r.headers["content-security-policy"]
    assert "connect-src 'self';" in r.headers["content-security-policy"]  # images only, no scripts or fetches
    assert env.client.get("/api/v1/map/config").status_code == 401


# --------------------------------------------------------------------------- findings runs


def test_weekly_slots_are_local_wall_clock_times() -> None:
    sch = FindingsScheduleConfig(weekday="mon", time="07:30")
    from zoneinfo import ZoneInfo

    sh = ZoneInfo("Asia/Shanghai")
    # Monday 2026-03-02 07:30 in Shanghai is Sunday 23:30 UTC
    assert last_slot(sch, datetime(2026, 3, 1, 23, 30, tzinfo=UTC), sh) == datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert last_slot(sch, datetime(2026, 3, 1, 23, 29, tzinfo=UTC), sh) == datetime(2026, 2, 22, 23, 30, tzinfo=UTC)
    assert next_slot(sch, datetime(2026, 3, 1, 23, 30, tzinfo=UTC), sh) == datetime(2026, 3, 8, 23, 30, tzinfo=UTC)
    # across a daylight-saving change the run stays at 07:30 local (Berlin: UTC+1 → UTC+2 on 2026-03-29)
    be = ZoneInfo("Europe/Berlin")
    assert last_slot(sch, datetime(2026, 3, 30, 12, tzinfo=UTC), be) == datetime(2026, 3, 30, 5, 30, tzinfo=UTC)
    assert last_slot(sch, datetime(2026, 3, 23, 12, tzinfo=UTC), be) == datetime(2026, 3, 23, 6, 30, tzinfo=UTC)


def seeded(sqlite_url: str, tmp_path: Path, config: dict | None = None) -> tuple[Any, Plan]:
    env = make_api(sqlite_url, tmp_path, config)
    plan = Plan(cases=3000, hotspot_extra=0.05, audit=False)
    with env.central.session_factory() as s:
        generate(s, env.central.config, plan)
    return env, plan


def test_the_schedule_stores_one_run_per_slot_and_catches_up_within_the_window(sqlite_url: str, tmp_path: Path) -> None:
    env, plan = seeded(
        sqlite_url, tmp_path, {"findings": {"weekday": "wed", "time": "06:00", "period_days": 28, "catch_up_h": 12}}
    )
    c = env.central
    # plan.end is 2026-12-31 00:00 Shanghai, a Thursday; the Wednesday 06:00 slot before it is 2026-12-30 06:00
    slot = datetime(2026, 12, 29, 22, 0, tzinfo=UTC)
    c.clock.set(slot - timedelta(minutes=1))
    assert findings_tick(c.session_factory, c.config, c.clock) is None  # last slot is a week old: past catch-up
    c.clock.set(slot + timedelta(hours=2))
    run = findings_tick(c.session_factory, c.config, c.clock)
    assert run is not None and run.scheduled_for == slot and run.trigger == "schedule"
    assert (run.since, run.until) == (slot - timedelta(days=28), slot)
    with c.session_factory() as s:
        in_period = s.scalar(
            select(func.count(Case.id)).where(Case.reported_at >= run.since, Case.reported_at < run.until)
        )
    assert run.cases == run.report_json["cases"] == in_period > 100
    assert run.report_json["since"] == run.since.isoformat() and run.finding_count == len(run.report_json["findings"])
    assert findings_tick(c.session_factory, c.config, c.clock) is None  # stored once
    with c.session_factory() as s:
        assert s.scalar(select(func.count(FindingsRun.id))) == 1
    h = env.auth("viewer")
    listed = env.client.get("/api/v1/findings/runs", headers=h).json()
    assert [r["id"] for r in listed["items"]] == [run.id] and listed["schedule"]["weekday"] == "wed"
    assert listed["schedule"]["next_run"] == "2027-01-06T06:00:00+08:00"


def test_on_demand_runs_are_stored_and_export_as_html(sqlite_url: str, tmp_path: Path) -> None:
    env, plan = seeded(sqlite_url, tmp_path)
    env.central.clock.set(plan.end + timedelta(days=1))
    q = {"since": plan.start.isoformat(), "until": plan.end.isoformat()}
    assert env.client.post("/api/v1/findings/runs", params=q, headers=env.auth("viewer")).status_code == 403
    r = env.client.post("/api/v1/findings/runs", params=q, headers=env.auth("dispatcher"))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["trigger"] == "manual" and run["actor"].startswith("token:") or run["actor"]
    assert run["report"]["findings"] and run["finding_count"] == len(run["report"]["findings"])
    got = env.client.get(f"/api/v1/findings/runs/{run['id']}", headers=env.auth("viewer")).json()
    assert got["report"] == run["report"]
    html = env.client.get(
        f"/api/v1/findings/runs/{run['id']}", params={"format": "html", "lang": "zh-CN"}, headers=env.auth("viewer")
    )
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert f'attachment; filename="gridwatch-findings-{run["id"]}-' in html.headers["content-disposition"]
    assert "时空热点" in html.text and "<script" not in html.text and "http" not in html.text.split("<body>")[1]
    assert env.client.get("/api/v1/findings/runs/999", headers=env.auth("viewer")).status_code == 404
    bad = env.client.post("/api/v1/findings/runs", params={"since": "yesterday"}, headers=env.auth("dispatcher"))
    assert bad.status_code == 422 and "query.since" in bad.json()["detail"]
    bad = env.client.post("/api/v1/findings/runs", params={"level": "planet"}, headers=env.auth("dispatcher"))
    assert bad.status_code == 422


# --------------------------------------------------------------------------- analytics arithmetic


def test_vectorized_working_hours_equal_the_calendar_when_the_first_case_starts_mid_period() -> None:
    """evaluation.working_seconds (used by kpis and evaluation for 40,000 cases at once) against Sla.elapsed; the
    earliest start falls inside a working period (it used to count that period's earlier part)."""
    import numpy as np

    from central.config import CentralConfig
    from central.evaluation import working_seconds
    from central.sla import Sla

    sla = Sla(CentralConfig())
    rng = np.random.default_rng(3)
    start0 = datetime(2026, 11, 23, 2, tzinfo=UTC)  # Monday 10:00 Shanghai, inside 09:00-12:00
    starts = [start0] + [start0 + timedelta(hours=float(h)) for h in rng.uniform(0, 24 * 20, 200)]
    ends = [s + timedelta(hours=float(h)) for s, h in zip(starts, rng.uniform(0, 24 * 6, len(starts)), strict=True)]
    xs, ys = working_seconds(sla, min(s.timestamp() for s in starts), max(e.timestamp() for e in ends))
    for s, e in zip(starts, ends, strict=True):
        fast = (np.interp(e.timestamp(), xs, ys) - np.interp(s.timestamp(), xs, ys)) / 3600
        assert fast == pytest.approx(sla.elapsed(s, e, "working"), abs=1e-6), (s, e)


def test_a_dedicated_ingest_process_sends_the_plans(tmp_path: Path) -> None:
    """In a deployment the crowd incidents arrive in `gridwatch-central ingest` processes (their events are live, seen
    only there), so that process runs the responder: a real ingest subprocess and Mosquitto."""
    import json
    import subprocess

    import paho.mqtt.client as mqtt
    import yaml

    from central.db import make_engine, make_session_factory
    from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto

    (tmp_path / "m").mkdir()
    broker = MosquittoBroker(tmp_path / "m", binary=ensure_mosquitto())
    broker.start()
    db = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(db)
    cfg = {
        "database_url": db,
        "evidence_dir": str(tmp_path / "ev"),
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "ingest-plans"},
        "crowd_response": {
            "plans": [{"zone": "plaza-floor", "level": "high", "plan": "Open the gate", "notify": ["duty"]}]
        },
    }
    (tmp_path / "central.yaml").write_text(yaml.safe_dump(cfg))
    exe = Path(sys.executable).parent / "gridwatch-central"
    proc = subprocess.Popen(
        [str(exe), "ingest", "--config", str(tmp_path / "central.yaml"), "--no-migrate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # "ingesting …" once subscribed
            if "ingesting" in line:
                break
        client.connect(broker.host, broker.port)
        client.loop_start()
        p = crowd_event(INCIDENT_1, "high", 1, "opened", datetime.now(UTC))
        client.publish("gridwatch/v1/edge-test-01/incidents", json.dumps(p), qos=1).wait_for_publish(10)
        sf = make_session_factory(make_engine(db))

        def notes() -> list[str]:
            with sf() as s:
                return list(s.scalars(select(CaseAudit.note).where(CaseAudit.action == "response_plan")))

        assert wait_until(notes, timeout=30) == ["level high: plan for high sent to duty. Open the gate"]
    finally:
        client.loop_stop()
        proc.terminate()
        proc.wait(10)
        broker.kill()
