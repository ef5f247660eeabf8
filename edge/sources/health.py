"""Per-camera health as the worker logs and publishes it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from enum import StrEnum


class CameraState(StrEnum):
    connecting = "connecting"  # opening the stream
    online = "online"  # frames are arriving
    stalled = "stalled"  # the stream was open but no frame came for stall_timeout_s; being restarted
    offline = "offline"  # open failed or the stream was lost; waiting to reconnect
    disabled = "disabled"  # enabled: false in cameras.yaml; never opened
    finished = "finished"  # a non-looping file reached its end


@dataclass(slots=True)
class CameraHealth:
    camera_id: str
    state: str
    input_fps: float
    last_frame_at: float | None
    reconnects: int
    last_error: str | None
    frames_decoded: int
    frames_sampled: int
    frames_dropped: int
    url: str
    decode: str = "all"  # decode path in use: 'all' (every frame decoded) or 'keyframes'

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_fps"] = round(self.input_fps, 2) if math.isfinite(self.input_fps) else 0.0
        return d


class FpsMeter:
    """Frames per second over a sliding window of recent frame times (bounded memory)."""

    def __init__(self, window_s: float = 5.0, max_samples: int = 512):
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_samples)

    def tick(self, t: float) -> None:
        self._times.append(t)

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def clear(self) -> None:
        self._times.clear()
