"""Parking occupancy at central: the edge's own figures are stored over time (bad ones are dead letters naming the
field, never a failed batch), and supply, demand and shortfall per area and hour match figures computed by hand on a
small set, through central.parking and GET /api/v1/parking/supply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from central.config import parse_central_config
from central.db import Case, DeadLetter, make_engine, make_session_factory, upgrade
from central.edge_messages import check, fast_validator, validator
from central.grid import load_grid
from central.occupancy import hour_of
from central.parking import supply_demand
from central.parking_models import ParkingOccupancy
from edge.rules.occupancy import OccupancyFigure
from tests.central_support import make_central, topic
from tests.test_api_support import make_api
from tests.test_command_grid import GRID

EDGE = "edge-test-01"
CELL_A, CELL_B, CELL_C = "440305-001-07", "440305-001-08", "440305-002-01"  # A, B in community C1; C in C2


def figure(**over: Any) -> dict[str, Any]:
    """What EdgePublisher.publish_occupancy sends: OccupancyFigure.to_dict() plus the edge id."""
    f = OccupancyFigure(
        edge_id=EDGE,
        camera_id="cam-1",
        zone="lot",
        grid_cell=CELL_A,
        timestamp=1_795_000_000.0,
        occupied=7,
        capacity=10,
        vehicles=8,
        occupied_mean=6.5,
        samples=60,
        period_s=60.0,
    )
    return {"edge_id": EDGE, **f.to_dict(), **over}


def test_the_edges_own_figure_passes_its_schema() -> None:
    assert fast_validator("occupancy") is not None  # compiled by fastjsonschema, not a silent fallback
    validator("occupancy")
    assert check("occupancy", EDGE, json.loads(json.dumps(figure()))) is None
    bays = {**figure(), "method": "bays", "bays_occupied": [0, 3, 4]}
    assert check("occupancy", EDGE, bays) is None


BAD = [
    ("missing capacity", {"capacity": None}, "schema", "capacity"),
    ("negative occupied", {"occupied": -1}, "schema", "occupied"),
    ("occupied text", {"occupied": "7"}, "schema", "occupied"),
    ("occupied above capacity", {"occupied": 11}, "schema", "occupied 11 is more than capacity 10"),
    ("mean above capacity", {"occupied_mean": 10.5}, "schema", "occupied_mean 10.5 is more than capacity 10"),
    ("bay out of range", {"bays_occupied": [0, 10]}, "schema", "bays_occupied must name distinct bays 0..9"),
    ("bay twice", {"bays_occupied": [2, 2]}, "schema", "distinct bays"),
    ("no time", {"at": None}, "schema", "at"),
    ("bad time", {"at": "yesterday"}, "schema", "at"),
    ("zone NUL", {"zone": "l\x00ot"}, "invalid_text", "zone"),
    ("zone bidi override", {"zone": "lot\u202e"}, "invalid_text", "U+202E"),
    ("grid cell too long", {"grid_cell": "x" * 65}, "schema", "grid_cell"),
    ("other edge", {"edge_id": "edge-other"}, "topic_mismatch", "edge-other"),
    ("method", {"method": "guess"}, "schema", "method"),
]


@pytest.mark.parametrize(("name", "change", "reason", "detail"), BAD, ids=[b[0] for b in BAD])
def test_bad_figures_are_dead_letters_naming_the_field(
    central: Any, name: str, change: dict, reason: str, detail: str
) -> None:
    p = {k: v for k, v in {**figure(), **change}.items() if v is not None or k not in change}
    res = central.ingest.handle(topic(EDGE, "occupancy"), json.dumps(p).encode())
    assert (res.outcome, res.reason) == ("dead_letter", reason), res
    assert detail in res.detail, res.detail
    with central.session_factory() as s:
        assert s.scalars(select(ParkingOccupancy)).all() == []
        (dl,) = s.scalars(select(DeadLetter)).all()
        assert dl.reason == reason and dl.topic.endswith("/occupancy") and dl.payload


def test_figures_are_kept_over_time_once_each_and_bad_ones_do_not_fail_the_batch(central: Any) -> None:
    t0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    good = [
        figure(at=(t0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), occupied=i, occupied_mean=i)
        for i in range(3)
    ]
    batch = [(topic(EDGE, "occupancy"), json.dumps(g).encode()) for g in good]
    batch.insert(1, (topic(EDGE, "occupancy"), json.dumps(figure(occupied=99)).encode()))
    batch.append((topic(EDGE, "occupancy"), json.dumps(good[2]).encode()))  # the same figure again
    results = central.ingest.handle_batch(batch)
    assert [(r.outcome, r.detail if r.outcome == "occupancy" else r.reason) for r in results] == [
        ("occupancy", None),
        ("dead_letter", "schema"),
        ("occupancy", None),
        ("occupancy", None),
        ("occupancy", "duplicate"),
    ]
    with central.session_factory() as s:
        rows = s.scalars(select(ParkingOccupancy).order_by(ParkingOccupancy.at)).all()
        assert [(r.at, r.occupied, r.capacity, r.grid_cell, r.edge_id) for r in rows] == [
            (t0 + timedelta(minutes=i), i, 10, CELL_A, EDGE) for i in range(3)
        ]
        assert rows[0].vehicles == 8 and rows[0].samples == 60 and rows[0].method == "count"
        assert len(s.scalars(select(DeadLetter)).all()) == 1


# --------------------------------------------------------------------------- supply and demand by hand

SH = timedelta(hours=8)  # Asia/Shanghai: local = UTC + 8
DAY1 = datetime(2026, 11, 23, tzinfo=UTC) - SH  # 2026-11-23 00:00 local
SINCE, UNTIL = DAY1, DAY1 + timedelta(days=2)


def local(day: int, hh: int, mm: int) -> datetime:
    return DAY1 + timedelta(days=day - 1, hours=hh, minutes=mm)


def seed_small(db_url: str) -> None:
    """Zone lot (cell A, 10 spaces) and zone kerb (cell B, 5 spaces) over two days, and four cases (see below)."""
    sf = make_session_factory(make_engine(db_url))

    def occ(zone: str, cell: str, cap: int, at: datetime, mean: float, period: float = 600.0) -> ParkingOccupancy:
        return ParkingOccupancy(
            camera_id=f"cam-{zone}",
            zone=zone,
            at=at,
            hour=hour_of(at, period),
            edge_id=EDGE,
            grid_cell=cell,
            capacity=cap,
            occupied=round(mean),
            occupied_mean=mean,
            period_s=period,
            received_at=at,
        )

    n = iter(range(1, 100))

    def case(
        cat: str, state: str, cell: str, reported: datetime, handled: datetime | None, closed: datetime | None = None
    ) -> Case:
        return Case(
            category=cat,
            state=state,
            dedup_key=f"k{next(n)}",
            grid_cell=cell,
            reported_at=reported,
            handled_at=handled,
            closed_at=closed,
            updated_at=reported,
            recurrence_count=0,
            rework_count=0,
            incident_count=1,
        )

    with sf() as s:
        s.add_all(
            [
                occ("lot", CELL_A, 10, local(1, 20, 10), 9.0),  # interval 20:00-20:10: hour 20
                occ("lot", CELL_A, 10, local(2, 21, 4), 10.0),  # interval 20:54-21:04, middle 20:59: hour 20
                occ("lot", CELL_A, 10, local(1, 21, 40), 10.0),
                occ("lot", CELL_A, 10, local(2, 21, 50), 10.0),
                occ("kerb", CELL_B, 5, local(1, 20, 30), 4.0),  # kerb reports at 20:00 only
                occ("lot", CELL_A, 10, local(3, 20, 10), 0.0),  # after the period: not counted
            ]
        )
        s.add_all(
            [
                # 0.8 h in hour 20 and 0.4 h in hour 21
                case("illegal_parking", "closed", CELL_A, local(1, 20, 12), local(1, 21, 24)),
                case("illegal_parking", "closed", CELL_B, local(2, 20, 30), None, local(2, 20, 48)),  # 0.3 h at 20
                case("illegal_parking", "rejected", CELL_A, local(1, 20, 5), local(1, 22, 0)),  # not a case
                case("street_vending", "closed", CELL_A, local(1, 20, 5), local(1, 22, 0)),  # not parking
                case("illegal_parking", "closed", CELL_C, local(1, 20, 5), local(1, 20, 35)),  # C2: no zone there
            ]
        )
        s.commit()
    sf.kw["bind"].dispose()


def rows_of(out: dict[str, Any], area: str) -> dict[int, dict[str, Any]]:
    return {r["hour"]: r for r in out["rows"] if r["area"] == area}


def test_supply_demand_match_hand_computed_figures(db_url: str) -> None:
    db = db_url
    seed_small(db)
    cfg = parse_central_config({"grid": GRID})
    sf = make_session_factory(make_engine(db))
    with sf() as s:
        grid = load_grid(s, cfg)
        out = supply_demand(s, SINCE, UNTIL, config=cfg, grid=grid, level="community")
        assert out["days"] == 2.0 and set(out["areas"]) == {"C1"}  # C2 has cases but no parking zone
        c1 = rows_of(out, "C1")
        assert len(c1) == 24
        # hour 20: lot (9 + 10) / 2 = 9.5 of 10, kerb 4 of 5; illegal (0.8 + 0.3) h / 2 days; 2 cases reported
        assert c1[20] == {
            "area": "C1",
            "hour": 20,
            "supply": 15.0,
            "occupied": 13.5,
            "occupancy_rate": 0.9,
            "illegal_parking": 0.55,
            "illegal_parking_cases": 2,
            "demand": 14.05,
            "shortfall": 0.0,
            "spare": 0.95,
            "zones": 2,
            "figures": 3,
        }
        # hour 21: only the lot reports (10 of 10); the first case is still there 0.4 h: 0.4 / 2 days
        hour21 = c1[21]
        assert (hour21["supply"], hour21["occupied"], hour21["illegal_parking"], hour21["demand"]) == (
            10,
            10,
            0.2,
            10.2,
        )
        assert (c1[21]["shortfall"], c1[21]["spare"], c1[21]["illegal_parking_cases"]) == (0.2, 0.0, 0)
        assert c1[3]["supply"] == 0 and c1[3]["demand"] == 0 and c1[3]["occupancy_rate"] is None
        cells = supply_demand(s, SINCE, UNTIL, config=cfg, grid=grid, level="cell")
        b = rows_of(cells, CELL_B)[20]
        assert (b["supply"], b["occupied"], b["illegal_parking"], b["demand"]) == (5.0, 4.0, 0.15, 4.15)
        zones = supply_demand(s, SINCE, UNTIL, config=cfg, grid=grid, level="zone")
        assert set(zones["areas"]) == {"cam-lot/lot", "cam-kerb/kerb"}
        assert rows_of(zones, "cam-lot/lot")[21]["shortfall"] == 0.2
        only_b = supply_demand(s, SINCE, UNTIL, config=cfg, grid=grid, level="community", cells=[CELL_B])
        assert rows_of(only_b, "C1")[20]["supply"] == 5.0
        with pytest.raises(ValueError, match="level must be one of"):
            supply_demand(s, SINCE, UNTIL, config=cfg, grid=grid, level="planet")
    sf.kw["bind"].dispose()


def test_parking_supply_api(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(db)
    seed_small(db)
    env = make_api(db, tmp_path, {"grid": GRID})
    env.central.clock.set(UNTIL + timedelta(days=1))
    h = env.auth("viewer")
    q = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    r = env.client.get("/api/v1/parking/supply", params=q, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["level"] == "community" and body["days"] == 2.0 and len(body["rows"]) == 24
    row = next(x for x in body["rows"] if x["hour"] == 20)
    assert row["area_name"] == "Community 1" and row["demand"] == 14.05 and row["supply"] == 15.0
    r = env.client.get("/api/v1/parking/supply", params={**q, "level": "zone", "grid_unit": CELL_B}, headers=h)
    assert r.status_code == 200 and {x["area"] for x in r.json()["rows"]} == {"cam-kerb/kerb"}
    r = env.client.get("/api/v1/parking/supply", params={**q, "level": "planet"}, headers=h)
    assert r.status_code == 422 and "level" in r.text
    r = env.client.get("/api/v1/parking/supply", params={**q, "grid_unit": "nowhere"}, headers=h)
    assert r.status_code == 422 and "unknown grid unit" in r.text
    assert env.client.get("/api/v1/parking/supply", params=q).status_code == 401


def test_the_edges_figures_reach_central_over_mosquitto(db_url: str, tmp_path: Path, mosquitto: Any) -> None:
    """RuleEngine (a parking zone) → EdgePublisher.publish_occupancy → Mosquitto → MqttIngest → parking_occupancy."""
    from central.mqtt_ingest import MqttIngest
    from edge.config import parse_config
    from edge.mqtt.publisher import EdgePublisher
    from edge.rules import RuleEngine
    from tests.polling import wait_until
    from tests.test_central_mqtt import mqtt_section
    from tests.test_publisher import EDGE_ID, make_config
    from tests.test_rules_occupancy import FRAME, LOT, T0, cars

    c = make_central(db_url, tmp_path, mqtt_section(mosquitto))
    runner = MqttIngest(c.config, session_factory=c.session_factory, ingest=c.ingest)
    runner.start()
    pub = EdgePublisher(make_config(tmp_path, mosquitto))
    pub.start()
    try:
        assert runner.wait_subscribed(10)
        wait_until(lambda: pub.connected, what="edge connected")
        zone = {"name": "lot", "type": "parking", "points": LOT, "capacity": 3, "report_every_s": 10}
        cfg = parse_config(
            {
                "edge_id": EDGE_ID,
                "cameras": [{"id": "cam-1", "url": "x.mp4", "zones": [zone], "location": {"grid_cell": CELL_A}}],
            }
        )
        eng = RuleEngine(cfg.cameras[0], site=cfg.site, edge_id=EDGE_ID, model_name="ssd", model_version="1")
        sent = 0
        for i in range(31):  # 1 sample a second: figures at 10, 20 and 30 s
            for fig in eng.update(cars(0, 1), T0 + i, FRAME).occupancy:
                pub.publish_occupancy(fig.to_dict())
                sent += 1
        assert sent == 3

        def rows() -> list[ParkingOccupancy]:
            with c.session_factory() as s:
                return list(s.scalars(select(ParkingOccupancy).order_by(ParkingOccupancy.at)))

        wait_until(lambda: len(rows()) == 3, what="3 occupancy rows")
        got = rows()
        assert [(r.occupied, r.capacity, r.grid_cell, r.edge_id, r.camera_id, r.zone) for r in got] == [
            (2, 3, CELL_A, EDGE_ID, "cam-1", "lot")
        ] * 3
        assert got[0].at == datetime.fromtimestamp(T0 + 10, UTC) and got[0].samples == 11
    finally:
        pub.stop()
        runner.stop()
        c.session_factory.kw["bind"].dispose()
