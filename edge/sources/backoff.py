"""Exponential reconnect back-off with jitter, so a fleet of cameras does not reconnect in lock-step."""

from __future__ import annotations

import random


class Backoff:
    """Delay ``min_s * 2**n`` capped at ``max_s``, scaled by a random factor in [1 - jitter, 1]."""

    def __init__(self, min_s: float, max_s: float, jitter: float = 0.5, rng: random.Random | None = None):
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got min_s={min_s} max_s={max_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.min_s, self.max_s, self.jitter = min_s, max_s, jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Delay before the next attempt; each call doubles the ceiling until ``max_s``."""
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return ceiling * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0
