"""Log set-up shared by ``gridwatch-edge`` and ``gridwatch-central``: readable text (default) or JSON lines.

``GRIDWATCH_LOG_FORMAT=json`` (or ``--log-format json``) writes one JSON object per line to stderr — ``time`` (UTC,
RFC 3339), ``level``, ``logger``, ``message``, the fields passed with ``extra={...}``, and ``exc_info`` /
``stack_info`` as text — for Loki, Elasticsearch or ``jq``. The standard library's ``json`` does it: no extra
dependency on either image.

Secrets stay out in both formats: the message, the exception text and every string field pass ``redact``, which
masks URL credentials (``rtsp://admin:***@cam``), query-string secrets (``?token=***``) and GridWatch API tokens
(``gwc_***``), on top of the filters the services already install (central.auth's access-log filter runs before
the formatter sees a record).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

FORMATS = ("text", "json")
ENV_VAR = "GRIDWATCH_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
_QUERY_SECRET = re.compile(
    r"(?i)((?:^|[?&;\s])(?:token|ticket|sig|signature|access_token|api_key|password|passwd|pwd|secret)=)"
    r"[^&;\s\"']*"
)
_API_TOKEN = re.compile(r"\bgwc_[A-Za-z0-9_-]{6,}")
# attributes every LogRecord has: anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Mask credentials in free text: URL passwords, query-string secrets, API tokens."""
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1***", text)
    if "gwc_" in text:
        text = _API_TOKEN.sub("gwc_***", text)
    return text


def _plain(value: Any) -> Any:
    """A JSON-ready, redacted copy of an ``extra`` value (unknown objects become their ``str``)."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _plain(value)
        if record.exc_info:
            out["exc_info"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_format(explicit: str | None = None) -> str:
    """``explicit`` (a command-line flag), else ``$GRIDWATCH_LOG_FORMAT``, else ``text``; ValueError if unknown."""
    value = (explicit or os.environ.get(ENV_VAR) or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"log format {value!r} (from {'--log-format' if explicit else ENV_VAR}) must be one of "
                         f"{', '.join(FORMATS)}")  # fmt: skip
    return value


def configure_logging(level: int | str = logging.INFO, fmt: str | None = None) -> str:
    """Set up the root logger on stderr in the chosen format (replacing earlier handlers). Returns the format."""
    chosen = log_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else RedactingTextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return chosen
