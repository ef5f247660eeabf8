"""Cases: list with filters and pagination, detail (evidence, audit, allowed actions), transitions, notes and
attachment uploads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import ConfigDict, Field
from sqlalchemy import select

from central.api.deps import Cases, iso, parse_when
from central.api.errors import ApiError, error_responses
from central.api.inputs import DB_INT_MAX, CaseId, SafeBody
from central.auth import CurrentPrincipal, Principal, check_action, require_any, sign_path
from central.db import Incident
from central.images import ImageRefused, sanitize_upload, sniff_image_type
from central.store import EvidenceError
from central.workflow import ACTIONS, STATES, CaseFilters, CaseNotFound, IllegalTransition, TransitionInputError

router = APIRouter(tags=["cases"])

EVIDENCE_URL_TTL_S = 3600
__all__ = ["router", "sniff_image_type"]  # sniff_image_type: central.images, re-exported for older imports


class TransitionIn(SafeBody):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="One of the workflow actions, e.g. dispatch, start, feedback, verify_pass.")
    note: str | None = Field(None, max_length=4000)
    squad: str | None = Field(None, max_length=128)
    assignee: str | None = Field(None, max_length=128)
    department: str | None = Field(None, max_length=128)
    attachments: list[str] = Field(default_factory=list, max_length=20,
                                   description="sha256 of files uploaded with POST …/attachments")


class NoteIn(SafeBody):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000)
    attachments: list[str] = Field(default_factory=list, max_length=20)


def _not_found(case_id: int) -> ApiError:
    return ApiError(404, f"case {case_id} not found", "case_not_found")


def evidence_json(request: Request, ev: Any) -> dict[str, Any]:
    return {
        "sha256": ev.sha256, "kind": ev.kind, "content_type": ev.content_type, "bytes": ev.bytes, "at": iso(ev.at),
        "actor": ev.actor, "incident_id": ev.incident_id,
        "url": sign_path(request.app, f"/api/v1/evidence/{ev.sha256}", EVIDENCE_URL_TTL_S),
    }


def audit_json(a: Any) -> dict[str, Any]:
    return {
        "id": a.id, "at": iso(a.at), "actor": a.actor, "action": a.action, "from_state": a.from_state,
        "to_state": a.to_state, "note": a.note, "attachments": a.attachments_json or [],
    }


def _summary(request: Request, cases: Any, case: Any) -> dict[str, Any]:
    out = cases.summary(case)
    if case.snapshot_sha256:
        out["snapshot_url"] = sign_path(request.app, f"/api/v1/evidence/{case.snapshot_sha256}", EVIDENCE_URL_TTL_S)
    return out


@router.get("/cases", summary="List cases (newest first) with filters and pagination")
def list_cases(
    request: Request,
    cases: Cases,
    principal: CurrentPrincipal,
    state: Annotated[list[str] | None, Query(description="State(s); repeat or comma-separate.")] = None,
    category: str | None = None,
    grid_cell: Annotated[str | None, Query(description="Grid cell or prefix of one.")] = None,
    grid_unit: Annotated[str | None, Query(max_length=64, description="Cases in this grid unit of any level "
                                           "(district, street, community or cell; see GET /grid).")] = None,
    camera_id: str | None = None,
    squad: str | None = None,
    since: Annotated[str | None, Query(description="reported_at ≥ since: ISO 8601 or relative (7d, 24h).")] = None,
    until: Annotated[str | None, Query(description="reported_at < until: ISO 8601 or relative.")] = None,
    overdue: bool | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Text search in id, title, address, zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before_id: Annotated[int | None, Query(ge=1, le=DB_INT_MAX,
                                           description="Keyset pagination: cases with id < before_id.")] = None,
) -> dict[str, Any]:
    states = [s for part in (state or []) for s in part.split(",") if s]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ApiError(422, f"query.state: unknown state {unknown[0]!r}; states are {', '.join(STATES)}",
                       "validation_error")
    if category is not None and request.app.state.config.category(category) is None:
        raise ApiError(422, f"query.category: unknown category {category!r}", "validation_error")
    filters = CaseFilters(
        states=states, category=category, grid_cell=grid_cell, camera_id=camera_id, squad=squad,
        since=parse_when("since", since, request), until=parse_when("until", until, request), overdue=overdue, q=q,
        before_id=before_id,
    )
    if grid_unit:
        from central.api.command import cells_for, grid_of

        filters.grid_cells = cells_for(grid_of(request, cases.session), grid_unit)
    items, total = cases.list_cases(filters, limit=limit, offset=offset)
    return {
        "items": [_summary(request, cases, c) for c in items], "total": total, "limit": limit, "offset": offset,
        "next_before_id": items[-1].id if len(items) == limit else None,
    }


@router.get("/cases/{case_id}", summary="Case detail: evidence, audit log and the caller's allowed actions",
            responses=error_responses(404))
def case_detail(request: Request, case_id: CaseId, cases: Cases, principal: CurrentPrincipal) -> dict[str, Any]:
    try:
        case = cases.get_case(case_id)
        audit = cases.audit(case_id)
    except CaseNotFound:
        raise _not_found(case_id) from None
    evidence = [evidence_json(request, e) for e in cases.evidence(case_id)]
    out = _summary(request, cases, case)
    out.update(
        description=case.description,
        verified_at=iso(case.verified_at),
        archived_at=iso(case.archived_at),
        evidence=evidence,
        before=[e for e in evidence if e["kind"] == "before"],
        after=[e for e in evidence if e["kind"] == "after"],
        audit=[audit_json(a) for a in audit],
        notes=[audit_json(a) for a in audit if a.action == "note"],
        allowed_actions=cases.allowed_actions(case, principal.role),
    )
    crowd = _latest_crowd(cases, case_id)
    if crowd is not None:
        out["crowd"] = crowd  # crowd cases: the newest count, its interval, level and forecast
        from central.crowd_plans import plan_view

        out["crowd_plan"] = plan_view(request.app.state.config, case, crowd)  # the response plan for that level
    out["grid_path"] = _grid_path(request, cases, case.grid_cell)
    if case.previous_case_id is not None:
        prev = cases.session.get(type(case), case.previous_case_id)
        out["previous_case_public_id"] = prev.public_id if prev is not None else None
    return out


def _grid_path(request: Request, cases: Any, cell: str | None) -> list[dict[str, Any]]:
    """District → street → community → cell of the case's grid cell (only the levels the hierarchy knows)."""
    from central.api.command import grid_of

    g = grid_of(request, cases.session)
    out = []
    for level, code in g.ancestors(cell).items():
        u = g.get(code)
        if u is not None:
            out.append({"level": level, "code": u.code, "name": u.name, "name_zh": u.name_zh, "team": u.team})
    return out


