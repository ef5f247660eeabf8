"""The dashboard in a real headless Chromium against a real central (uvicorn, SQLite, MQTT ingest from a real
Mosquitto, data seeded through central-core's ingest with snapshots cut from the sample footage).

- an incident published over MQTT appears in the open queue within 2 s, without a reload;
- dispatcher → handler → dispatcher take a case through dispatch → start → feedback (note + photo) → verification →
  close, and the analytics page's closure figures move;
- a viewer sees no action buttons, and requests forged with the viewer token are refused (403);
- the zone editor draws and edits a polygon whose exported YAML the edge's validator accepts, and saves it;
- live crowd figures draw the sparkline; the page works on a tablet and in Chinese.

Screenshots of every page go to test-artifacts/dashboard/ and the current ones to docs/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from playwright.sync_api import Page, expect

from edge.config import load_config, parse_config
from tests.browser.central_server import EDGE_ID, RunningCentral, footage_jpeg, payload_with_snapshot
from tests.browser.conftest import publish_docs_screenshots, shot
from tests.fixtures.media import MEDIA_DIR
from tests.fixtures.mqtt import MosquittoBroker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SignIn = Callable[..., Page]


class Publisher:
    """A real MQTT client publishing like an edge does (QoS 1)."""

    def __init__(self, broker: MosquittoBroker):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-edge-{time.monotonic_ns()}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, leaf: str, payload: dict) -> None:
        info = self.client.publish(f"gridwatch/v1/{EDGE_ID}/{leaf}", json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def publisher(broker: MosquittoBroker, central: RunningCentral) -> Publisher:
    pub = Publisher(broker)
    # Prove the central's ingest is subscribed before any test relies on it: a status message must land.
    pub.publish("status", {"edge_id": EDGE_ID, "state": "online", "at": datetime.now(UTC).isoformat(),
                           "version": "0.1.1"})
    deadline = time.monotonic() + 10
    import urllib.request

    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{central.url}/api/v1/edges",
                                     headers={"Authorization": f"Bearer {central.tokens['viewer']}"})
        with urllib.request.urlopen(req) as r:  # noqa: S310 - local test server
            if any(e["version"] == "0.1.1" for e in json.load(r)["items"]):
                break
        time.sleep(0.1)
    else:
        pytest.fail("the central's MQTT ingest did not receive the status message")
    yield pub
    pub.close()


def _row(page: Page, case_id: int):
    return page.locator(f'tr[data-case-id="{case_id}"]')


def _api_in_page(page: Page, method: str, path: str, body: dict | None = None) -> dict:
    """fetch() from inside the page with the page's own token: what a forged request from devtools would do."""
    return page.evaluate(
        """async ([method, path, body]) => {
            const token = sessionStorage.getItem('gridwatch.token');
            const init = {method, headers: {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json'}};
            if (body) init.body = JSON.stringify(body);
            const r = await fetch(path, init);
            return {status: r.status, body: await r.json()};
        }""",
        [method, path, body],
    )


