"""Keep secrets out of logs: mask credentials in camera and broker URLs."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = {"password", "passwd", "pwd", "pass", "token", "key", "secret", "auth", "signature"}
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*)(?::[^@/\s]*)?@")


def mask_url(url: str) -> str:
    """rtsp://admin:s3cret@cam/stream?token=x → rtsp://admin:***@cam/stream?token=***."""
    if "://" not in url:
        return url
    masked = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url, count=1)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if not parts.query:
        return masked
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def mask_text(text: str, secrets: list[str]) -> str:
    """Replace each known secret value (e.g. an env-substituted password) in free text such as an error."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
