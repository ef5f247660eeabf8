"""Evidence JPEGs: the frame with the incident's zone and subject drawn, bounded in width and bytes.

Rendering happens only for events with ``needs_snapshot`` (an incident opening), on the worker's
evidence thread, never in the detection loop.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.annotate import HIGHLIGHT_COLOR, draw_label, draw_zones
from edge.config import CameraConfig, SnapshotConfig

MIN_QUALITY = 35


class SnapshotTooLarge(ValueError):
    """Even the smallest allowed encoding exceeds max_bytes."""


def encode_jpeg(image: np.ndarray, *, quality: int = 80, max_width: int = 1280, max_bytes: int = 400_000) -> bytes:
    """Downscale to ``max_width``, then lower quality (and finally size) until the JPEG fits ``max_bytes``."""
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    q = int(quality)
    for _ in range(12):
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise ValueError("JPEG encoding failed")
        if len(buf) <= max_bytes:
            return buf.tobytes()
        if q > MIN_QUALITY:
            q = max(MIN_QUALITY, q - 15)
        else:  # quality floor reached: shrink
            h, w = image.shape[:2]
            if w <= 160:
                break
            image = cv2.resize(image, (max(160, int(w * 0.75)), max(1, int(h * 0.75))), interpolation=cv2.INTER_AREA)
    raise SnapshotTooLarge(f"cannot encode a JPEG under {max_bytes} bytes")


def render_evidence(
    image: np.ndarray,
    event,  # edge.incidents.IncidentEvent
    camera: CameraConfig | None = None,
    config: SnapshotConfig | None = None,
    *,
    zone_polygon_px: np.ndarray | None = None,
) -> bytes:
    """JPEG of the frame with the event's zone (translucent, labelled) and subject box highlighted.

    ``camera`` is accepted for the caller's convenience (the zone comes from the event itself);
    ``zone_polygon_px`` overrides the zone outline, e.g. when the frame was resized.
    """
    cfg = config or SnapshotConfig()
    h, w = image.shape[:2]
    zone = event.zone
    if zone_polygon_px is not None:
        zone = zone.model_copy(update={"points": [(float(x) / w, float(y) / h) for x, y in zone_polygon_px]})
    out = draw_zones(image, [zone], alpha=0.25, highlight=zone.name)
    fw, fh = event.frame_size
    sx, sy = w / max(fw, 1), h / max(fh, 1)  # event coordinates are in the frame the rules saw
    thick = max(2, int(min(w, h) / 240))
    if event.subject is not None:
        x1, y1, x2, y2 = event.subject.box_px
        p1, p2 = (int(x1 * sx), int(y1 * sy)), (int(x2 * sx), int(y2 * sy))
        cv2.rectangle(out, p1, p2, HIGHLIGHT_COLOR, thick, cv2.LINE_AA)
        ids = ",".join(str(t) for t in event.subject.track_ids[-3:])
        draw_label(out, f"{event.subject.cls} #{ids} {event.dwell_s:.0f}s", (p1[0], p1[1] - 4), HIGHLIGHT_COLOR)
    elif event.crowd is not None:
        c = event.crowd
        draw_label(out, f"{c['count']} persons  {c['density']:.3f}/m2  {c['level']}", (8, 28), HIGHLIGHT_COLOR)
    title = f"{event.type}  {event.context.camera['id']}  {zone.name}"
    draw_label(out, title, (8, h - 8), (30, 30, 30))
    return encode_jpeg(out, quality=cfg.jpeg_quality, max_width=cfg.max_width, max_bytes=cfg.max_bytes)
