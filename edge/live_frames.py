"""Live frames: a small, clean (no overlays) JPEG per camera for the dashboard's zone editor and thumbnails.

The worker offers every analysed frame; ``LiveFrames`` lets one through per camera on its first frame and then
every ``mqtt.live_frames.interval_s`` (wall time, whatever the playback speed), scales it down to ``max_width``,
encodes it within ``max_bytes`` and hands the message to the publisher, which sends it retained on
``<prefix>/<edge_id>/cameras/<camera_id>/frame`` (docs/mqtt.md). Frames never enter the durable outbox: they are
best effort and latest-wins, so a broker outage costs at most the frames it spanned.

Message (``gridwatch.frame/1``, checked by central/schemas/frame.v1.json): ``edge_id``, ``camera_id``, ``at``
(capture time, UTC), ``width``, ``height``, ``content_type``, ``bytes``, ``sha256`` and the base64 ``data``, the
same encoding as an incident's inline snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from edge.config import LiveFrameConfig

log = logging.getLogger("gridwatch.edge.live_frames")

SCHEMA_ID = "gridwatch.frame/1"
FALLBACK_QUALITIES = (60, 45, 30)


def encode_frame(image: np.ndarray, cfg: LiveFrameConfig) -> tuple[bytes, int, int] | None:
    """(JPEG bytes, width, height) of ``image`` scaled to ``cfg.max_width``, at the best quality that fits
    ``cfg.max_bytes``; None if even quality 30 does not fit (then nothing is sent)."""
    h, w = image.shape[:2]
    if w > cfg.max_width:
        size = (cfg.max_width, max(1, round(h * cfg.max_width / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    oh, ow = image.shape[:2]
    for q in (cfg.jpeg_quality, *(q for q in FALLBACK_QUALITIES if q < cfg.jpeg_quality)):
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok and len(buf) <= cfg.max_bytes:
            return buf.tobytes(), ow, oh
    return None


def frame_message(edge_id: str, camera_id: str, jpeg: bytes, width: int, height: int, at: float) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID, "edge_id": edge_id, "camera_id": camera_id,
        "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "width": width, "height": height, "content_type": "image/jpeg", "bytes": len(jpeg),
        "sha256": hashlib.sha256(jpeg).hexdigest(), "data": base64.b64encode(jpeg).decode("ascii"),
    }  # fmt: skip


class LiveFrames:
    """Per-camera rate limit and encoding; ``publish(camera_id, message)`` is the publisher's ``publish_frame``."""

    def __init__(self, cfg: LiveFrameConfig, edge_id: str, publish: Callable[[str, dict[str, Any]], None]):
        self.cfg = cfg
        self.edge_id = edge_id
        self.publish = publish
        self._last: dict[str, float] = {}  # camera id → monotonic time of its last published frame
        self.sent = 0
        self.too_big = 0

    def due(self, camera_id: str, now: float | None = None) -> bool:
        if not self.cfg.enabled:
            return False
        last = self._last.get(camera_id)
        return last is None or (time.monotonic() if now is None else now) - last >= self.cfg.interval_s

    def offer(self, camera_id: str, image: np.ndarray, captured_monotonic: float | None = None) -> bool:
        """Publish ``image`` (the decoded frame, before any drawing) if this camera is due. True if one was sent."""
        now = time.monotonic()
        if not self.due(camera_id, now):
            return False
        self._last[camera_id] = now
        encoded = encode_frame(image, self.cfg)
        if encoded is None:
            self.too_big += 1
            log.warning("camera %s: live frame does not fit mqtt.live_frames.max_bytes=%d even at quality %d; "
                        "not sent", camera_id, self.cfg.max_bytes, FALLBACK_QUALITIES[-1])  # fmt: skip
            return False
        jpeg, w, h = encoded
        at = time.time() - (now - captured_monotonic if captured_monotonic is not None else 0.0)
        self.publish(camera_id, frame_message(self.edge_id, camera_id, jpeg, w, h, at))
        self.sent += 1
        return True

    def forget(self, camera_id: str) -> None:
        """A removed or reopened camera: its next frame goes out at once."""
        self._last.pop(camera_id, None)
