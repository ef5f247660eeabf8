"""Drawing: zones filled translucent with a label, detection boxes with class and track id.

Used by evidence snapshots (edge.snapshots), the worker's annotated frames and tools/zones_preview.py.
Everything returns a new image; the input frame is never modified (it may be shared with other threads).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import ZoneConfig
from edge.detections import Detections

# BGR colours per zone type; unknown types fall back to grey.
ZONE_COLORS: dict[str, tuple[int, int, int]] = {
    "no_parking": (40, 40, 230),  # red
    "no_vending": (0, 165, 255),  # orange
    "crowd": (230, 160, 40),  # blue
    "parking": (90, 200, 60),  # green: legal bays
}
BOX_COLOR = (60, 220, 60)
HIGHLIGHT_COLOR = (0, 0, 255)


def zone_color(zone_type: str) -> tuple[int, int, int]:
    return ZONE_COLORS.get(str(zone_type), (160, 160, 160))


def _scale(image: np.ndarray) -> float:
    return max(0.4, min(image.shape[0], image.shape[1]) / 720)


def draw_label(image: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int],
               scale: float | None = None) -> None:
    """Text on a filled background box, kept inside the image. Draws in place."""
    s = scale or _scale(image)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(s * 1.5)))
    (tw, th), base = cv2.getTextSize(text, font, 0.5 * s, thick)
    h, w = image.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 4, 0)))
    y = int(min(max(org[1], th + 4), h - base - 1))
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + base), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    fg = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 2, y - 2), font, 0.5 * s, fg, thick, cv2.LINE_AA)


def draw_zones(image: np.ndarray, zones: list[ZoneConfig], *, alpha: float = 0.3, labels: bool = True,
               highlight: str | None = None) -> np.ndarray:
    """Return a copy with each zone filled translucent, outlined and labelled 'name (type)'."""
    out = image.copy()
    if not zones:
        return out
    h, w = image.shape[:2]
    overlay = image.copy()
    polys = []
    for z in zones:
        pts = np.round(np.asarray(z.points, dtype=np.float64) * [w, h]).astype(np.int32)
        polys.append(pts)
        cv2.fillPoly(overlay, [pts], zone_color(z.type))
    cv2.addWeighted(overlay, alpha, out, 1 - alpha, 0, dst=out)
    for z, pts in zip(zones, polys, strict=True):
        thick = max(2, int(_scale(image) * 2)) * (2 if highlight == z.name else 1)
        cv2.polylines(out, [pts], True, zone_color(z.type), thick, cv2.LINE_AA)
        if labels:
            top = pts[np.argmin(pts[:, 1] * 10_000 + pts[:, 0])]
            state = "" if z.enabled else ", disabled"
            draw_label(out, f"{z.name} ({z.type}{state})", (int(top[0]) + 2, int(top[1]) + 22), zone_color(z.type))
    return out


def draw_boxes(image: np.ndarray, detections: Detections, *, color: tuple[int, int, int] = BOX_COLOR,
               in_place: bool = False) -> np.ndarray:
    """Boxes labelled 'class #track score'."""
    out = image if in_place else image.copy()
    thick = max(1, int(_scale(image) * 2))
    for (x1, y1, x2, y2), name, score, tid in zip(
        detections.xyxy, detections.class_names, detections.scores, detections.track_ids, strict=True
    ):
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, color, thick, cv2.LINE_AA)
        tag = f"{name} #{int(tid)}" if tid >= 0 else str(name)
        draw_label(out, f"{tag} {score:.2f}", (p1[0], p1[1] - 2), color, _scale(image) * 0.8)
    return out


def draw_frame(image: np.ndarray, detections: Detections | None, zones: list[ZoneConfig], *,
               alpha: float = 0.3) -> np.ndarray:
    """Zones (translucent, labelled) plus every detection box with its class and track id."""
    out = draw_zones(image, zones, alpha=alpha)
    if detections is not None and len(detections):
        draw_boxes(out, detections, in_place=True)
    return out
