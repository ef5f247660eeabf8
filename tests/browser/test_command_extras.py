"""In the real browser: the map draws an internal tile server's tiles under the grid when one is configured (and the
CSP lets exactly that origin through); a crowd case's page shows its grid path, its level, the forecast and the
response plan for that level; the queue filters by a grid unit of any level; the analytics page runs the findings
on demand, lists the stored runs and downloads a run's HTML report."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from central.clock import FixedClock
from central.grid import import_units, parse_geojson
from central.ingest import IngestService
from tests.browser.central_server import RunningCentral, seed_demo, start_central
from tests.browser.conftest import shot
from tests.browser.test_command_pages import CELLS, api_get, grid_geojson
from tests.central_support import encode, incident_payload
from tests.fixtures.mqtt import MosquittoBroker

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PLANS = {
    "plans": [
        {
            "zone": "plaza-floor",
            "level": "high",
            "plan": "Open the east gate; stewards to the stairs.",
            "notify": ["public_security"],
            "dispatch": ["patrol-2"],
        },
        {
            "zone": "plaza-floor",
            "level": "critical",
            "plan": "Close the square's entrances; one-way flow out.",
            "plan_zh": "关闭广场入口，单向疏散。",
            "notify": ["public_security", "district-command"],
            "dispatch": ["patrol-2", "traffic-squad-3"],
        },
    ]
}


class TileServer:
    """A stand-in for a site's internal tile server: a plain PNG for every /tiles/{z}/{x}/{y}.png, paths logged."""

    def __init__(self) -> None:
        ok, png = cv2.imencode(".png", np.full((256, 256, 3), (200, 220, 235), np.uint8))
        assert ok
        body = png.tobytes()
        self.paths: list[str] = []
        log = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                log.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="tiles", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def tiles() -> Iterator[TileServer]:
    t = TileServer()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def central(
    tmp_path_factory: pytest.TempPathFactory, broker: MosquittoBroker, tiles: TileServer
) -> Iterator[RunningCentral]:
    extra = {
        "crowd_response": PLANS,
        "map": {
            "tile_url": f"{tiles.url}/tiles/{{z}}/{{x}}/{{y}}.png",
            "attribution": "Tiles: city GIS",
            "max_zoom": 18,
        },
    }
    rc = start_central(tmp_path_factory.mktemp("central"), broker.host, broker.port, extra)
    seed_demo(rc)
    with rc.app.state.session_factory() as s:
        import_units(s, rc.config, parse_geojson(grid_geojson()), datetime.now(UTC))
        s.commit()
    # a second plaza camera whose crowd is critical, with a forecast
    p = incident_payload(
        type="crowd_density",
        camera_id="cam-plaza-02",
        zone="plaza-floor",
        edge_id="edge-demo-01",
        grid_cell="310101-002-01",
        incident_id=str(uuid.uuid4()),
        at=datetime.now(UTC),
    )
    p["crowd"] = {
        "count": 140,
        "density": 1.4,
        "level": "critical",
        "previous_level": "high",
        "count_low": 120,
        "count_high": 161,
        "forecast": {
            "predicted_density": 1.8,
            "horizon_s": 300.0,
            "predicted_level": "critical",
            "early_warning": False,
        },
    }
    ingest = IngestService(
        rc.app.state.session_factory,
        rc.config,
        clock=FixedClock(datetime.now(UTC)),
        store=rc.app.state.store,
        bus=rc.app.state.bus,
    )
    res = ingest.handle("gridwatch/v1/edge-demo-01/incidents", encode(p))
    assert res.case_id is not None, res
    rc.case_ids["cam-plaza-02/plaza-floor"] = res.case_id
    yield rc
    rc.stop()


