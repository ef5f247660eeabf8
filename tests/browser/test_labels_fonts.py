"""Chinese glyphs really render (a CJK font is installed and used), and the dashboard shows central.yaml's labels
instead of codes: department, squad, camera and zone names, a squad picker fed by the configured squads. The cameras
page shows analysed against asked detect fps, the decode rate, the last analysed frame, and "unknown" for cameras of
an edge that went offline.

Tofu (the empty boxes drawn when no font has a glyph) is detected three ways: Chromium's own record of the platform
font that rendered a node (DevTools ``CSS.getPlatformFontsForNode``), canvas pixels (tofu boxes of different
characters are identical; real glyphs differ, and differ from the boxes drawn for unassigned code points), and
a non-zero rendered width of the label in the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from central.ingest import IngestService
from tests.browser.central_server import SQUADS, RunningCentral
from tests.browser.conftest import shot
from tests.central_support import encode

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SignIn = Callable[..., Page]

# Draws each string on a canvas in the page's own font stack; returns widths, ink and a pixel digest per string.
CANVAS_PROBE = """(strings) => {
  const font = `32px ${getComputedStyle(document.body).fontFamily}`;
  const c = document.createElement('canvas');
  c.width = 400; c.height = 60;
  const g = c.getContext('2d', { willReadFrequently: true });
  return strings.map((s) => {
    g.clearRect(0, 0, c.width, c.height);
    g.font = font; g.fillStyle = '#000'; g.textBaseline = 'top';
    g.fillText(s, 4, 8);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let ink = 0; let hash = 0;
    for (let i = 3; i < px.length; i += 4) { if (px[i]) ink += 1; hash = (hash * 31 + px[i]) >>> 0; }
    return { text: s, width: g.measureText(s).width, ink, hash };
  });
}"""


def _platform_fonts(page: Page, selector: str) -> list[str]:
    """The fonts Chromium actually used to draw the text of the first node matching ``selector``."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        return [f["familyName"] for f in fonts if f["glyphCount"] > 0]
    finally:
        cdp.detach()


def _chinese(page: Page) -> None:
    page.select_option("#lang-select", "zh-CN")
    expect(page.locator('[data-nav="queue"]')).to_have_text("案件队列")


def test_chinese_glyphs_render_with_a_cjk_font(sign_in: SignIn, central: RunningCentral, artifacts: Path) -> None:
    page = sign_in("viewer")
    _chinese(page)
    expect(page.locator("#queue-body tr").first).to_be_visible()

    fonts = _platform_fonts(page, '[data-nav="queue"]')
    assert any("CJK" in f or "WenQuanYi" in f or "Hei" in f for f in fonts), (
        f"the Chinese nav label is drawn with {fonts}: no CJK font (scripts/setup.sh installs fonts-noto-cjk)")

    label, other = "案件队列", "派出所长"
    tofu = "\u0378\u0379\u0380\u0381"  # unassigned code points: always drawn as .notdef boxes
    probe = {r["text"]: r for r in page.evaluate(CANVAS_PROBE, [label, other, "案", "件", tofu])}
    assert probe[label]["width"] > 0 and probe[label]["ink"] > 0
    # not four .notdef boxes: with no CJK font the label and the unassigned code points draw the same pixels
    # (a CJK font's box is also 1 em wide, so width alone cannot tell; the pixels can)
    assert probe[label]["hash"] != probe[tofu]["hash"] and probe[label]["ink"] != probe[tofu]["ink"], probe
    assert probe["案"]["hash"] != probe["件"]["hash"], "two different characters draw the same box: tofu"
    assert probe[label]["hash"] != probe[other]["hash"]

    # the label as laid out in the page has a real width too
    box = page.locator('[data-nav="queue"]').bounding_box()
    assert box is not None and box["width"] > 20
    shot(page, artifacts, "queue-zh-glyphs", full_page=False)
    page.select_option("#lang-select", "en")


