"""A one-frame slot between the reader thread and the consumer.

``latest`` mode (live streams, realtime files): a new frame replaces an unread one, which is counted
as dropped, so a slow consumer always gets the newest frame and memory stays at one frame.
``blocking`` mode (fast file playback): the producer waits until the consumer took the previous
frame, so every sampled frame is delivered and results are the same run after run.
"""

from __future__ import annotations

import threading

from edge.sources.frame import Frame


class FrameSlot:
    def __init__(self, blocking: bool):
        self.blocking = blocking
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, should_stop: threading.Event) -> bool:
        """Offer a frame. Returns False if the slot was closed / stop was requested while waiting."""
        with self._cond:
            if self.blocking:
                while self._frame is not None and not self._closed and not should_stop.is_set():
                    self._cond.wait(0.1)
                if self._closed or should_stop.is_set():
                    return False
            elif self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout=max(0.0, timeout))
            frame, self._frame = self._frame, None
            if frame is not None:
                self._cond.notify_all()
            return frame

    def peek(self) -> Frame | None:
        """The waiting frame without taking it (the scheduler looks before it decides to serve a camera)."""
        with self._cond:
            return self._frame

    @property
    def empty(self) -> bool:
        with self._cond:
            return self._frame is None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
