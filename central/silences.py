"""Silences: an operator suppresses a category in a zone / camera / grid cell for a time window.

Incidents that match an active silence are stored (and count in hotspots) but open no case.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from central.db import Silence


class SilenceError(ValueError):
    pass


def create_silence(
    session: Session,
    *,
    category: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    camera_id: str | None = None,
    zone: str | None = None,
    grid_cell: str | None = None,
    reason: str | None = None,
    created_by: str | None = None,
) -> Silence:
    if ends_at <= starts_at:
        raise SilenceError("silence ends_at must be after starts_at")
    if camera_id is None and zone is None and grid_cell is None:
        raise SilenceError("a silence needs a camera_id, zone or grid_cell (a city-wide silence is not allowed)")
    s = Silence(
        category=category, camera_id=camera_id, zone=zone, grid_cell=grid_cell, starts_at=starts_at,
        ends_at=ends_at, reason=reason, created_by=created_by, created_at=now,
    )
    session.add(s)
    session.flush()
    return s


def silence_matches(
    s: Silence, *, category: str, camera_id: str | None, zone: str | None, grid_cell: str | None, at: datetime
) -> bool:
    """Does silence ``s`` cover this incident? Null fields in a silence match anything; grid_cell is a prefix."""
    return (
        s.category == category
        and s.starts_at <= at < s.ends_at
        and (s.camera_id is None or s.camera_id == camera_id)
        and (s.zone is None or s.zone == zone)
        and (s.grid_cell is None or (grid_cell or "").startswith(s.grid_cell))
    )


def matching_silence(
    session: Session, *, category: str, camera_id: str | None, zone: str | None, grid_cell: str | None, at: datetime
) -> Silence | None:
    """The first active silence covering this incident, or None."""
    stmt = (
        select(Silence)
        .where(Silence.category == category, Silence.starts_at <= at, Silence.ends_at > at)
        .where(or_(Silence.camera_id.is_(None), Silence.camera_id == camera_id))
        .where(or_(Silence.zone.is_(None), Silence.zone == zone))
        .order_by(Silence.id)
    )
    for s in session.scalars(stmt):
        if silence_matches(s, category=category, camera_id=camera_id, zone=zone, grid_cell=grid_cell, at=at):
            return s
    return None


def list_silences(session: Session, *, active_at: datetime | None = None) -> list[Silence]:
    stmt = select(Silence).order_by(Silence.id.desc())
    if active_at is not None:
        stmt = stmt.where(Silence.starts_at <= active_at, Silence.ends_at > active_at)
    return list(session.scalars(stmt))


def delete_silence(session: Session, silence_id: int) -> bool:
    s = session.get(Silence, silence_id)
    if s is None:
        return False
    session.delete(s)
    session.flush()
    return True
