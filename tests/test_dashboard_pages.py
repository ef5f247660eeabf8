"""Dashboard shells and static files: every page renders under the strict CSP (no inline script or style, nothing
from another origin), every referenced asset is served, and both label files cover every key the UI uses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from central.db import upgrade
from tests.test_api_support import ApiEnv, make_api

WEB = Path(__file__).resolve().parents[1] / "central" / "web"
PAGES = ["/login", "/queue", "/cases/1", "/cameras", "/analytics", "/zones"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ApiEnv]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    e = make_api(url, tmp_path, web=True)
    with e.client:
        yield e


class Shell(HTMLParser):
    """Collects what the CSP cares about: scripts, stylesheets, inline styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.inline_script = False
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "link" and a.get("href"):
            self.links.append(a["href"] or "")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_without_inline_code_under_csp(env: ApiEnv, path: str) -> None:
    r = env.client.get(path)  # shells carry no data, so they need no token
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "http" not in csp
    shell = Shell()
    shell.feed(r.text)
    assert shell.problems == [] and not shell.inline_script
    assert shell.scripts and all(s.get("type") == "module" and (s.get("src") or "").startswith("/static/")
                                 for s in shell.scripts)
    for asset in [s["src"] for s in shell.scripts] + shell.links:
        assert asset.startswith("/static/"), asset
        assert env.client.get(asset).status_code == 200, asset
    assert "set-cookie" not in r.headers


def test_root_redirects_to_queue(env: ApiEnv) -> None:
    r = env.client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/queue"


def _static_files(suffix: str) -> list[Path]:
    return sorted((WEB / "static").rglob(f"*{suffix}"))


def test_every_js_import_resolves_and_nothing_leaves_the_origin() -> None:
    js = _static_files(".js")
    assert len(js) >= 10
    for f in js:
        text = f.read_text(encoding="utf-8")
        for spec in re.findall(r"""^import .* from '([^']+)';""", text, flags=re.M):
            assert spec.startswith("."), f"{f.name}: bare import {spec}"
            assert (f.parent / spec).resolve().is_file(), f"{f.name}: {spec} does not exist"
        # no innerHTML/outerHTML/document.write: user data is only ever set as text
        assert not re.search(r"innerHTML|outerHTML|document\.write|insertAdjacentHTML|eval\(", text), f.name
        assert not re.search(r"\.style\s*=|setAttribute\('style'", text), f"{f.name} sets inline style text"
    for f in [*js, *_static_files(".css"), *(WEB / "templates").glob("*.html")]:
        text = f.read_text(encoding="utf-8")
        # http://www.w3.org/2000/svg is an XML namespace name, not a request
        urls = [u for u in re.findall(r"https?://[^\s'\"`)]+", text) if not u.startswith("http://www.w3.org/")]
        assert urls == [], f"{f.name} references {urls}"


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for f in (WEB / "templates").glob("*.html"):
        keys |= set(re.findall(r'data-i18n(?:-placeholder|-title)?="([^"]+)"', f.read_text(encoding="utf-8")))
    for f in _static_files(".js"):
        keys |= set(re.findall(r"""\bt\('([a-z_]+\.[a-zA-Z0-9_.]+)'""", f.read_text(encoding="utf-8")))
    return keys


def test_label_files_cover_every_key_in_both_languages() -> None:
    en = json.loads((WEB / "static" / "i18n" / "en.json").read_text(encoding="utf-8"))
    zh = json.loads((WEB / "static" / "i18n" / "zh-CN.json").read_text(encoding="utf-8"))
    assert set(en) == set(zh), set(en) ^ set(zh)
    used = _used_keys()
    assert len(used) > 100
    assert used - set(en) == set()
    # keys built from data: every workflow state and action, role, and the zone types have labels
    from central.auth import ROLES
    from central.workflow import ACTIONS, STATES

    for s in STATES:
        assert f"state.{s}" in en
    for a in ACTIONS:
        assert f"action.{a}" in en
    for role in ROLES:
        assert f"role.{role}" in en
    for k, v in zh.items():
        assert v.strip(), k
        placeholders_en = set(re.findall(r"\{(\w+)\}", en[k]))
        assert set(re.findall(r"\{(\w+)\}", v)) == placeholders_en, k
