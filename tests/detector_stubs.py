"""Detector stand-ins for tests where the frame path, not detection, is under test."""

from __future__ import annotations

from edge.detections import Detections


class NoBoxes:
    """A detector (the ``detect_batch`` interface the edge worker calls) that finds nothing in any image."""

    name, version = "none", "0"
    last_timings: dict[str, float] = {}

    def detect_batch(self, images: list, tilings: list | None = None, class_maps: list | None = None) -> list:
        return [Detections.empty() for _ in images]
