#!/usr/bin/python3
"""Serve a video file over RTSP with GStreamer's gst-rtsp-server (test fixture and demo camera).

Run with the system interpreter, which has the gi bindings (the project venv does not):

    RTSP_PASSWORD=pw /usr/bin/python3 tools/rtsp_server.py --file clip.mkv --port 8554 --mount cam1 [--user u]

The file must hold H.264 in Matroska (tests/fixtures/rtsp.py makes one with ffmpeg). Every client gets its
own pipeline from the start of the file (not shared), paced in real time. To "loop", the fixture
serves a file that repeats the clip (ffmpeg -stream_loop, a remux): minutes of stream per connection. Prints ``READY rtsp://127.0.0.1:<port>/<mount>``
on stdout once it listens. With --user, clients must send RTSP basic auth (wrong credentials: 401).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( filesrc location={path} ! matroskademux ! h264parse config-interval=-1 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def _gst_quote(path: str) -> str:
    """A gst-launch string literal (double quotes; the parser keeps single quotes literally)."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mount", default="cam")
    ap.add_argument("--user", default=None)
    args = ap.parse_args()
    if not os.path.isfile(args.file):
        print(f"ERROR file not found: {args.file}", flush=True)
        return 2

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(path=_gst_quote(os.path.abspath(args.file))))
    factory.set_shared(False)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, os.environ.get("RTSP_PASSWORD", "")), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(f"/{args.mount}", factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 3
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}/{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
