"""Client side of /api/v1/stream in tests: server-sent event lines to (event, data, id) frames."""

from __future__ import annotations


class SseFrames:
    """``feed(line)`` each line of the stream; it returns the frame a blank line completes (None otherwise, and for
    a blank line after no ``event:``). ``id`` is None for an event sent without one. Comments are left to the
    caller."""

    def __init__(self) -> None:
        self.event, self.data, self.eid = "", "", None

    def feed(self, line: str) -> tuple[str, str, int | None] | None:
        if line.startswith("id: "):
            self.eid = int(line[4:])
        elif line.startswith("event: "):
            self.event = line[7:]
        elif line.startswith("data: "):
            self.data = line[6:]
        elif line == "":
            frame = (self.event, self.data, self.eid) if self.event else None
            self.event, self.data, self.eid = "", "", None
            return frame
        return None
