"""API authentication and authorisation as FastAPI dependencies.

A request authenticates with ``Authorization: Bearer <token>``; ``central.tokens.verify_token`` checks it against
the hashed tokens in the database and gives the token's role. Roles: viewer (read only), dispatcher, handler,
admin (everything). ``require("dispatcher")`` or ``require("dispatch")`` (a workflow action) is a dependency that
returns the ``Principal`` or answers 401 (no or bad token, with ``WWW-Authenticate: Bearer``) / 403 (wrong role).

Browsers cannot set headers on ``<img src>`` or ``EventSource``; for those two read-only GETs (evidence and the
event stream) the API also accepts a short-lived *signed URL* (``?exp=&sig=``, see ``sign_path``) issued to an
authenticated caller, a *stream ticket* (``?ticket=``, see ``issue_ticket``: bound to one path and to the token that
asked for it, valid ``TICKET_TTL_S`` to open the stream, usable once per process), or ``?token=`` (discouraged; the
access log redacts it, see ``RedactQuerySecrets``, but proxies in front may not).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import inspect
from sqlalchemy.orm import Session

ROLES: tuple[str, ...] = ("viewer", "dispatcher", "handler", "admin")
LAST_USED_RESOLUTION = timedelta(seconds=60)

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token made with `gridwatch-central create-token --name NAME --role ROLE`.",
)


class AuthError(HTTPException):
    """401/403 with a machine-readable ``code`` (rendered as {"detail", "code"})."""

    def __init__(self, status_code: int, detail: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code


def _unauthorized(detail: str, error: str | None = None) -> AuthError:
    challenge = 'Bearer realm="gridwatch"' + (f', error="{error}"' if error else "")
    return AuthError(401, detail, "unauthorized", {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and role. ``via`` says how the request was authenticated."""

    token_id: int | None
    name: str
    role: str
    via: str = "bearer"  # bearer | query_token | signed_url

    def has_role(self, role: str) -> bool:
        return self.role == "admin" or role == "viewer" or self.role == role

    def may(self, action: str) -> bool:
        """May this principal perform workflow ``action``?"""
        if self.role == "admin":
            return True
        from central.workflow import ACTION_ROLES

        return self.role in ACTION_ROLES.get(action, set())

    @property
    def actor(self) -> str:
        """The name recorded in the audit log."""
        return f"{self.name}#{self.token_id}" if self.token_id is not None else self.name


# --------------------------------------------------------------------------- database session


def get_session(request: Request) -> Iterator[Session]:
    """One SQLAlchemy session per request (routes commit explicitly; anything uncommitted is rolled back)."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_session)]


# --------------------------------------------------------------------------- authentication


def _verify(session: Session, plaintext: str, via: str) -> Principal:
    from central.tokens import verify_token

    token = verify_token(session, plaintext)
    if token is None:
        session.rollback()
        raise _unauthorized("invalid or revoked API token", "invalid_token")
    principal = Principal(token_id=token.id, name=token.name, role=token.role, via=via)
    # verify_token records last_used_at. Writing it on every request would make every read a write (and contend
    # with ingest for SQLite's write lock), so it is only saved when the stored value is over a minute old.
    previous = inspect(token).attrs.last_used_at.history.deleted
    old = previous[0] if previous else None
    if old is not None and token.last_used_at is not None and token.last_used_at - old < LAST_USED_RESOLUTION:
        session.rollback()
    else:
        session.commit()
    return principal


def get_principal(
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """The authenticated caller; 401 without a valid Bearer token."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing API token: send 'Authorization: Bearer <token>'")
    return _verify(session, credentials.credentials, "bearer")


