"""Shared pytest set-up. Fixtures that start real services live in tests/fixtures/ (one module each)."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.rtsp",
    "tests.fixtures.mqtt",
    "tests.fixtures.postgres",
    "tests.fixtures.central",
]
