#!/usr/bin/env bash
# The test command: installs everything (scripts/setup.sh), lints, then runs the whole suite against
# real components (Mosquitto, PostgreSQL, a GStreamer RTSP server, headless Chromium, real footage).
# Extra arguments go to pytest, e.g.  scripts/test.sh -k rules -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test: ruff"
.venv/bin/ruff check .
echo "test: pytest"
exec .venv/bin/pytest -q -rfEs --durations=15 "$@"
