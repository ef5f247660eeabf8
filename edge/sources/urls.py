"""What kind of source a camera URL names, and the secrets it carries."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from edge.redact import mask_text, mask_url

SourceKind = Literal["rtsp", "http", "file", "device"]


def source_kind(url: str) -> SourceKind:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "http"
    if scheme == "file":
        return "file"
    if url.isdigit() or url.startswith("/dev/"):
        return "device"
    return "file"


def file_path(url: str) -> Path:
    """'file:///a/b.mp4' or '/a/b.mp4' → Path('/a/b.mp4')."""
    return Path(unquote(urlsplit(url).path)) if url.lower().startswith("file://") else Path(url)


def secrets_of(url: str) -> list[str]:
    """The password in a URL (raw and percent-decoded), so it can be scrubbed from error text."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password)} if p] if password else []


def scrub(text: str, url: str) -> str:
    """Remove every trace of the URL's credentials from free text (e.g. an FFmpeg error line)."""
    return mask_text(text.replace(url, mask_url(url)), secrets_of(url))
