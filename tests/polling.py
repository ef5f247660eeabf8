"""Waiting in tests for something another thread or process does: poll with a generous deadline, never a fixed
sleep, and fail naming what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout: float = 20.0, what: str = "condition", every: float = 0.05) -> T:
    """``pred()``'s first truthy value, polled every ``every`` s; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
