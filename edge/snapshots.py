"""Evidence JPEGs: the frame with the incident's zone and subject drawn, bounded in width and bytes.

A vending stall's snapshot also boxes and labels each of its parts: its goods or equipment (``GOODS_COLOR``)
and the persons staying at them (``PERSON_COLOR``), inside the stall's own box (``HIGHLIGHT_COLOR``), drawn a
little outside them so every part's edges stay visible. A crowd snapshot marks the densest ground cell.

Rendering happens only for events with ``needs_snapshot`` (an incident opening), on the worker's
evidence thread, never in the detection loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from edge.annotate import HIGHLIGHT_COLOR, draw_label, draw_zones
from edge.config import CameraConfig, SnapshotConfig

MIN_QUALITY = 35
GOODS_COLOR = (255, 0, 255)  # BGR magenta: a stall's goods and equipment
PERSON_COLOR = (255, 200, 0)  # BGR light blue: the persons at a stall


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
    tz: ZoneInfo | None = None,
    at: float | None = None,
    box_px: tuple[float, float, float, float] | None = None,
    caption: str | None = None,
) -> bytes:
    """JPEG of the frame with the event's zone (translucent, labelled) and subject box highlighted, the time
    burnt in (``at``, default the event's time, in ``tz``, default UTC).

    ``camera`` is accepted for the caller's convenience (the zone comes from the event itself);
    ``zone_polygon_px`` overrides the zone outline, e.g. when the frame was resized; ``box_px`` and
    ``caption`` override the subject's box and label (the arrival photograph shows the box of that moment).
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
        parts = event.subject.parts if box_px is None else ()  # parts are boxes of the event's own frame
        margin = 2 * thick + 2 if parts else 0  # the stall's box around its parts, not on their edges
        x1, y1, x2, y2 = box_px or event.subject.box_px
        _box(out, (x1 * sx - margin, y1 * sy - margin, x2 * sx + margin, y2 * sy + margin),
             caption or subject_caption(event, tz), HIGHLIGHT_COLOR, thick)
        for part in parts:
            bx1, by1, bx2, by2 = part.box_px
            _box(out, (bx1 * sx, by1 * sy, bx2 * sx, by2 * sy), part_caption(part),
                 GOODS_COLOR if part.role == "goods" else PERSON_COLOR, thick)
    elif event.crowd is not None:
        c = event.crowd
        peak = c.get("peak_density")
        text = f"{c['count']} persons  {c['density']:.3f}/m2" + (f"  peak {peak:.3f}/m2" if peak is not None else "")
        draw_label(out, f"{text}  {c['level']}", (8, 28), HIGHLIGHT_COLOR)
        cell = c.get("peak_cell")
        if peak is not None and cell and cell.get("center"):
            centre = (int(cell["center"][0] * w), int(cell["center"][1] * h))  # normalized: any frame size
            cv2.drawMarker(out, centre, HIGHLIGHT_COLOR, cv2.MARKER_CROSS, 6 * thick, thick, cv2.LINE_AA)
            draw_label(out, f"peak {peak:.2f}/m2", (centre[0] + 3 * thick, centre[1] - 3 * thick), HIGHLIGHT_COLOR)
    title = f"{event.type}  {event.context.camera['id']}  {zone.name}"
    draw_label(out, title, (8, h - 8), (30, 30, 30))
    stamp = clock_text(event.emitted_at if at is None else at, tz, with_date=True)
    draw_label(out, stamp, (w, 22), (30, 30, 30))  # kept inside the frame: top right
    return encode_jpeg(out, quality=cfg.jpeg_quality, max_width=cfg.max_width, max_bytes=cfg.max_bytes)


def _box(image: np.ndarray, box: tuple[float, float, float, float], text: str, color: tuple[int, int, int],
         thick: int) -> None:
    """One labelled box, in place (pixel coordinates of ``image``)."""
    p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
    cv2.rectangle(image, p1, p2, color, thick, cv2.LINE_AA)
    draw_label(image, text, (p1[0], p1[1] - 4), color)


def part_caption(part) -> str:  # part: edge.incidents.SubjectPart
    """'umbrella 0.71' or 'person #12'."""
    return f"{part.cls} #{part.track_id}" if part.track_id >= 0 else f"{part.cls} {part.confidence:.2f}"


def clock_text(ts: float, tz: ZoneInfo | None, *, with_date: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, tz or UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z" if with_date else "%H:%M:%S")


def subject_caption(event, tz: ZoneInfo | None) -> str:  # event: edge.incidents.IncidentEvent
    """'car  #3,7  stopped 15:24:03  125 s': class, track ids (when the tracker held it), arrival, dwell."""
    s = event.subject
    parts = [s.cls]
    if s.track_ids:
        parts.append("#" + ",".join(str(t) for t in s.track_ids[-3:]))
    if s.arrived_at is not None:
        parts.append(f"stopped {clock_text(s.arrived_at, tz)}")
    parts.append(f"{event.dwell_s:.0f} s")
    return "  ".join(parts)


def render_closeup(image: np.ndarray, event, config: SnapshotConfig | None = None, min_width: int = 320) -> bytes:
    """The subject cropped from the frame with a margin and enlarged (plate region readable where the camera
    allows it)."""
    cfg = config or SnapshotConfig()
    h, w = image.shape[:2]
    fw, fh = event.frame_size
    x1, y1, x2, y2 = event.subject.box_px
    x1, x2 = x1 * w / max(fw, 1), x2 * w / max(fw, 1)
    y1, y2 = y1 * h / max(fh, 1), y2 * h / max(fh, 1)
    mx, my = (x2 - x1) * 0.2, (y2 - y1) * 0.2
    crop = image[max(0, int(y1 - my)):min(h, int(y2 + my)) + 1, max(0, int(x1 - mx)):min(w, int(x2 + mx)) + 1]
    if crop.size == 0:
        raise ValueError("subject box is outside the frame")
    scale = max(1.0, min_width / crop.shape[1])
    if scale > 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return encode_jpeg(crop, quality=cfg.jpeg_quality, max_width=cfg.max_width, max_bytes=cfg.max_bytes)


def render_all(
    image: np.ndarray, event, camera: CameraConfig | None, config: SnapshotConfig, tz: ZoneInfo | None
) -> tuple[bytes, list[tuple[str, float, bytes]]]:
    """The snapshot and the extra photographs of an opening event: arrival (if the rule kept one) and close-up."""
    snapshot = render_evidence(image, event, camera, config, tz=tz)
    extra: list[tuple[str, float, bytes]] = []
    for frame in getattr(event, "evidence", ()):
        caption = f"{event.subject.cls}  arrived {clock_text(frame.at, tz)}" if event.subject else None
        extra.append((frame.kind, frame.at, render_evidence(frame.image, event, camera, config, tz=tz, at=frame.at,
                                                            box_px=frame.box_px, caption=caption)))
    if event.type == "illegal_parking" and event.subject is not None:
        extra.append(("closeup", event.emitted_at, render_closeup(image, event, config)))
    return snapshot, extra
