"""Turn "the stream would not open" into a reason an operator can act on.

OpenCV only says that opening failed; these checks find out why (nothing listening, wrong
credentials, unknown path, missing file). Every message masks credentials.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

from edge.redact import mask_url
from edge.sources.urls import file_path, scrub, source_kind


def explain_open_failure(url: str, timeout_s: float) -> str:
    kind = source_kind(url)
    try:
        if kind == "file":
            return _file_reason(url)
        if kind == "device":
            dev = url if url.startswith("/dev/") else f"/dev/video{url}"
            if not os.path.exists(dev):
                return f"video device {dev} not found"
            return f"video device {dev} exists but could not be opened (busy or no permission?)"
        if kind == "rtsp":
            return _rtsp_reason(url, timeout_s)
        return _http_reason(url, timeout_s)
    except Exception as e:  # diagnosis must never take the reader down
        return scrub(f"could not open {mask_url(url)} ({type(e).__name__}: {e})", url)


def _file_reason(url: str) -> str:
    path = file_path(url)
    if not path.exists():
        return f"file not found: {path}"
    if not path.is_file():
        return f"not a regular file: {path}"
    if not os.access(path, os.R_OK):
        return f"file is not readable (permissions): {path}"
    return f"cannot decode {path}: not a video format FFmpeg can read, or the file is corrupt"


def _connect(host: str, port: int, timeout_s: float) -> socket.socket | str:
    try:
        return socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listening)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:g} s"
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"


def _rtsp_status(url: str, method: str, timeout_s: float) -> tuple[bool, str]:
    """Send one RTSP request: (True, status line) or (False, why there was no answer). Credentials go as Basic."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 554
    conn = _connect(host, port, timeout_s)
    if isinstance(conn, str):
        return False, conn
    clean = parts._replace(netloc=f"{host}:{port}").geturl()
    lines = [f"{method} {clean} RTSP/1.0", "CSeq: 1", "User-Agent: gridwatch"]
    if method == "DESCRIBE":
        lines.append("Accept: application/sdp")
    if parts.username is not None:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    with contextlib.closing(conn):
        try:
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status = conn.recv(4096).decode("latin-1", "replace").split("\r\n", 1)[0].strip()
        except TimeoutError:
            return False, f"{host}:{port} accepted the connection but sent no RTSP answer within {timeout_s:g} s"
        except OSError as e:
            return False, f"connection to {host}:{port} failed: {e.strerror or e}"
    if not status.startswith("RTSP/"):
        return False, f"{host}:{port} is not an RTSP server (answered {status[:60]!r})"
    return True, status


def rtsp_preflight(url: str, timeout_s: float) -> str | None:
    """None when an RTSP server answers at the URL's host and port, else the reason (credentials masked).

    Run before OpenCV opens a stream: OpenCV holds one process-wide lock while it opens any capture, so an
    unreachable or silent camera would otherwise stall every other camera's (re)connect for open_timeout_s.
    """
    if urlsplit(url).scheme.lower() == "rtsps":
        return None  # TLS: let FFmpeg do the handshake
    try:
        ok, detail = _rtsp_status(url, "OPTIONS", timeout_s)
    except Exception as e:  # a check must never take the reader down; OpenCV will try and report
        return scrub(f"could not check {mask_url(url)} ({type(e).__name__}: {e})", url)
    return None if ok else f"could not open {mask_url(url)}: {detail}"


def _rtsp_reason(url: str, timeout_s: float) -> str:
    masked = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme.lower() == "rtsps":
        return f"could not open {masked} (RTSPS/TLS stream; check the server certificate and credentials)"
    ok, status = _rtsp_status(url, "DESCRIBE", timeout_s)
    if not ok:
        return f"could not open {masked}: {status}"
    code = status.split(" ")[1] if status.startswith("RTSP/") and len(status.split(" ")) > 1 else ""
    if code == "401":
        who = "no credentials given" if parts.username is None else "wrong username or password"
        return f"could not open {masked}: authentication failed (RTSP 401 Unauthorized, {who})"
    if code == "404":
        return f"could not open {masked}: stream path not found on the server (RTSP 404)"
    if code == "200":
        return f"could not open {masked}: the server describes the stream but it could not be decoded"
    return f"could not open {masked}: server answered {status!r}"


def _http_reason(url: str, timeout_s: float) -> str:
    masked = mask_url(url)
    parts = urlsplit(url)
    clean = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    req = urllib.request.Request(clean, method="GET")  # noqa: S310 - http(s) only, checked by source_kind
    if parts.username is not None:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            ctype = resp.headers.get("Content-Type", "?")
            return f"could not open {masked}: server answered {resp.status} with {ctype!r}, not a readable video"
    except urllib.error.HTTPError as e:
        if e.code == 401:
            return f"could not open {masked}: authentication failed (HTTP 401 Unauthorized)"
        return f"could not open {masked}: HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ConnectionRefusedError):
            return f"could not open {masked}: connection refused (nothing listening)"
        return scrub(f"could not open {masked}: {reason}", url)
    except TimeoutError:
        return f"could not open {masked}: no answer within {timeout_s:g} s"