def test_published_incident_appears_in_the_open_queue_without_reload(
    sign_in: SignIn, central: RunningCentral, publisher: Publisher, artifacts: Path
) -> None:
    page = sign_in("dispatcher")
    expect(page.locator("#queue-body tr")).to_have_count(len(central.case_ids))
    expect(page.locator("#live-dot:not(.off)")).to_be_visible()
    page.evaluate("window.__notReloaded = true")
    # deadline colours: the 200-minute-old parking case is overdue (red), the fresh ones are green
    oldest = central.case_ids["cam-intersection-01/west-kerb-no-parking"]
    expect(_row(page, oldest).locator(".sla")).to_have_class(re.compile("sla-red"))
    fresh = central.case_ids["cam-residential-03/driveway"]
    expect(_row(page, fresh).locator(".sla")).to_have_class(re.compile("sla-green"))

    payload = payload_with_snapshot(footage_jpeg("parking_lot_cctv_timelapse_1.mp4", at_s=5), type="illegal_parking",
                                    camera_id="cam-intersection-01", zone="bus-stop-kerb", grid_cell="310101-001-04",
                                    edge_id=EDGE_ID, at=datetime.now(UTC))
    rows_before = page.locator("#queue-body tr").count()
    t0 = time.monotonic()
    publisher.publish("incidents", payload)
    new_row = page.locator("#queue-body tr").first
    expect(page.locator("#queue-body tr")).to_have_count(rows_before + 1, timeout=2000)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"new case took {elapsed:.2f}s to appear"
    expect(new_row.locator(".where")).to_contain_text("bus-stop-kerb")
    expect(new_row.locator(".thumb img")).to_be_visible()  # the snapshot thumbnail (fetched as a blob)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#queue-count")).to_have_text(f"{rows_before + 1} cases")
    print(f"\nqueue: MQTT publish → row visible in {elapsed * 1000:.0f} ms")

    # filters: the category filter narrows the list, overdue only keeps the red one
    page.select_option("#f-category", "street_vending")
    expect(page.locator("#queue-body tr")).to_have_count(1)
    page.select_option("#f-category", "")
    page.check("#f-overdue")
    expect(page.locator("#queue-body tr")).to_have_count(1)
    expect(_row(page, oldest)).to_be_visible()
    page.uncheck("#f-overdue")
    expect(page.locator("#queue-body tr")).to_have_count(rows_before + 1)
    shot(page, artifacts, "queue")


def _kpi_closed(page: Page) -> int:
    text = page.locator('.kpi[data-kpi="closure_rate"] .kpi-sub').inner_text()
    return int(re.match(r"(\d+)", text).group(1))


def _open_analytics(page: Page, central: RunningCentral) -> None:
    page.goto(f"{central.url}/analytics")
    expect(page.locator("body[data-loaded=true]")).to_have_count(1)


def _act(page: Page, action: str, *, note: str | None = None, squad: str | None = None,
         photo: Path | None = None) -> None:
    page.click(f'#action-buttons button[data-action="{action}"]')
    if squad is not None:
        page.select_option("#in-squad", squad)  # a picker of the squads configured in central.yaml
    if note is not None:
        page.fill("#in-note", note)
    if photo is not None:
        page.set_input_files("#in-photo", str(photo))
    page.click("#action-submit")


def test_dispatcher_moves_a_case_to_closed_and_kpis_follow(
    sign_in: SignIn, central: RunningCentral, artifacts: Path
) -> None:
    case_id = central.case_ids["cam-intersection-01/junction-lanes"]
    dispatcher = sign_in("dispatcher")
    _open_analytics(dispatcher, central)
    closed_before = _kpi_closed(dispatcher)

    dispatcher.goto(f"{central.url}/cases/{case_id}")
    expect(dispatcher.locator("#case-state")).to_have_text("Filed")
    expect(dispatcher.locator("#ev-before img")).to_be_visible()
    buttons = dispatcher.locator("#action-buttons button")
    expect(buttons.first).to_be_visible()
    assert "start" not in [b.get_attribute("data-action") for b in buttons.all()]  # a handler's action
    _act(dispatcher, "dispatch", squad="traffic-squad-3", note="nearest squad")
    expect(dispatcher.locator("#case-state")).to_have_text("Dispatched")

    handler = sign_in("handler", next_path=f"/cases/{case_id}")
    _act(handler, "start")
    expect(handler.locator("#case-state")).to_have_text("In progress")
    photo = MEDIA_DIR / "stills" / "street_vans_parked_at_curb_muenster_2.jpg"
    _act(handler, "feedback", note="vehicle towed, kerb clear", photo=photo)
    expect(handler.locator("#case-state")).to_have_text("Handled")
    expect(handler.locator("#ev-after img")).to_be_visible()

    # the dispatcher's page follows the handler's changes over the event stream
    expect(dispatcher.locator("#case-state")).to_have_text("Handled", timeout=3000)
    _act(dispatcher, "submit_verification")
    expect(dispatcher.locator("#case-state")).to_have_text("Verifying")
    _act(dispatcher, "verify_pass", note="checked on camera")
    expect(dispatcher.locator("#case-state")).to_have_text("Closed")
    timeline = dispatcher.locator("#timeline li")
    actions = [li.get_attribute("data-action") for li in timeline.all()]
    assert actions[:6] == ["verify_pass", "submit_verification", "feedback", "start", "dispatch", "file"]
    expect(dispatcher.locator("#timeline")).to_contain_text("vehicle towed, kerb clear")
    shot(dispatcher, artifacts, "case")

    _open_analytics(dispatcher, central)
    assert _kpi_closed(dispatcher) == closed_before + 1
    api = _api_in_page(dispatcher, "GET", "/api/v1/kpis")
    overall = api["body"]["rows"][0]
    rate = dispatcher.locator('.kpi[data-kpi="closure_rate"] .kpi-value').inner_text()
    assert rate == f"{overall['closure_rate'] * 100:.1f}%"
    expect(dispatcher.locator("#tbl-squad")).to_contain_text("Traffic squad 3")  # the squad's display name
    # the closure-rate card names its denominator: "N of M due closed · K filed"
    expect(dispatcher.locator('.kpi[data-kpi="closure_rate"] .kpi-sub')).to_have_text(
        f"{overall['closed']} of {overall['due']} due closed · {overall['cases_filed']} filed")
    hot = _api_in_page(dispatcher, "GET", "/api/v1/hotspots")["body"]
    zones = {(r["camera_id"], r["zone"]) for r in hot["by_zone_hour"]}
    expect(dispatcher.locator("#heatmap rect.heat-cell")).to_have_count(24 * len(zones))
    expect(dispatcher.locator("#trend path.series-2")).to_have_count(1)
    shot(dispatcher, artifacts, "analytics")