def test_map_draws_the_internal_tiles_under_the_grid(
    sign_in,
    central: RunningCentral,
    tiles: TileServer,  # type: ignore[no-untyped-def]
    artifacts: Path,
) -> None:
    page = sign_in("viewer", next_path="/map")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    page.wait_for_selector("svg#map circle.case")
    images = page.locator("svg#map g.tiles image")
    hrefs = images.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert 0 < len(hrefs) <= 256 and all(h.startswith(f"{tiles.url}/tiles/") for h in hrefs)
    assert page.locator("svg#map.tiled").count() == 1
    # the tiles sit under the cells: the tile group comes first in the drawing
    order = page.evaluate("[...document.querySelector('svg#map').children].map(g => g.getAttribute('class'))")
    assert order == ["tiles", "cells", "cameras", "cases"]
    page.wait_for_function("n => document.querySelectorAll('svg#map g.tiles image').length === n", arg=len(hrefs))
    deadline_hits = {h.removeprefix(tiles.url) for h in hrefs}
    page.wait_for_function("() => true")
    for _ in range(100):  # the browser fetched them (the CSP let the tile origin through); poll, never sleep-guess
        if deadline_hits <= set(tiles.paths):
            break
        page.wait_for_timeout(100)
    assert deadline_hits <= set(tiles.paths)
    z = {int(h.split("/")[-3]) for h in hrefs}
    assert len(z) == 1 and 10 <= z.pop() <= 18  # a zoom that fits four cells of ~500 m
    assert page.locator("#map-attribution").inner_text() == "Tiles: city GIS"
    assert {u.split("/")[2] for u in requests} <= {central.url.split("/")[2], tiles.url.split("/")[2]}
    assert page.locator("svg#map path.cell").count() == len(CELLS)
    shot(page, artifacts, "map-tiles")


def test_crowd_case_page_shows_grid_path_level_forecast_and_plan(
    sign_in,
    central: RunningCentral,  # type: ignore[no-untyped-def]
    artifacts: Path,
) -> None:
    case_id = central.case_ids["cam-plaza-02/plaza-floor"]
    page = sign_in("viewer", next_path=f"/cases/{case_id}")
    page.wait_for_selector("#plan-text")
    crumbs = page.locator("#case-grid-path a")
    assert crumbs.evaluate_all("els => els.map(e => e.dataset.level)") == ["district", "street", "community", "cell"]
    assert crumbs.evaluate_all("els => els.map(e => e.dataset.code)") == [
        "310101",
        "310101-S1",
        "310101-S1-C1",
        "310101-002-01",
    ]
    assert crumbs.nth(3).get_attribute("href") == "/queue?grid_unit=310101-002-01"
    assert "Critical" in page.locator("#plan-level").inner_text()
    assert "forecast: Critical in 5 min (1.800 /m²)" in page.locator("#plan-forecast").inner_text()
    assert page.locator("#plan-text").inner_text() == "Close the square's entrances; one-way flow out."
    assert page.locator("#plan-dispatch").inner_text() == "Patrol 2, Traffic squad 3"
    assert (
        page.locator("#plan-notify").inner_text() == "Public security, district-command"
        or "district-command" in page.locator("#plan-notify").inner_text()
    )
    # the responder recorded the plan on the case (once, for its level)
    detail = api_get(central, f"/api/v1/cases/{case_id}")
    assert detail["crowd_plan"]["level"] == "critical"
    page.wait_for_selector("#timeline li[data-action=response_plan]")
    shot(page, artifacts, "case-crowd-plan")
    # Chinese: the plan's own Chinese text
    page.select_option("#lang-select", "zh-CN")
    page.wait_for_selector("#plan-text")
    page.wait_for_function("() => document.getElementById('plan-text').textContent === '关闭广场入口，单向疏散。'")
    page.select_option("#lang-select", "en")


def test_a_non_crowd_case_shows_its_grid_path_and_no_plan(sign_in, central: RunningCentral) -> None:  # type: ignore[no-untyped-def]
    case_id = central.case_ids["cam-intersection-01/junction-lanes"]
    page = sign_in("viewer", next_path=f"/cases/{case_id}")
    page.wait_for_selector("#case-grid-path a[data-level=cell]")
    assert page.locator("#case-grid-path a[data-level=cell]").inner_text() == "Cell 03"
    assert page.locator("#plan-card").is_hidden()


