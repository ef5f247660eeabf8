"""Content-addressed evidence store: bytes are stored under their SHA-256; names never come from input."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from central.files import atomic_write

_SHA = re.compile(r"^[0-9a-f]{64}$")

ALLOWED_CONTENT_TYPES = {"image/jpeg", "image/png", "image/webp", "application/pdf"}


class EvidenceError(ValueError):
    """Evidence was refused (bad hash, too large, unknown content type)."""


class EvidenceNotFound(KeyError):
    pass


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex characters, else raise EvidenceError (no traversal ever)."""
    if not isinstance(sha256, str) or not _SHA.match(sha256):
        raise EvidenceError(f"evidence id {sha256!r:.80} is not a sha256 hex digest")
    return sha256


class EvidenceStore(Protocol):
    max_bytes: int

    def put(self, data: bytes, content_type: str) -> str: ...
    def open(self, sha256: str) -> bytes: ...
    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def content_type(self, sha256: str) -> str | None: ...


class FileEvidenceStore:
    """Files at ``root/ab/cd/<sha256>`` with the content type in a ``<sha256>.type`` sidecar."""

    def __init__(self, root: str | Path, max_bytes: int = 10_000_000):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        h = check_sha256(sha256)
        return self.root / h[:2] / h[2:4] / h

    def put(self, data: bytes, content_type: str, *, expected_sha256: str | None = None) -> str:
        if len(data) > self.max_bytes:
            raise EvidenceError(f"evidence is {len(data)} bytes, over the {self.max_bytes}-byte limit")
        if content_type not in ALLOWED_CONTENT_TYPES:
            raise EvidenceError(f"content type {content_type!r} is not accepted")
        h = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and h != expected_sha256.lower():
            raise EvidenceError(f"sha256 mismatch: payload says {expected_sha256[:16]}…, data hashes to {h[:16]}…")
        p = self.path(h)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(p, data)
            p.with_suffix(".type").write_text(content_type, encoding="ascii")
        return h

    def open(self, sha256: str) -> bytes:
        p = self.path(sha256)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise EvidenceNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def content_type(self, sha256: str) -> str | None:
        t = self.path(sha256).with_suffix(".type")
        return t.read_text(encoding="ascii").strip() if t.is_file() else None
