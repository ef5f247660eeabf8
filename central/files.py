"""Writing a file so that readers see the old file or the whole new one, never a part (one helper for evidence,
live frames, the managed cameras.yaml and the broker files)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, renamed over ``path``.

    ``mode``: the file's permissions from its creation (a password file is never briefly world-readable).
    ``durable``: fsync before the rename, for files a person edits and would not want to lose on a power cut.
    The temporary file is removed when the write fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