def test_queue_filters_by_a_grid_unit_of_any_level(sign_in, central: RunningCentral, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page = sign_in("viewer", next_path="/queue")
    page.wait_for_selector("#queue-body tr")
    page.select_option("#f-state", "")
    all_rows = api_get(central, "/api/v1/cases?limit=500")["total"]
    page.wait_for_function("n => document.querySelectorAll('#queue-body tr').length === n", arg=all_rows)
    assert page.locator("#f-unit-street").is_hidden()  # narrowed levels appear once the one above is chosen
    page.select_option("#f-unit-district", "310101")
    page.select_option("#f-unit-street", "310101-S1")
    page.select_option("#f-unit-community", "310101-S1-C1")
    assert page.locator("#f-unit-cell option").count() == 1 + len(CELLS)
    page.select_option("#f-unit-cell", "310101-001-03")
    want = api_get(central, "/api/v1/cases?grid_unit=310101-001-03&limit=500")["total"]
    assert 0 < want < all_rows
    page.wait_for_function("n => document.querySelectorAll('#queue-body tr').length === n", arg=want)
    assert set(page.locator("#queue-body td.where").all_inner_texts()) and all(
        "310101-001-03" in w for w in page.locator("#queue-body td.where").all_inner_texts()
    )
    shot(page, artifacts, "queue-grid-unit")
    # back up to the community: every case in its cells
    page.select_option("#f-unit-cell", "")
    want = api_get(central, "/api/v1/cases?grid_unit=310101-S1-C1&limit=500")["total"]
    page.wait_for_function("n => document.querySelectorAll('#queue-body tr').length === n", arg=want)
    # a link from the case page's breadcrumb lands with the unit chosen
    page.goto(f"{central.url}/queue?grid_unit=310101-001-05&state=")
    page.wait_for_function("() => document.getElementById('f-unit-cell')?.value === '310101-001-05'")
    want = api_get(central, "/api/v1/cases?grid_unit=310101-001-05&limit=500")["total"]
    page.wait_for_function("n => document.querySelectorAll('#queue-body tr').length === n", arg=want)
    assert page.locator("#f-unit-community").input_value() == "310101-S1-C1"


def test_analytics_runs_findings_on_demand_and_exports_html(
    sign_in,
    central: RunningCentral,  # type: ignore[no-untyped-def]
    artifacts: Path,
) -> None:
    viewer = sign_in("viewer", next_path="/analytics")
    viewer.wait_for_selector("#fr-schedule:not(:empty)")
    assert viewer.locator("#fr-run").count() == 0  # viewers may read the runs, not start one
    assert "Weekly on Monday at 07:00 (Asia/Shanghai)" in viewer.locator("#fr-schedule").inner_text()
    before = api_get(central, "/api/v1/findings/runs")["total"]
    page = sign_in("dispatcher", next_path="/analytics")
    page.wait_for_selector("#fr-schedule:not(:empty)")
    page.click("#fr-run")
    page.wait_for_selector("#toast:not([hidden])", timeout=30_000)
    assert "stored" in page.locator("#toast").inner_text(), page.locator("#toast").inner_text()
    page.wait_for_function("n => document.querySelectorAll('#fr-runs li').length === n", arg=before + 1)
    runs = api_get(central, "/api/v1/findings/runs")
    newest = runs["items"][0]
    assert runs["total"] == before + 1 and newest["trigger"] == "manual"
    page.wait_for_selector(f"#fr-runs li[data-run='{newest['id']}'].current")
    assert f"Run #{newest['id']} (on demand)" in page.locator("#fr-meta").inner_text()
    assert page.locator("#fr-findings li").count() >= 1  # findings, or the one "nothing stands out" line
    with page.expect_download() as dl:
        page.click(f"#fr-runs li[data-run='{newest['id']}'] .fr-html")
    assert dl.value.suggested_filename == f"gridwatch-findings-{newest['id']}.html"
    text = Path(dl.value.path()).read_text()
    assert text.startswith("<!doctype html>") and "<script" not in text
    shot(page, artifacts, "analytics-findings-runs")