def _latest_crowd(cases: Any, case_id: int) -> dict[str, Any] | None:
    row = cases.session.execute(
        select(Incident.payload_json).where(Incident.case_id == case_id, Incident.type == "crowd_density")
        .order_by(Incident.last_seen_at.desc()).limit(1)
    ).scalar_one_or_none()
    crowd = row.get("crowd") if isinstance(row, dict) else None
    return crowd if isinstance(crowd, dict) else None


@router.post("/cases/{case_id}/transitions", summary="Apply a workflow action (409 when illegal from the state)",
             responses=error_responses(404, 409))
def transition(
    request: Request, case_id: CaseId, body: TransitionIn, cases: Cases, principal: CurrentPrincipal
) -> dict[str, Any]:
    if body.action not in ACTIONS:
        raise ApiError(422, f"body.action: unknown action {body.action!r}; actions are {', '.join(ACTIONS)}",
                       "validation_error")
    check_action(principal, body.action)
    try:
        case = cases.transition(
            case_id, body.action, principal.actor, note=body.note, squad=body.squad, assignee=body.assignee,
            department=body.department, attachments=body.attachments,
        )
    except CaseNotFound:
        raise _not_found(case_id) from None
    except IllegalTransition as e:
        raise ApiError(409, f"illegal transition: {e}", "illegal_transition") from None
    except (TransitionInputError, EvidenceError) as e:
        raise ApiError(422, str(e), "invalid_transition_input") from None
    out = _summary(request, cases, case)
    out["allowed_actions"] = cases.allowed_actions(case, principal.role)
    return out


@router.post("/cases/{case_id}/notes", status_code=201, summary="Add a note to the audit log",
             responses=error_responses(404))
def add_note(
    case_id: CaseId, body: NoteIn, cases: Cases,
    principal: Annotated[Principal, Depends(require_any("dispatcher", "handler"))],
) -> dict[str, Any]:
    try:
        row = cases.add_note(case_id, principal.actor, body.note, body.attachments)
    except CaseNotFound:
        raise _not_found(case_id) from None
    except (TransitionInputError, EvidenceError) as e:
        raise ApiError(422, str(e), "invalid_note") from None
    return audit_json(row)


@router.post("/cases/{case_id}/attachments", status_code=201, summary="Upload a JPEG/PNG photo for a case",
             description="The photo is decoded fully and stored as a re-encoded JPEG (no EXIF/GPS or other metadata, "
             "long side at most 4096 px); the response's sha256, bytes and content_type (image/jpeg) describe the "
             "stored copy. A file that does not decode is refused (415 not JPEG/PNG, 422 invalid_image, "
             "413 image_too_large).",
             responses=error_responses(404, 415))
def upload_attachment(
    request: Request,
    case_id: CaseId,
    cases: Cases,
    principal: Annotated[Principal, Depends(require_any("dispatcher", "handler"))],
    file: Annotated[UploadFile, File(description="JPEG or PNG; the type is detected from the bytes, the image "
                                               "decoded and re-encoded.")],
    kind: Annotated[Literal["after", "attachment"], Form()] = "attachment",
) -> dict[str, Any]:
    limit = request.app.state.config.max_upload_bytes
    data = file.file.read(limit + 1)  # a sync route: runs in the thread pool, so blocking reads are fine
    file.file.close()
    if len(data) > limit:
        raise ApiError(413, f"file exceeds the upload limit of {limit} bytes", "payload_too_large")
    if not data:
        raise ApiError(422, "file: the upload is empty", "validation_error")
    try:
        cases.get_case(case_id)  # before spending CPU on decoding
    except CaseNotFound:
        raise _not_found(case_id) from None
    try:
        image = sanitize_upload(data, request.app.state.store.max_bytes)
    except ImageRefused as e:
        raise ApiError(e.status, e.message, e.code) from None
    try:
        sha = cases.add_evidence(case_id, principal.actor, image.data, image.content_type, kind)
    except CaseNotFound:
        raise _not_found(case_id) from None
    except (TransitionInputError, EvidenceError) as e:
        raise ApiError(422, str(e), "invalid_attachment") from None
    return {
        "sha256": sha, "kind": kind, "content_type": image.content_type, "bytes": len(image.data),
        "width": image.width, "height": image.height,
        "url": sign_path(request.app, f"/api/v1/evidence/{sha}", EVIDENCE_URL_TTL_S),
    }
