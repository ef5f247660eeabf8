"""Bounded per-stage timing windows: median / p95 without keeping unbounded history."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np


class StageStats:
    """Keeps the last ``window`` samples (ms) of each named stage; safe to call from several threads."""

    def __init__(self, window: int = 2000):
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # called with (stage, ms) for every sample, e.g. the edge's Prometheus histograms (edge.metrics)
        self.observers: list[Callable[[str, float], None]] = []

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            if stage not in self._samples:
                self._samples[stage] = deque(maxlen=self._window)
                self._counts[stage] = 0
            self._samples[stage].append(ms)
            self._counts[stage] += 1
        for observe in self.observers:
            observe(stage, ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {"count", "median_ms", "p95_ms", "mean_ms"}} over the current window."""
        with self._lock:
            snapshot = {k: (np.array(v), self._counts[k]) for k, v in self._samples.items()}
        out = {}
        for stage, (arr, count) in snapshot.items():
            if len(arr):
                out[stage] = {
                    "count": count,
                    "median_ms": float(np.median(arr)),
                    "p95_ms": float(np.percentile(arr, 95)),
                    "mean_ms": float(arr.mean()),
                }
        return out

    def recent_mean(self, stage: str, last: int = 20) -> float | None:
        """Mean of the last ``last`` samples of ``stage`` (ms), or None before the first one."""
        with self._lock:
            samples = self._samples.get(stage)
            if not samples:
                return None
            tail = list(samples)[-last:]
        return sum(tail) / len(tail)

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._counts.clear()
