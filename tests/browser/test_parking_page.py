"""The analytics page's parking table in a real browser: occupancy figures and illegal-parking cases put into the
running central become rows of supply, occupied, illegally parked, demand and shortfall, the full hours marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from central.db import Case
from central.occupancy import hour_of
from central.parking_models import ParkingOccupancy
from tests.browser.central_server import RunningCentral
from tests.browser.conftest import shot


def test_analytics_shows_parking_supply_and_demand(sign_in, central: RunningCentral, artifacts: Path) -> None:  # noqa: ANN001
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with central.app.state.session_factory() as s:
        for d in range(1, 4):  # three days, two hours a day: one full (10 of 10), one with spare spaces (4 of 10)
            for h, occ in ((3, 10.0), (5, 4.0)):
                at = now - timedelta(days=d, hours=h)
                s.add(
                    ParkingOccupancy(
                        camera_id="cam-carpark-01",
                        zone="bay-row",
                        at=at,
                        hour=hour_of(at, 600.0),
                        edge_id="edge-demo-01",
                        grid_cell="310101-001-07",
                        capacity=10,
                        occupied=round(occ),
                        occupied_mean=occ,
                        period_s=600.0,
                        received_at=at,
                    )
                )
        reported = now - timedelta(days=2, hours=3, minutes=50)  # an illegally parked car in the full hour
        s.add(
            Case(
                category="illegal_parking",
                state="closed",
                dedup_key="parking-page-1",
                grid_cell="310101-001-07",
                reported_at=reported,
                handled_at=reported + timedelta(minutes=42),
                closed_at=reported + timedelta(hours=1),
                updated_at=reported,
                recurrence_count=0,
                rework_count=0,
                incident_count=1,
            )
        )
        s.commit()
    page = sign_in("viewer", next_path="/analytics")
    page.wait_for_selector("#tbl-parking > *", timeout=15_000)
    page.wait_for_selector("table[data-table='parking'] tbody tr")
    rows = page.locator("table[data-table='parking'] tbody tr")
    assert rows.count() >= 2
    texts = rows.all_inner_texts()
    assert all("Elm Street" in t or "310101-001-07" in t for t in texts), texts
    short = page.locator("table[data-table='parking'] tbody tr.kpi-bad")
    assert short.count() >= 1  # the full hour with a car parked illegally on top: demand above the 10 spaces
    cells = short.first.locator("td").all_inner_texts()
    assert cells[2] == "10.0" and cells[3] == "10.0" and cells[4] == "100.0%" and float(cells[7]) > 0, cells
    shot(page, artifacts, "analytics-parking-supply")
