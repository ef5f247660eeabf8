"""KPIs and hotspots on a seeded data set, against hand-computed figures (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.analytics import hotspots, kpis
from central.clock import FixedClock
from central.config import CategoryConfig, StageLimits, default_categories, parse_central_config
from central.db import Case, Incident, make_engine, make_session_factory

# Period: Mon 23 Nov 00:00 → Mon 30 Nov 00:00 Asia/Shanghai = 22 Nov 16:00Z → 29 Nov 16:00Z. "Now" is 2 Dec,
# after the period, so horizon = until.
SINCE = datetime(2026, 11, 22, 16, tzinfo=UTC)
UNTIL = datetime(2026, 11, 29, 16, tzinfo=UTC)
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def Z(day: int, hour: int = 0, month: int = 11) -> datetime:  # noqa: N802 - reads like a timestamp literal
    return datetime(2026, month, day, hour, tzinfo=UTC)


# "test_cal": calendar hours, total limit L = 1 + 1 + 6 + 2 = 10 h, so due_at = reported_at + 10 h.
TEST_CAL = CategoryConfig(code="test_cal", name="Test", unit="calendar",
                          limits=StageLimits(file=1, dispatch=1, handle=6, verify=2))


@pytest.fixture
def seeded(db_url: str):  # type: ignore[no-untyped-def]
    cfg = parse_central_config({"categories": [c.model_dump() for c in [*default_categories(), TEST_CAL]]})
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    n = iter(range(1, 1000))

    def case(cat: str, state: str, reported: datetime, due: datetime | None, closed: datetime | None, grid: str,
             squad: str, cam: str, rework: int = 0, filed: datetime | None = None) -> Case:
        return Case(category=cat, state=state, dedup_key=f"k{next(n)}", reported_at=reported, due_at=due,
                    closed_at=closed, filed_at=filed, grid_cell=grid, squad=squad, camera_id=cam, rework_count=rework,
                    recurrence_count=0, incident_count=1, updated_at=reported)

    def incident(cam: str, zone: str, started: datetime, grid: str, case_id: int | None = None,
                 silenced: bool = False, typ: str = "test_cal", pos: tuple[float, float] | None = None) -> Incident:
        return Incident(incident_id=f"i{next(n)}", type=typ, camera_id=cam, zone=zone, grid_cell=grid,
                        started_at=started, last_seen_at=started, last_seq=1, case_id=case_id, silenced=silenced,
                        created_at=started, position_x=pos[0] if pos else None, position_y=pos[1] if pos else None)

    half = timedelta(minutes=30)
    minute = timedelta(minutes=1)
    with sf() as s:
        cases = {
            # A: closed after 8 h, due 10 h → on time, overtime 0
            "A": case("test_cal", "closed", Z(24), Z(24, 10), Z(24, 8), "G1", "S1", "c1", filed=Z(24) + half),
            # B: closed after 15 h → late, overtime (15 - 10) / 10 = 0.5; one failed verification
            "B": case("test_cal", "closed", Z(25), Z(25, 10), Z(25, 15), "G1", "S1", "c1", rework=1,
                      filed=Z(25) + half),
            # C: due 26th 10:00, still open at the horizon (29th 16:00): H = 3 d 16 h = 88 h → (88 - 10) / 10 = 7.8
            "C": case("test_cal", "in_progress", Z(26), Z(26, 10), None, "G2", "S2", "c2", filed=Z(26) + half),
            # D: reported and due before the period, closed inside it (23rd 00:00): H = 72 h → 6.2; two reworks
            "D": case("test_cal", "closed", Z(20), Z(20, 10), Z(23), "G2", "S2", "c2", rework=2, filed=Z(20) + half),
            # E: due after the period (29th 20:00), open → not due
            "E": case("test_cal", "filed", Z(29, 10), Z(29, 20), None, "G1", "S1", "c1", filed=Z(29, 10) + half),
            # F: entirely before the period
            "F": case("test_cal", "closed", Z(10), Z(10, 10), Z(11), "G1", "S1", "c1", filed=Z(10) + half),
            # G, H: rejected / duplicate are never due
            "G": case("test_cal", "rejected", Z(24), Z(24, 10), None, "G1", "S1", "c1"),
            "H": case("test_cal", "duplicate", Z(24), Z(24, 10), None, "G1", "S1", "c1"),
            # W: illegal_parking, working hours (Mon-Fri 09:00-12:00, 13:30-18:00 Shanghai), L = 0.5+0.5+3+2 = 6.
            # Reported Mon 23rd 10:00 local (02:00Z), due Mon 17:30 local (09:30Z), closed Tue 24th 11:00 local
            # (03:00Z): H = 2 + 4.5 + 2 = 8.5 working h → (8.5 - 6) / 6 = 0.416667; calendar handling time 25 h.
            "W": case("illegal_parking", "archived", Z(23, 2), datetime(2026, 11, 23, 9, 30, tzinfo=UTC), Z(24, 3),
                      "G3", "S3", "c3", filed=Z(23, 2) + half),
        }
        s.add_all(cases.values())
        s.flush()
        s.add_all([
            incident("c1", "z1", Z(24) - minute, "G1", cases["A"].id),
            incident("c1", "z1", Z(25) - minute, "G1", cases["B"].id),
            incident("c1", "z1", Z(25, 1), "G1", cases["B"].id),
            incident("c2", "z2", Z(26) - minute, "G2", cases["C"].id),
            incident("c1", "z1", Z(29, 10) - minute, "G1", cases["E"].id),
            incident("c3", "z3", Z(23, 2) - minute, "G3", cases["W"].id, typ="illegal_parking"),
            incident("c1", "market", Z(27, 12), "G1", None, silenced=True),
            incident("c2", "z2", Z(19), "G2", cases["D"].id),  # before the period
        ])
        s.commit()
    yield sf, cfg
    engine.dispose()


def test_kpis_overall(seeded) -> None:  # type: ignore[no-untyped-def]
    sf, cfg = seeded
    with sf() as s:
        [row] = kpis(s, SINCE, UNTIL, None, FixedClock(NOW), cfg)
    # incidents started in the period: A, B×2, C, E, W and the silenced one = 7 (D's is before the period)
    assert row["incidents"] == 7
    # filed in the period: A, B, C, E, W = 5
    assert row["cases_filed"] == 5
    # due: A, B, C, W (deadline in period) + D (closed in period) = 5; E not yet due; F before; G, H excluded
    assert row["due"] == 5
    assert row["closed"] == 4  # A, B, D, W
    assert row["on_time"] == 1  # A only
    assert row["closure_rate"] == pytest.approx(4 / 5)
    assert row["on_time_rate"] == pytest.approx(1 / 5)
    assert row["failed_verifications"] == 3 and row["rework_rate"] == pytest.approx(3 / 5)  # B 1 + D 2
    # handling time of closed cases (calendar h): A 8, B 15, D 72, W 25 → 120 / 4 = 30
    assert row["avg_handling_h"] == pytest.approx(30.0)
    # overtime multiples: A 0, B 0.5, C 7.8, D 6.2, W 2.5/6 → 14.916667 / 5 = 2.983333
    assert row["avg_overtime_multiple"] == pytest.approx((0 + 0.5 + 7.8 + 6.2 + 2.5 / 6) / 5, abs=1e-4)
    assert row["avg_overtime_multiple"] == pytest.approx(2.9833, abs=1e-4)


def test_kpis_by_grid_cell(seeded) -> None:  # type: ignore[no-untyped-def]
    sf, cfg = seeded
    with sf() as s:
        rows = {r["group"]: r for r in kpis(s, SINCE, UNTIL, "grid_cell", FixedClock(NOW), cfg)}
    g1, g2, g3 = rows["G1"], rows["G2"], rows["G3"]
    # G1: A, B due and closed, A on time; incidents A, B×2, E, silenced = 5
    assert (g1["incidents"], g1["due"], g1["closed"], g1["on_time"]) == (5, 2, 2, 1)
    assert (g1["closure_rate"], g1["on_time_rate"], g1["rework_rate"]) == (1.0, 0.5, 0.5)
    assert g1["avg_handling_h"] == pytest.approx((8 + 15) / 2)
    assert g1["avg_overtime_multiple"] == pytest.approx((0 + 0.5) / 2)
    # G2: C (open, 7.8), D (closed late, 6.2, 2 reworks)
    assert (g2["incidents"], g2["due"], g2["closed"], g2["on_time"]) == (1, 2, 1, 0)
    assert g2["rework_rate"] == 1.0 and g2["avg_handling_h"] == pytest.approx(72.0)
    assert g2["avg_overtime_multiple"] == pytest.approx(7.0)
    # G3: W
    assert (g3["due"], g3["closed"], g3["on_time"]) == (1, 1, 0)
    assert g3["avg_overtime_multiple"] == pytest.approx(2.5 / 6, abs=1e-4)


def test_kpis_by_squad_and_while_period_is_running(seeded) -> None:  # type: ignore[no-untyped-def]
    sf, cfg = seeded
    with sf() as s:
        rows = {r["group"]: r for r in kpis(s, SINCE, UNTIL, "squad", FixedClock(NOW), cfg)}
        assert rows["S2"]["due"] == 2 and rows["S1"]["incidents"] == 4  # silenced incident has no case → None
        assert rows[None]["incidents"] == 1
        # "now" = 25th 12:00Z: horizon 25th 12:00. Due so far: A (due 24th 10:00) and W (23rd 09:30), D (closed
        # 23rd); B (due 25th 10:00, not closed by the horizon) too → 4. C's deadline (26th) has not come yet.
        [row] = kpis(s, SINCE, UNTIL, None, FixedClock(Z(25, 12)), cfg)
        assert (row["due"], row["closed"]) == (4, 3)
        # B at the horizon: H = 12 h → 0.2; A 0, D 6.2, W 2.5/6 → (0 + 0.2 + 6.2 + 0.416667) / 4 = 1.704167
        assert row["avg_overtime_multiple"] == pytest.approx((0.2 + 6.2 + 2.5 / 6) / 4, abs=1e-4)
        [empty] = kpis(s, Z(1, month=1), Z(2, month=1), None, FixedClock(NOW), cfg)
        assert empty["due"] == 0 and empty["closure_rate"] is None


def test_hotspots_zone_hour_weekday_and_change(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    rows = [
        # Sidewalk parking after 19:00 local (11:00Z) on three evenings this week, always at the same spot
        ("c1", "sidewalk", "illegal_parking", Z(23, 11), (0.30, 0.70), False),
        ("c1", "sidewalk", "illegal_parking", Z(24, 11), (0.31, 0.71), False),
        ("c1", "sidewalk", "illegal_parking", Z(26, 11), (0.30, 0.69), False),
        # one morning vendor (09:00 local = 01:00Z on Wednesday 25th)
        ("c2", "corner", "street_vending", Z(25, 1), (0.5, 0.5), False),
        # silenced market: left out
        ("c2", "market", "street_vending", Z(25, 2), (0.5, 0.5), True),
        # previous week: one sidewalk incident, two at the corner
        ("c1", "sidewalk", "illegal_parking", Z(17, 11), (0.30, 0.70), False),
        ("c2", "corner", "street_vending", Z(18, 1), (0.5, 0.5), False),
        ("c2", "corner", "street_vending", Z(19, 1), (0.5, 0.5), False),
    ]
    with sf() as s:
        for i, (cam, zone, typ, at, pos, silenced) in enumerate(rows):
            s.add(Incident(incident_id=f"h{i}", type=typ, camera_id=cam, zone=zone, started_at=at, last_seen_at=at,
                           last_seq=1, silenced=silenced, created_at=at, position_x=pos[0], position_y=pos[1]))
        s.commit()
        out = hotspots(s, SINCE, UNTIL, "Asia/Shanghai")
    engine.dispose()
    assert (out["total"], out["previous_total"]) == (4, 3)
    assert out["by_zone_hour"][0] == {"camera_id": "c1", "zone": "sidewalk", "type": "illegal_parking", "hour": 19,
                                      "count": 3}
    weekdays = {(x["zone"], x["weekday"]): x["count"] for x in out["by_zone_weekday"]}
    assert weekdays == {("sidewalk", 0): 1, ("sidewalk", 1): 1, ("sidewalk", 3): 1, ("corner", 2): 1}
    top = out["top_locations"][0]
    assert (top["zone"], top["count"]) == ("sidewalk", 3)  # 0.30/0.31 round to the same 0.05 cell
    change = {x["zone"]: x for x in out["change_vs_previous"]}
    assert (change["sidewalk"]["count"], change["sidewalk"]["previous"], change["sidewalk"]["change_pct"]) == (3, 1,
                                                                                                            200.0)
    assert (change["corner"]["delta"], change["corner"]["change_pct"]) == (-1, -50.0)
    assert "market" not in change