def test_viewer_sees_no_actions_and_forged_requests_are_refused(
    sign_in: SignIn, central: RunningCentral, artifacts: Path
) -> None:
    case_id = central.case_ids["cam-residential-03/driveway"]
    viewer = sign_in("viewer", next_path=f"/cases/{case_id}")
    expect(viewer.locator("#case-state")).to_have_text("Filed")
    expect(viewer.locator("#action-buttons button")).to_have_count(0)
    expect(viewer.locator("#actions-card")).to_be_hidden()
    expect(viewer.locator("#note-form")).to_be_hidden()

    forged = _api_in_page(viewer, "POST", f"/api/v1/cases/{case_id}/transitions",
                          {"action": "dispatch", "squad": "x"})
    assert forged["status"] == 403, forged
    forged_note = _api_in_page(viewer, "POST", f"/api/v1/cases/{case_id}/notes", {"note": "hi"})
    assert forged_note["status"] == 403
    forged_save = _api_in_page(viewer, "POST", "/api/v1/zones/save", {"camera_id": "cam-plaza-01", "zones": []})
    assert forged_save["status"] == 403
    state = _api_in_page(viewer, "GET", f"/api/v1/cases/{case_id}")["body"]
    assert state["state"] == "filed" and state["allowed_actions"] == []
    # without the token the API does not even answer reads
    anon = viewer.evaluate("fetch('/api/v1/cases').then(r => r.status)")
    assert anon == 401

    viewer.goto(f"{central.url}/zones")
    expect(viewer.locator("body[data-ready=true]")).to_have_count(1)
    expect(viewer.locator("#ze-save")).to_have_count(0)  # removed for non-admins
    viewer.goto(f"{central.url}/cases/{case_id}")
    expect(viewer.locator("#case-state")).to_have_text("Filed")
    shot(viewer, artifacts, "case-viewer")


