#!/usr/bin/env bash
# Installs everything GridWatch needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (FFmpeg, Mosquitto, PostgreSQL, GStreamer RTSP server, Chromium, a CJK font) and a .venv
# with the project and its test extras. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have ffmpeg || need_apt+=(ffmpeg)
have mosquitto || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
have pg_ctlcluster || need_apt+=(postgresql)
have chromium || need_apt+=(chromium chromium-driver)
# a CJK font, or Chinese labels render as empty boxes in the dashboard (and its screenshots)
{ have fc-list && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; } || need_apt+=(fontconfig fonts-noto-cjk)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' \
  >/dev/null 2>&1 || need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
                                gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.gridwatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
echo "setup: ready"
