"""Object detectors for the edge worker. Most code needs only ``build_detector(cfg)`` and ``Detector``."""

from edge.detectors.base import BaseDetector, Detector, DetectorError
from edge.detectors.factory import ConfiguredDetector, build_detector
from edge.detectors.postprocess import OutputLayoutError

__all__ = ["BaseDetector", "ConfiguredDetector", "Detector", "DetectorError", "OutputLayoutError", "build_detector"]