def _svg_point(page: Page, fx: float, fy: float) -> tuple[float, float]:
    box = page.locator("#ze-svg").bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def test_zone_editor_yaml_is_accepted_by_the_edge(sign_in: SignIn, central: RunningCentral, artifacts: Path) -> None:
    # tall enough that the whole drawing surface is on screen (mouse clicks outside the viewport are lost; with a
    # CJK font installed the header lines are a few pixels taller and the svg's bottom left a 768 px viewport)
    page = sign_in("admin", viewport={"width": 1366, "height": 960}, next_path="/zones?camera=cam-intersection-01")
    expect(page.locator("body[data-ready=true]")).to_have_count(1)
    expect(page.locator("#ze-svg image")).to_have_count(1)  # the camera's latest snapshot under the polygons
    expect(page.locator("#ze-zone-list li")).to_have_count(2)  # the zones already in the managed cameras.yaml

    page.click("#ze-new")
    for fx, fy in ((0.55, 0.55), (0.9, 0.55), (0.9, 0.85), (0.55, 0.85)):
        page.mouse.click(*_svg_point(page, fx, fy))
    page.click("#ze-finish")
    expect(page.locator("#ze-zone-list li")).to_have_count(3)
    expect(page.locator("circle.handle")).to_have_count(4)

    # drag vertex 2 (bottom right) down and left
    page.mouse.move(*_svg_point(page, 0.9, 0.85))
    page.mouse.down()
    page.mouse.move(*_svg_point(page, 0.8, 0.9), steps=5)
    page.mouse.up()
    # add a point at the midpoint of the top edge and pull it up, then remove vertex 0
    page.mouse.move(*_svg_point(page, 0.725, 0.55))
    page.mouse.down()
    page.mouse.move(*_svg_point(page, 0.72, 0.5), steps=5)
    page.mouse.up()
    expect(page.locator("circle.handle")).to_have_count(5)
    page.mouse.click(*_svg_point(page, 0.55, 0.55))
    page.click("#ze-remove-point")
    expect(page.locator("circle.handle")).to_have_count(4)

    page.fill("#ze-name", "bus-stop-kerb")
    page.select_option("#ze-type", "no_parking")
    page.fill("#ze-classes", "car, truck")
    page.fill("#ze-dwell", "-5")
    page.click("#ze-validate")
    expect(page.locator("#ze-status")).to_have_class(re.compile("bad"))
    expect(page.locator("#ze-errors")).to_contain_text("cameras[0].zones[2].dwell_s")  # the edge's own path
    page.fill("#ze-dwell", "45")
    page.click("#ze-add-window")
    page.click("#ze-validate")
    expect(page.locator("#ze-status")).to_have_class(re.compile("ok"))
    shot(page, artifacts, "zones")

    fragment = yaml.safe_load(page.locator("#ze-yaml").inner_text())
    cfg = parse_config({"edge_id": "e1", "cameras": [{"id": "cam-intersection-01", "url": "0", **fragment}]}, env={})
    zone = cfg.cameras[0].zones[2]
    assert zone.name == "bus-stop-kerb" and zone.dwell_s == 45 and zone.classes == ["car", "truck"]
    assert len(zone.points) == 4 and zone.schedule[0].days == "mon-fri"
    xs = sorted(p[0] for p in zone.points)
    assert not any(abs(p[0] - 0.55) < 0.02 and abs(p[1] - 0.55) < 0.02 for p in zone.points)  # vertex 0 removed
    assert abs(xs[-1] - 0.9) < 0.02
    assert any(abs(p[0] - 0.8) < 0.02 and abs(p[1] - 0.9) < 0.02 for p in zone.points)  # the dragged vertex
    assert any(abs(p[1] - 0.5) < 0.02 for p in zone.points)  # the added midpoint, pulled up

    page.click("#ze-save")
    expect(page.locator("#toast")).to_contain_text("Saved")
    saved = load_config(central.zone_file)
    cam = next(c for c in saved.cameras if c.id == "cam-intersection-01")
    assert [z.name for z in cam.zones][-1] == "bus-stop-kerb"

    # the same polygon as legal bays: no dwell, a number of spaces
    page.select_option("#ze-type", "parking")
    expect(page.locator("#ze-dwell-row")).to_be_hidden()
    page.fill("#ze-capacity", "6")
    page.click("#ze-validate")
    expect(page.locator("#ze-yaml")).to_contain_text("capacity: 6")  # the new result, not the one shown before
    expect(page.locator("#ze-status")).to_have_class(re.compile("ok"))
    fragment = yaml.safe_load(page.locator("#ze-yaml").inner_text())
    bays = parse_config({"edge_id": "e1", "cameras": [{"id": "cam-intersection-01", "url": "0", **fragment}]},
                        env={}).cameras[0].zones[2]
    assert bays.type == "parking" and bays.capacity == 6 and "dwell_s" not in fragment["zones"][2]


