"""API tokens: random plaintext shown once, stored as a SHA-256 hash; roles viewer < handler/dispatcher < admin."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db import ApiToken

ROLES: tuple[str, ...] = ("viewer", "dispatcher", "handler", "admin")
TOKEN_PREFIX = "gwc_"  # noqa: S105 - a display prefix, not a secret


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, role: str, *, now: datetime | None = None) -> tuple[str, ApiToken]:
    """Create a token; returns (plaintext, row). The plaintext is not stored anywhere."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ValueError("token name must be 1..128 characters")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name, role=role, token_hash=hash_token(plaintext), prefix=plaintext[:8],
        created_at=now or datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return plaintext, row


def verify_token(session: Session, plaintext: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token for ``plaintext`` or None; records last_used_at (caller commits)."""
    if not plaintext or len(plaintext) > 256:
        return None
    digest = hash_token(plaintext)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
        return None
    row.last_used_at = now or datetime.now(UTC)
    return row


def revoke_token(session: Session, token_id: int, *, now: datetime | None = None) -> bool:
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or datetime.now(UTC)
    return True