def test_labels_from_central_yaml_replace_codes(sign_in: SignIn, central: RunningCentral, artifacts: Path) -> None:
    case_id = central.case_ids["cam-intersection-01/junction-lanes"]
    page = sign_in("dispatcher", next_path=f"/cases/{case_id}")
    facts = page.locator("#case-facts")
    expect(facts).to_contain_text("Hubin Rd junction")  # camera display name, not cam-intersection-01
    expect(facts).to_contain_text("Junction box")  # zone display name, not junction-lanes
    expect(facts).to_contain_text("Traffic police")  # department name, not traffic_police
    expect(facts).to_contain_text("Traffic squad 1")  # squad name, not traffic-squad-1
    assert "traffic_police" not in facts.inner_text()

    # dispatch offers a picker of the configured squads, the case's squad preselected
    state = page.locator("#case-state").inner_text()
    if "dispatch" in [b.get_attribute("data-action") for b in page.locator("#action-buttons button").all()]:
        page.click('#action-buttons button[data-action="dispatch"]')
        picker = page.locator("select#in-squad")
        expect(picker).to_be_visible()
        values = [o.get_attribute("value") for o in picker.locator("option").all()]
        assert values == ["", *[code for code, *_ in SQUADS]], values
        assert picker.input_value() == "traffic-squad-1"
        expect(picker.locator('option[value="traffic-squad-3"]')).to_have_text("Traffic squad 3")
        page.click("#action-cancel")
    else:  # another test moved the case on already
        assert state

    page.goto(f"{central.url}/queue")
    row = page.locator(f'tr[data-case-id="{case_id}"]')
    expect(row).to_contain_text("Junction box")
    _chinese(page)
    row = page.locator(f'tr[data-case-id="{case_id}"]')
    expect(row).to_contain_text("路口网格线区")  # the zone's Chinese display name
    expect(row.locator("td[data-squad]")).to_have_text("交警一中队")
    plaza = page.locator(f'tr[data-case-id="{central.case_ids["cam-plaza-01/plaza-floor"]}"]')
    expect(plaza).to_contain_text("广场地面")  # a "camera/zone" key
    shot(page, artifacts, "queue-zh-labels", full_page=False)

    page.goto(f"{central.url}/cameras")
    card = page.locator('article[data-camera-id="cam-intersection-01"]')
    expect(card.locator(".cam-title strong")).to_have_text("湖滨路路口")
    page.select_option("#lang-select", "en")


def test_cameras_page_shows_analysed_against_asked_and_unknown_when_the_edge_is_offline(
    sign_in: SignIn, central: RunningCentral, artifacts: Path
) -> None:
    sf = central.app.state.session_factory
    ingest = IngestService(sf, central.config, store=central.app.state.store, bus=central.app.state.bus)
    edge, now = "edge-truth", datetime.now(UTC)
    topic = f"gridwatch/v1/{edge}"
    ingest.handle(f"{topic}/status", encode({"edge_id": edge, "state": "online", "at": now.isoformat()}))
    ingest.handle(f"{topic}/heartbeat", encode({"edge_id": edge, "at": now.isoformat(), "cameras": [{
        "camera_id": "cam-truth-01", "name": "Truth St", "state": "online", "input_fps": 29.6, "decode_fps": 29.6,
        "detect_fps": 1.0, "analysed_fps": 0.2, "last_analysed_at": now.timestamp() - 2,
        "last_frame_at": now.timestamp(),
        "grid_cell": "310101-004-09", "address": "Truth St 1", "reconnects": 0,
    }]}))
    page = sign_in("viewer", next_path="/cameras")
    card = page.locator('article[data-camera-id="cam-truth-01"]')
    expect(card).to_have_class(re.compile(r"\bonline\b"))
    expect(card).to_contain_text("310101-004-09")  # grid cell from the edge's heartbeat: no incident yet
    detect = card.locator('[data-stat="detect"]')
    expect(detect).to_contain_text("0.20 / 1.0")
    expect(detect).to_have_class(re.compile(r"\bwarn\b"))  # analysing a fifth of what was asked
    expect(card).to_contain_text("29.6")  # decode fps, separately
    expect(card).to_contain_text(re.compile(r"\d+ seconds? ago|now"))  # last analysed frame, not the heartbeat age

    ingest.handle(f"{topic}/status", encode({"edge_id": edge, "state": "offline",
                                             "at": datetime.now(UTC).isoformat()}))
    expect(card).to_have_class(re.compile(r"\bunknown\b"), timeout=5000)  # live, over the event stream
    expect(card.locator(".cam-status")).to_have_text("Unknown (edge offline)")
    assert card.get_attribute("data-status") == "unknown"
    shot(page, artifacts, "cameras-truth")