def test_cameras_board_draws_live_crowd_sparkline(
    sign_in: SignIn, central: RunningCentral, publisher: Publisher, artifacts: Path
) -> None:
    page = sign_in("viewer", next_path="/cameras")
    plaza = page.locator('article[data-camera-id="cam-plaza-01"]')
    expect(plaza).to_be_visible()
    expect(page.locator('article[data-camera-id="cam-residential-03"]')).to_have_class(re.compile("offline"))
    expect(plaza.locator(".cam-snap img")).to_be_visible()
    expect(page.locator("#live-dot:not(.off)")).to_be_visible()  # subscribed to the event stream
    for count in (38, 45, 52):
        publisher.publish("crowd", {"edge_id": EDGE_ID, "camera_id": "cam-plaza-01", "zone": "plaza-floor",
                                    "at": datetime.now(UTC).isoformat(), "count": count,
                                    "density": round(count / 400, 4), "level": "elevated"})
        expect(plaza.locator(".crowd-count")).to_contain_text(f"{count} ", timeout=2000)
    expect(plaza.locator("svg.spark path.spark-line")).to_have_count(1)
    # a zone with a ground calibration also publishes its densest ground cell: shown beside the average
    publisher.publish("crowd", {"edge_id": EDGE_ID, "camera_id": "cam-plaza-01", "zone": "plaza-floor",
                                "at": datetime.now(UTC).isoformat(), "count": 52, "density": 0.13,
                                "level": "elevated", "peak_density": 0.62,
                                "peak_cell": {"col": 2, "row": 5, "estimate": 5.6, "area_m2": 9.0,
                                              "center_m": [7.5, 16.5], "center": [0.41, 0.22]}})
    expect(plaza.locator(".crowd-peak")).to_contain_text("0.620 /m²", timeout=2000)
    shot(page, artifacts, "cameras")


def test_tablet_and_chinese_labels(sign_in: SignIn, central: RunningCentral, artifacts: Path) -> None:
    page = sign_in("dispatcher", viewport={"width": 768, "height": 1024})
    expect(page.locator("#queue-body tr").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    sla = page.locator("#queue-body tr").first.locator(".sla").bounding_box()
    assert sla["x"] + sla["width"] <= 768, "the deadline column must stay on screen on a tablet"
    shot(page, artifacts, "queue-tablet")
    page.select_option("#lang-select", "zh-CN")
    expect(page.locator('[data-nav="queue"]')).to_have_text("案件队列")
    first_state = page.locator("#queue-body tr").first.locator(".badge")
    expect(first_state).to_have_text(re.compile("已立案|已派遣|已结案|已上报"))
    page.set_viewport_size({"width": 1366, "height": 768})
    shot(page, artifacts, "queue-zh")
    page.goto(f"{central.url}/login")
    shot(page, artifacts, "login", full_page=False)
    page.select_option("#lang-select", "en")
    publish_docs_screenshots(artifacts, ["queue", "case", "case-viewer", "cameras", "analytics", "zones",
                                         "queue-tablet", "queue-zh", "login"])


def test_zone_editor_draws_a_parking_zones_bays(sign_in: SignIn, central: RunningCentral) -> None:
    """Bays written in cameras.yaml (one polygon per space) are drawn over the parking zone, not hidden."""
    text = central.zone_file.read_text(encoding="utf-8")
    bays = ("        bays: [[[0.1, 0.6], [0.2, 0.6], [0.2, 0.8], [0.1, 0.8]],\n"
            "               [[0.2, 0.6], [0.3, 0.6], [0.3, 0.8], [0.2, 0.8]]]\n")
    assert text.count("        capacity: 18\n") == 1
    central.zone_file.write_text(text.replace("        capacity: 18\n", bays), encoding="utf-8")
    try:
        assert load_config(central.zone_file)  # still a valid edge config
        page = sign_in("admin", viewport={"width": 1366, "height": 960}, next_path="/zones?camera=cam-carpark-01")
        expect(page.locator("body[data-ready=true]")).to_have_count(1)
        expect(page.locator("#ze-svg polygon.zone-bay")).to_have_count(2)
    finally:  # the module's other tests share this central and its managed file
        central.zone_file.write_text(text, encoding="utf-8")
