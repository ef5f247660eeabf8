"""The Detector interface every backend implements: BGR frames in, ``Detections`` out."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import numpy as np

from edge.detections import Detections


class DetectorError(RuntimeError):
    """A detector could not be built or run (missing model file, bad model, bad input)."""


@runtime_checkable
class Detector(Protocol):
    """Frames in (OpenCV BGR uint8, HxWx3; grey HxW is accepted), Detections out in source-image pixels.

    ``last_timings`` holds milliseconds of the last ``detect``/``detect_batch`` call per stage
    (``preprocess``, ``inference``, ``postprocess``) for the whole batch; benchmarks read it.
    """

    name: str
    version: str
    class_names: list[str]
    last_timings: dict[str, float]

    def detect(self, image: np.ndarray) -> Detections: ...

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]: ...


class BaseDetector(ABC):
    """Shared plumbing: input checks, ``detect`` via ``detect_batch``, stage timings."""

    name: str
    version: str
    class_names: list[str]

    def __init__(self) -> None:
        self.last_timings: dict[str, float] = {}

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            self.last_timings = {}
            return []
        images = [as_bgr(img, i) for i, img in enumerate(images)]
        self.last_timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        return self._detect_batch(images)

    @abstractmethod
    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Backend work on validated BGR images; add stage times with ``self._timed``."""

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.last_timings[stage] = self.last_timings.get(stage, 0.0) + (time.perf_counter() - t0) * 1000


def as_bgr(image: np.ndarray, index: int = 0) -> np.ndarray:
    """Validate one input frame; grey and BGRA frames are converted. Raises DetectorError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise DetectorError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise DetectorError(f"image {index}: expected dtype uint8 (OpenCV BGR frame), got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DetectorError(f"image {index}: expected shape HxWx3 (BGR), got {list(image.shape)}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise DetectorError(f"image {index}: image is empty ({list(image.shape)})")
    return image[:, :, :3] if image.shape[2] == 4 else image
