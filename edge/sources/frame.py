"""The unit a frame source hands to the worker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    """One sampled frame.

    ``timestamp`` is wall-clock epoch seconds (for fast file playback: the fixed start epoch + ``pts``).
    ``pts`` is the stream time in seconds; for a looping file it keeps increasing across loops.
    ``captured_monotonic`` is ``time.monotonic()`` right after decoding, for end-to-end latency.
    ``decode_cpu_ms``: reader-thread CPU since the previous sampled frame (see below).
    """

    camera_id: str
    image: np.ndarray
    timestamp: float
    pts: float
    index: int
    captured_monotonic: float
    # CPU time the reader thread spent since the previous sampled frame (grabs of skipped frames + this
    # retrieve): the decode cost of one analysed frame. Keyframe-only decoding runs in an ffmpeg child
    # process, whose CPU is not included.
    decode_cpu_ms: float = 0.0
