"""Edges and cameras health board, plus the unauthenticated liveness probe ``/healthz``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from central.api.deps import iso
from central.api.errors import error_responses
from central.api.frames import frame_info, frame_store
from central.auth import CurrentPrincipal, DbSession, sign_path
from central.db import Camera, Case, CrowdFigure, Edge, Incident

router = APIRouter(tags=["health"])
probe_router = APIRouter(tags=["health"])

# An edge that has not been heard from for this long is shown offline whatever its last status said.
STALE_AFTER = timedelta(seconds=120)


def _online(state: str | None, last_seen: datetime | None, now: datetime) -> bool:
    return state == "online" and last_seen is not None and now - last_seen <= STALE_AFTER


@router.get("/edges", summary="Edge boxes: online/offline, last seen, version, last status and heartbeat")
def edges(request: Request, session: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    now = request.app.state.clock.now()
    cams = dict(session.execute(select(Camera.edge_id, func.count()).group_by(Camera.edge_id)).all())
    items = []
    for e in session.scalars(select(Edge).order_by(Edge.edge_id)):
        items.append({
            "edge_id": e.edge_id, "state": e.state, "online": _online(e.state, e.last_seen_at, now),
            "last_seen_at": iso(e.last_seen_at), "version": e.version, "status": e.status_json,
            "heartbeat": e.heartbeat_json, "heartbeat_at": iso(e.heartbeat_at), "cameras": cams.get(e.edge_id, 0),
        })
    return {"items": items, "total": len(items)}


@router.get("/cameras", summary="Cameras: health (fps, last frame, reconnects), open incidents, latest snapshot, "
            "latest crowd figures, latest live frame")
def cameras(request: Request, session: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    now = request.app.state.clock.now()
    edges = {e.edge_id: e for e in session.scalars(select(Edge))}
    open_incidents = dict(
        session.execute(select(Incident.camera_id, func.count()).where(Incident.state == "open")
                        .group_by(Incident.camera_id)).all()
    )
    latest_ids = (
        select(func.max(Case.id).label("id")).where(Case.snapshot_sha256.is_not(None)).group_by(Case.camera_id)
    ).subquery()
    snapshots = dict(session.execute(select(Case.camera_id, Case.snapshot_sha256).join(
        latest_ids, Case.id == latest_ids.c.id)).all())
    crowd: dict[str, list[dict[str, Any]]] = {}
    for f in session.scalars(select(CrowdFigure).order_by(CrowdFigure.camera_id, CrowdFigure.zone)):
        crowd.setdefault(f.camera_id, []).append({
            "zone": f.zone, "at": iso(f.at), "count": f.count, "density": f.density, "level": f.level,
            **(f.detail_json or {}),
        })
    frames = frame_store(request)
    items = []
    for c in session.scalars(select(Camera).order_by(Camera.camera_id)):
        edge = edges.get(c.edge_id or "")
        snap = snapshots.get(c.camera_id)
        health = c.health_json if isinstance(c.health_json, dict) else {}
        edge_online = _online(edge.state, edge.last_seen_at, now) if edge else False
        items.append({
            # configured location: from incidents, else from the edge's heartbeat (cameras.yaml), before any incident
            "camera_id": c.camera_id, "edge_id": c.edge_id, "name": c.name or _text(health.get("name")),
            "grid_cell": c.grid_cell or _text(health.get("grid_cell")),
            "lat": c.lat if c.lat is not None else _number(health.get("lat")),
            "lon": c.lon if c.lon is not None else _number(health.get("lon")),
            "address": c.address or _text(health.get("address")),
            "health": c.health_json, "updated_at": iso(c.updated_at),
            "edge_online": edge_online,
            # what the dashboard shows: the camera's own state only while its edge reports; else unknown
            "status": (_text(health.get("state")) or "unknown") if edge_online else "unknown",
            "open_incidents": open_incidents.get(c.camera_id, 0),
            "latest_snapshot_sha256": snap,
            "latest_snapshot_url": sign_path(request.app, f"/api/v1/evidence/{snap}") if snap else None,
            "crowd": crowd.get(c.camera_id, []),
            # the edge's newest clean frame (central.live_frames), for the thumbnail and the zone editor
            "live_frame": frame_info(request, frames.get(c.camera_id)),
        })
    return {"items": items, "total": len(items)}


def _text(v: Any) -> str | None:
    return v[:256] if isinstance(v, str) and v else None


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@probe_router.get("/healthz", summary="Liveness: the process answers and the database is reachable",
                  responses={**error_responses(422),
                             503: {"description": "The database is unreachable: {\"status\": \"error\", \"detail\"}"}})
def healthz(request: Request) -> JSONResponse:
    try:
        with request.app.state.session_factory() as session:
            session.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - the probe reports any database failure
        return JSONResponse({"status": "error", "detail": f"database unreachable: {type(e).__name__}"}, 503)
    ingest = getattr(request.app.state, "ingest", None)
    mqtt = None
    if ingest is not None:
        h = ingest.health()
        mqtt = {"connected": h.get("connected"), "subscribed": h.get("subscribed"), "queued": h.get("queued"),
                "processed": h.get("processed")}
    return JSONResponse({"status": "ok", "ingest": mqtt})
