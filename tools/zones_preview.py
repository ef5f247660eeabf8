"""Draw every zone of one camera on a real frame, so operators can tune polygons.

    python tools/zones_preview.py --config cameras.yaml --camera cam-intersection-01 --out var/preview.png
    python tools/zones_preview.py --config cameras.yaml --camera cam-plaza-01 --at 5 --out var/plaza.png
    python tools/zones_preview.py --config cameras.yaml --camera cam-x --image still.jpg --out var/x.png

The frame comes from the camera's url (RTSP, HTTP MJPEG, file or device) unless --url or --image is given;
--at seeks that many seconds into a file (for a live stream it reads and discards frames for that long).
Zones are filled translucent in their type's colour and labelled "name (type)".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.annotate import draw_zones  # noqa: E402
from edge.config import ConfigError, is_local_path, load_config  # noqa: E402
from edge.redact import mask_url  # noqa: E402


class PreviewError(RuntimeError):
    pass


def grab_frame(url: str, at_s: float = 0.0, timeout_s: float = 15.0) -> np.ndarray:
    """One BGR frame from ``url`` (file, rtsp://, http(s)://, device index), ``at_s`` seconds in."""
    # RTSP: OpenCV asks for TCP transport by default (rtsp_flags=prefer_tcp)
    source: str | int = int(url) if url.isdigit() else url
    if is_local_path(url) and not Path(url).exists():
        raise PreviewError(f"file not found: {url}")
    cap = cv2.VideoCapture(source)
    try:
        if not cap.isOpened():
            raise PreviewError(f"cannot open {mask_url(url)}")
        live = not is_local_path(url)
        if at_s > 0 and not live:
            cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000.0)
        deadline = time.monotonic() + timeout_s + (at_s if live else 0)
        skip_until = time.monotonic() + at_s if live else 0.0
        while time.monotonic() < deadline:
            ok, frame = cap.read()
            if not ok:
                break
            if live and time.monotonic() < skip_until:
                continue
            return frame
        where = f" at {at_s:g} s" if at_s else ""
        raise PreviewError(f"no frame from {mask_url(url)}{where} (past the end, or the stream sent nothing)")
    finally:
        cap.release()


def render_preview(image: np.ndarray, zones, alpha: float = 0.35) -> np.ndarray:  # type: ignore[no-untyped-def]
    return draw_zones(image, list(zones), alpha=alpha)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, type=Path, help="cameras.yaml")
    ap.add_argument("--camera", required=True, help="camera id")
    ap.add_argument("--out", required=True, type=Path, help="output PNG path")
    ap.add_argument("--at", type=float, default=0.0, help="seconds into the file / stream (default 0)")
    ap.add_argument("--url", help="read from this url instead of the camera's")
    ap.add_argument("--image", type=Path, help="draw on this still image instead of grabbing a frame")
    ap.add_argument("--alpha", type=float, default=0.35, help="zone fill opacity 0..1")
    args = ap.parse_args(argv)

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    cams = {c.id: c for c in cfg.cameras}
    cam = cams.get(args.camera)
    if cam is None:
        print(f"{args.config}: no camera {args.camera!r}; cameras: {', '.join(cams)}", file=sys.stderr)
        return 2
    try:
        if args.image:
            image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
            if image is None:
                raise PreviewError(f"cannot read image {args.image}")
        else:
            image = grab_frame(args.url or cam.url, args.at)
    except PreviewError as e:
        print(f"camera {cam.id}: {e}", file=sys.stderr)
        return 1
    out = render_preview(image, cam.zones, args.alpha)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), out):
        print(f"cannot write {args.out}", file=sys.stderr)
        return 1
    h, w = image.shape[:2]
    names = ", ".join(f"{z.name} ({z.type})" for z in cam.zones) or "no zones"
    print(f"{args.out}: {w}x{h} frame of {cam.id} from {mask_url(args.url or cam.url)}; {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