def get_principal_for_get(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """Bearer header, or (GET only) a signed URL or ``?token=`` — for ``<img>`` and ``EventSource``."""
    if credentials is not None and credentials.credentials:
        return _verify(session, credentials.credentials, "bearer")
    if request.method in ("GET", "HEAD"):
        q = request.query_params
        if "sig" in q or "exp" in q:
            if verify_signed_path(request.app, request.url.path, q.get("exp"), q.get("sig")):
                return Principal(token_id=None, name="signed-url", role="viewer", via="signed_url")
            raise _unauthorized("signed URL is invalid or expired", "invalid_token")
        if q.get("ticket"):
            return verify_ticket(request.app, session, request.url.path, q["ticket"])
        if q.get("token"):
            return _verify(session, q["token"], "query_token")
    raise _unauthorized("missing API token: send 'Authorization: Bearer <token>'")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(action_or_role: str) -> Callable[..., Principal]:
    """Dependency factory: the caller must hold the role (viewer < dispatcher|handler < admin) or be allowed
    the workflow action (``central.workflow.ACTION_ROLES``; admin may do everything)."""
    is_role = action_or_role in ROLES

    def dependency(principal: CurrentPrincipal) -> Principal:
        allowed = principal.has_role(action_or_role) if is_role else principal.may(action_or_role)
        if not allowed:
            what = f"role {action_or_role!r}" if is_role else f"permission for action {action_or_role!r}"
            raise AuthError(403, f"token role {principal.role!r} lacks {what}", "forbidden")
        return principal

    dependency.__name__ = f"require_{action_or_role}"
    return dependency


def require_any(*roles: str) -> Callable[..., Principal]:
    """Dependency factory: the caller must hold one of ``roles`` (admin always passes)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}")

    def dependency(principal: CurrentPrincipal) -> Principal:
        if not any(principal.has_role(r) for r in roles):
            raise AuthError(403, f"token role {principal.role!r} is not one of {', '.join(roles)}", "forbidden")
        return principal

    dependency.__name__ = "require_any_" + "_".join(roles)
    return dependency


def check_action(principal: Principal, action: str) -> None:
    """403 unless ``principal`` may perform ``action`` (for routes where the action comes from the body)."""
    if not principal.may(action):
        raise AuthError(403, f"token role {principal.role!r} may not perform action {action!r}", "forbidden")


# --------------------------------------------------------------------------- signed URLs


def url_secret_from_env() -> bytes:
    """``GRIDWATCH_URL_SECRET`` (share it between instances behind one load balancer), else a random secret."""
    env = os.environ.get("GRIDWATCH_URL_SECRET")
    return env.encode() if env else secrets.token_bytes(32)


def _signature(secret: bytes, path: str, exp: int) -> str:
    return hmac.new(secret, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()


def sign_path(app: Any, path: str, ttl_s: int = 3600, *, now: float | None = None) -> str:
    """``path?exp=…&sig=…``: a URL anyone can GET (viewer rights, that path only) until it expires."""
    exp = int((time.time() if now is None else now) + ttl_s)
    return f"{path}?{urlencode({'exp': exp, 'sig': _signature(app.state.url_secret, path, exp)})}"


def verify_signed_path(app: Any, path: str, exp: str | None, sig: str | None, *, now: float | None = None) -> bool:
    if not exp or not sig or not exp.isdigit():
        return False
    if int(exp) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(_signature(app.state.url_secret, path, int(exp)), sig)


# --------------------------------------------------------------------------- stream tickets

TICKET_TTL_S = 60
_used_tickets: dict[str, float] = {}  # nonce → expiry: a ticket opens a stream once (per process)
_used_lock = threading.Lock()


def _ticket_signature(secret: bytes, path: str, token_id: int, exp: int, nonce: str) -> str:
    return hmac.new(secret, f"ticket\n{path}\n{token_id}\n{exp}\n{nonce}".encode(), hashlib.sha256).hexdigest()


def issue_ticket(app: Any, principal: Principal, path: str, ttl_s: int = TICKET_TTL_S,
                 *, now: float | None = None) -> str:
    """``<token id>.<exp>.<nonce>.<hmac>``: opens ``path`` (GET) once within ``ttl_s`` with ``principal``'s token.

    Only a principal authenticated by a real token can get one (signed URLs have no token to bind to)."""
    if principal.token_id is None:
        raise AuthError(403, "a stream ticket needs an API token (Authorization: Bearer)", "forbidden")
    exp = int((time.time() if now is None else now) + ttl_s)
    nonce = secrets.token_urlsafe(12)
    sig = _ticket_signature(app.state.url_secret, path, principal.token_id, exp, nonce)
    return f"{principal.token_id}.{exp}.{nonce}.{sig}"


def verify_ticket(app: Any, session: Session, path: str, ticket: str, *, now: float | None = None) -> Principal:
    """The ticket's principal (its token's current name and role), or 401. The token must still be live."""
    from central.db import ApiToken

    parts = ticket.split(".")
    now_s = time.time() if now is None else now
    if len(parts) != 4 or not parts[0].isascii() or not parts[0].isdigit() or not parts[1].isascii() \
            or not parts[1].isdigit() or len(parts[0]) > 10 or len(parts[1]) > 12:
        raise _unauthorized("stream ticket is malformed", "invalid_token")
    token_id, exp, nonce, sig = int(parts[0]), int(parts[1]), parts[2], parts[3]
    expected = _ticket_signature(app.state.url_secret, path, token_id, exp, nonce)
    if not hmac.compare_digest(expected, sig) or exp < now_s:
        raise _unauthorized("stream ticket is invalid or expired", "invalid_token")
    with _used_lock:
        for n in [n for n, e in _used_tickets.items() if e < now_s]:
            del _used_tickets[n]
        if nonce in _used_tickets:
            raise _unauthorized("stream ticket was already used", "invalid_token")
        _used_tickets[nonce] = float(exp)
    token = session.get(ApiToken, token_id) if token_id <= 2**31 - 1 else None
    if token is None or token.revoked_at is not None:
        raise _unauthorized("the ticket's API token is revoked", "invalid_token")
    return Principal(token_id=token.id, name=token.name, role=token.role, via="ticket")


# --------------------------------------------------------------------------- access-log redaction

# Credentials that may travel in a query string: never write them to a log.
_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&;])(?:token|ticket|sig|access_token|api_key|password)=)[^&;\s\"']*")


def redact_query_secrets(text: str) -> str:
    """``/api/v1/stream?token=gwc_abc&kinds=x`` → ``/api/v1/stream?token=***&kinds=x``."""
    return _QUERY_SECRET.sub(r"\1***", text)


class RedactQuerySecrets(logging.Filter):
    """A logging filter for uvicorn's access log (and any other): query-string credentials become ``***`` in the
    message and its arguments. Installed by ``install_log_redaction``; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_query_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query_secrets(a) if isinstance(a, str) and "=" in a else a
                                for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_query_secrets(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access")


def install_log_redaction() -> None:
    """Add ``RedactQuerySecrets`` to the access loggers and their handlers (idempotent). Logger filters cover
    records logged there; handler filters also cover records that propagate from child loggers."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, RedactQuerySecrets) for f in target.filters):
                target.addFilter(RedactQuerySecrets())
