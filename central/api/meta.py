"""Who am I, the configured categories, and the dead-letter table (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, select

from central.api.deps import iso
from central.auth import ROLES, CurrentPrincipal, DbSession, Principal, require
from central.db import DeadLetter
from central.workflow import ACTIONS

router = APIRouter(tags=["meta"])

PAYLOAD_PREVIEW_BYTES = 4096


@router.get("/me", summary="The calling token's name and role, and the workflow actions that role may take")
def me(principal: CurrentPrincipal) -> dict[str, Any]:
    return {
        "name": principal.name, "role": principal.role, "token_id": principal.token_id, "roles": list(ROLES),
        "actions": [a for a in ACTIONS if principal.may(a)],
        "can_write": principal.role != "viewer",
    }


@router.get("/categories", summary="Configured case categories with their time limits")
def categories(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    items = [c.model_dump(mode="json") for c in request.app.state.config.categories]
    return {"items": items, "total": len(items)}


@router.get("/dead-letters", summary="Rejected MQTT payloads with the reason (admin)")
def dead_letters(
    session: DbSession,
    principal: Annotated[Principal, Depends(require("admin"))],
    reason: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    stmt = select(DeadLetter)
    if reason:
        stmt = stmt.where(DeadLetter.reason == reason)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(DeadLetter.id.desc()).limit(limit).offset(offset))
    items = []
    for d in rows:
        payload = d.payload or b""
        items.append({
            "id": d.id, "received_at": iso(d.received_at), "topic": d.topic, "reason": d.reason, "detail": d.detail,
            "size": d.size, "payload_preview": payload[:PAYLOAD_PREVIEW_BYTES].decode("utf-8", "replace"),
            "payload_truncated": len(payload) > PAYLOAD_PREVIEW_BYTES or d.size > len(payload),
        })
    return {"items": items, "total": total, "limit": limit, "offset": offset}
