"""In the real browser: the offline map draws the grid cells, cameras and open cases (coloured by deadline) and clicks
through to a case; a field report from a phone-sized viewport (geolocation, photo) becomes a case; the command
center shows the evaluation table and the findings."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.grid import import_units, parse_geojson
from tests.browser.central_server import RunningCentral, footage_jpeg, seed_demo, start_central
from tests.browser.conftest import shot
from tests.fixtures.mqtt import MosquittoBroker

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PHONE = {"width": 390, "height": 844}
# seed_demo's cameras sit at lat 22.54, lon 114.05 (the incident builder's location); cells around them
CELLS = {"310101-001-03": (114.045, 22.535), "310101-001-05": (114.050, 22.535), "310101-003-02": (114.045, 22.540),
         "310101-002-01": (114.050, 22.540)}


def grid_geojson() -> str:
    feats = [{"type": "Feature", "properties": {"level": "district", "code": "310101", "name": "Huangpu"},
              "geometry": None},
             {"type": "Feature", "properties": {"level": "street", "code": "310101-S1", "name": "Street 1",
                                                "parent": "310101"}, "geometry": None},
             {"type": "Feature", "properties": {"level": "community", "code": "310101-S1-C1", "name": "Comm 1",
                                                "parent": "310101-S1", "team": "patrol-2"}, "geometry": None}]
    for code, (x, y) in CELLS.items():
        ring = [[x, y], [x + 0.005, y], [x + 0.005, y + 0.005], [x, y + 0.005], [x, y]]
        feats.append({"type": "Feature", "properties": {"level": "cell", "code": code, "name": f"Cell {code[-2:]}",
                                                        "parent": "310101-S1-C1", "team": "traffic-squad-3"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return json.dumps({"type": "FeatureCollection", "features": feats})


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, broker: MosquittoBroker) -> Iterator[RunningCentral]:
    rc = start_central(tmp_path_factory.mktemp("central"), broker.host, broker.port)
    seed_demo(rc)
    with rc.app.state.session_factory() as s:
        import_units(s, rc.config, parse_geojson(grid_geojson()), datetime.now(UTC))
        s.commit()
    yield rc
    rc.stop()


def api_get(rc: RunningCentral, path: str) -> dict:
    req = urllib.request.Request(f"{rc.url}{path}", headers={"Authorization": f"Bearer {rc.tokens['admin']}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - local test server
        return json.loads(r.read())


def test_map_shows_cells_cameras_and_cases(sign_in, central: RunningCentral, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page = sign_in("viewer", next_path="/map")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    page.wait_for_selector("svg#map circle.case")
    # no tile server configured: vector boundaries only, and no request leaves central
    assert page.locator("svg#map g.tiles image").count() == 0 and page.locator("svg#map.tiled").count() == 0
    assert requests and {u.split("/")[2] for u in requests} == {central.url.split("/")[2]}, requests
    assert page.locator("svg#map path.cell").count() == len(CELLS)
    cases = page.locator("svg#map circle.case")
    open_total = api_get(central, "/api/v1/cases?state=reported,filed,dispatched,in_progress&limit=500")["total"]
    assert cases.count() == open_total >= 4
    colours = {c.split()[-1] for c in cases.evaluate_all("els => els.map(e => e.getAttribute('class'))")}
    assert colours <= {"green", "yellow", "red", "none"} and len(colours) >= 2  # the seeded ages differ
    assert page.locator("svg#map rect.camera").count() >= 1
    # the busiest cell is shaded darker than an empty one
    shades = page.locator("svg#map path.cell").evaluate_all("els => els.map(e => e.getAttribute('class'))")
    assert any(s != "cell d0" for s in shades)
    assert "4 grid cells" in page.locator("#map-status").inner_text()
    shot(page, artifacts, "map")
    page.locator("svg#map path.cell").first.click(position={"x": 8, "y": 8})  # a corner, clear of the cases
    assert "310101" in page.locator("#map-info").inner_text()
    case_id = cases.first.get_attribute("data-case")
    cases.first.click()
    page.wait_for_url(f"{central.url}/cases/{case_id}")


def test_field_report_from_a_phone_becomes_a_case(sign_in, central: RunningCentral, artifacts: Path,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    page = sign_in("handler", viewport=PHONE, next_path="/report")
    page.context.grant_permissions(["geolocation"], origin=central.url)
    page.context.set_geolocation({"latitude": 22.5425, "longitude": 114.0525})  # inside 310101-002-01
    page.wait_for_selector("#rep-category option", state="attached")
    page.select_option("#rep-category", "crowd_density")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(footage_jpeg("street_vans_parked_at_curb_muenster_1.jpg"))
    page.set_input_files("#rep-photo", str(photo))
    page.click("#rep-locate")
    page.wait_for_selector("#rep-where:has-text('310101-002-01')")  # located in the cell (no eval under the CSP)
    page.fill("#rep-note", "crowd blocking the crossing")
    # the form fits the phone's width
    width = page.evaluate("document.getElementById('report-form').getBoundingClientRect().right")
    assert width <= PHONE["width"]
    shot(page, artifacts, "field-report-phone")
    page.click("#rep-submit")
    link = page.wait_for_selector("#rep-case-link")
    case_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    case = api_get(central, f"/api/v1/cases/{case_id}")
    assert (case["category"], case["grid_cell"]) == ("crowd_density", "310101-002-01")
    assert case["state"] == "dispatched" and case["squad"] == "patrol-2"  # auto-dispatched, routed by the rules
    assert case["snapshot_sha256"] and [e["kind"] for e in case["evidence"]] == ["before"]
    assert abs(case["lat"] - 22.5425) < 1e-6 and "crowd blocking the crossing" in case["description"]
    link.click()
    page.wait_for_url(f"{central.url}/cases/{case_id}")


def test_command_center_tables_and_findings(sign_in, central: RunningCentral, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page = sign_in("viewer", next_path="/command")
    page.wait_for_selector("#cc-findings-list li")
    page.wait_for_selector("#cc-eval-table table, #cc-eval-table p")
    page.select_option("#cc-by", "category")
    page.wait_for_selector("#cc-eval-table table[data-by=category], #cc-eval-table p")
    assert page.locator("#cc-unit option").count() >= 3  # whole grid + district, street, community
    with page.expect_download() as dl:
        page.click("#cc-xlsx")
    assert dl.value.suggested_filename.endswith(".xlsx")
    shot(page, artifacts, "command-center")
