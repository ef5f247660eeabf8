"""Fixtures for the browser tests: one real Mosquitto + one real central (uvicorn, MQTT ingest, seeded data) and one
headless Chromium per module, and a ``sign_in(role)`` helper that goes through the real sign-in page.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright; it is never downloaded by Playwright. If it is
missing, the fixture installs the Debian package first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.central_server import RunningCentral, seed_demo, start_central
from tests.fixtures.mqtt import MosquittoBroker, ensure_mosquitto

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard"
DESKTOP = {"width": 1366, "height": 768}


def ensure_chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
    done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium is not installed and apt-get install failed: {done.stderr[-500:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"), binary=ensure_mosquitto())
    b.start()
    yield b
    b.kill()


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, broker: MosquittoBroker) -> Iterator[RunningCentral]:
    rc = start_central(tmp_path_factory.mktemp("central"), broker.host, broker.port)
    seed_demo(rc)
    yield rc
    rc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def sign_in(browser: Browser, central: RunningCentral) -> Iterator[Callable[..., Page]]:
    """``sign_in(role, viewport=DESKTOP)`` → a Page signed in through /login (a fresh context: its own tab storage).

    Console errors and uncaught exceptions of every page fail the test at teardown."""
    contexts = []
    errors: list[str] = []

    def make(role: str, viewport: dict[str, int] | None = None, next_path: str = "/queue") -> Page:
        ctx = browser.new_context(viewport=viewport or DESKTOP, locale="en-US", timezone_id="Asia/Shanghai")
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(5000)
        page.on("pageerror", lambda e: errors.append(f"{role}: {e}"))
        page.on("console", lambda m: errors.append(f"{role}: {m.text}") if m.type == "error" else None)
        page.goto(f"{central.url}/login?next={urllib.parse.quote(next_path)}")
        page.fill("#token", central.tokens[role])
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{central.url}{next_path}")
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    # Forged or anonymous requests answered 401/403 are logged by Chromium as failed loads; those are expected.
    unexpected = [e for e in errors if "status of 401" not in e and "status of 403" not in e]
    assert unexpected == [], unexpected


def shot(page: Page, artifacts: Path, name: str, *, full_page: bool = True) -> Path:
    path = artifacts / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the top bar is sticky: keep it at the top of a full-page shot
    page.wait_for_timeout(300)  # evidence images arrive as blobs after the rows; let them paint
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    page.screenshot(path=str(path), full_page=full_page)
    return path


def publish_docs_screenshots(artifacts: Path, names: list[str]) -> None:
    """Copy the run's screenshots into docs/ only when asked (GRIDWATCH_UPDATE_SCREENSHOTS=1), so a test
    run never dirties the work tree; the artifacts stay in test-artifacts/ either way."""
    if os.environ.get("GRIDWATCH_UPDATE_SCREENSHOTS") != "1":
        return
    docs = REPO_ROOT / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = artifacts / f"{name}.png"
        if src.exists():
            shutil.copy(src, docs / src.name)
