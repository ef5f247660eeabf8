"""Pick frames at ``detect_fps`` from a stream of frame times, without drift or bursts."""

from __future__ import annotations


class RateSampler:
    """Decides per frame time ``t`` (seconds, any monotonic clock) whether the frame is sampled.

    Due times advance by exactly one period so the long-run rate equals ``fps`` (a 25 fps stream at
    2 fps alternates 12 and 13 skipped frames). After a gap (reconnect, pause) it restarts from the
    next frame instead of bursting to catch up.
    """

    def __init__(self, fps: float, tolerance_s: float = 0.002):
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self.tolerance_s = tolerance_s
        self._next: float | None = None

    def due(self, t: float) -> bool:
        if self._next is not None and t < self._next - self.tolerance_s:
            return False
        if self._next is None or t - self._next >= self.period:
            self._next = t + self.period
        else:
            self._next += self.period
        return True

    def reset(self) -> None:
        self._next = None
