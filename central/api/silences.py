"""Silences: suppress a category in a camera / zone / grid cell for a time window (incidents stored, no case)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ConfigDict, Field, model_validator

from central.api.deps import iso
from central.api.errors import ApiError, error_responses
from central.api.inputs import SafeBody, SilenceId
from central.auth import CurrentPrincipal, DbSession, Principal, require
from central.silences import SilenceError, create_silence, delete_silence, list_silences

router = APIRouter(tags=["silences"])

MAX_SILENCE = timedelta(days=366)


class SilenceIn(SafeBody):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(max_length=48)
    camera_id: str | None = Field(None, max_length=128)
    zone: str | None = Field(None, max_length=128)
    grid_cell: str | None = Field(None, max_length=64)
    starts_at: datetime | None = Field(None, description="Default: now. Needs a time zone.")
    ends_at: datetime | None = Field(None, description="Give ends_at or duration_h.")
    duration_h: float | None = Field(None, gt=0, le=MAX_SILENCE.total_seconds() / 3600)
    reason: str | None = Field(None, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> SilenceIn:
        for name in ("starts_at", "ends_at"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (Z or ±HH:MM)")
            if v is not None:
                try:
                    v.astimezone(UTC)
                except OverflowError:
                    raise ValueError(f"{name} is outside the years 1-9999 in UTC") from None
        if (self.ends_at is None) == (self.duration_h is None):
            raise ValueError("give exactly one of ends_at or duration_h")
        return self


def silence_json(s: Any) -> dict[str, Any]:
    return {
        "id": s.id, "category": s.category, "camera_id": s.camera_id, "zone": s.zone, "grid_cell": s.grid_cell,
        "starts_at": iso(s.starts_at), "ends_at": iso(s.ends_at), "reason": s.reason, "created_by": s.created_by,
        "created_at": iso(s.created_at),
    }


@router.get("/silences", summary="List silences (all, or only those active now)")
def get_silences(
    request: Request, session: DbSession, principal: CurrentPrincipal, active: bool = False
) -> dict[str, Any]:
    rows = list_silences(session, active_at=request.app.state.clock.now() if active else None)
    return {"items": [silence_json(s) for s in rows], "total": len(rows)}


@router.post("/silences", status_code=201, summary="Create a silence (dispatcher or admin)")
def post_silence(
    request: Request, body: SilenceIn, session: DbSession,
    principal: Annotated[Principal, Depends(require("dispatcher"))],
) -> dict[str, Any]:
    st = request.app.state
    if st.config.category(body.category) is None:
        raise ApiError(422, f"body.category: unknown category {body.category!r}", "validation_error")
    now = st.clock.now()
    starts = body.starts_at or now
    try:
        ends = body.ends_at or starts + timedelta(hours=body.duration_h or 0)
    except OverflowError:
        raise ApiError(422, "body.duration_h: the silence would end after the year 9999", "validation_error") from None
    if ends - starts > MAX_SILENCE:
        raise ApiError(422, f"body.ends_at: a silence may last at most {MAX_SILENCE.days} days", "validation_error")
    try:
        s = create_silence(
            session, category=body.category, starts_at=starts, ends_at=ends, now=now, camera_id=body.camera_id,
            zone=body.zone, grid_cell=body.grid_cell, reason=body.reason, created_by=principal.actor,
        )
        session.commit()
    except SilenceError as e:
        session.rollback()
        raise ApiError(422, str(e), "invalid_silence") from None
    return silence_json(s)


@router.delete("/silences/{silence_id}", status_code=204, summary="Delete a silence (dispatcher or admin)",
               responses=error_responses(404))
def remove_silence(
    silence_id: SilenceId, session: DbSession, principal: Annotated[Principal, Depends(require("dispatcher"))]
) -> Response:
    if not delete_silence(session, silence_id):
        raise ApiError(404, f"silence {silence_id} not found", "silence_not_found")
    session.commit()
    return Response(status_code=204)
