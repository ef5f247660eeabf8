"""Frame sources for the edge worker: RTSP, http(s) MJPEG, files and devices.

from edge.sources import Frame, CameraHealth, CameraSource, open_source
"""

from __future__ import annotations

from edge.config import CameraConfig
from edge.sources.camera import CameraSource
from edge.sources.capture import CaptureError
from edge.sources.frame import Frame
from edge.sources.health import CameraHealth, CameraState

__all__ = ["CameraHealth", "CameraSource", "CameraState", "CaptureError", "Frame", "open_source"]


def open_source(camera: CameraConfig, *, start_epoch: float | None = None) -> CameraSource:
    """Create and start a CameraSource (never raises for an unreachable camera)."""
    source = CameraSource(camera, start_epoch=start_epoch)
    source.start()
    return source
