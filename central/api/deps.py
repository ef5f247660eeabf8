"""Small helpers shared by the API routers: the case service per request and time-parameter parsing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request

from central.api.errors import ApiError
from central.auth import DbSession
from central.workflow import CaseService

_RELATIVE = re.compile(r"^(\d{1,5})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def get_case_service(request: Request, session: DbSession) -> CaseService:
    st = request.app.state
    return CaseService(session, st.config, st.clock, st.store, st.bus)


Cases = Annotated[CaseService, Depends(get_case_service)]


def parse_when(name: str, value: str | None, request: Request) -> datetime | None:
    """A time parameter: ISO 8601 (naive times are in the configured time zone) or relative like ``7d``,
    ``24h``, ``30m``, ``2w`` (that long before now). Errors are 422 naming the parameter."""
    if value is None or value == "":
        return None
    st = request.app.state
    m = _RELATIVE.match(value.strip())
    if m:
        return st.clock.now() - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            422, f"query.{name}: {value!r} is neither an ISO 8601 time nor a relative time like 7d / 24h",
            "validation_error",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=st.config.tz)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ApiError(422, f"query.{name}: {value!r} is outside the years 1-9999 in UTC", "validation_error") from None


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in row.items()}
