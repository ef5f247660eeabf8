"""Open311 GeoReport v2 read-only facade, so existing 311 tools can read GridWatch cases.

Endpoints (JSON only; XML is not offered): ``GET /open311/v2/services.json``, ``GET /open311/v2/requests.json``
and ``GET /open311/v2/requests/{service_request_id}.json``. There is no ``POST requests``: cases come from cameras.

Access: unauthenticated, because it exposes only what a public 311 feed would — the category, status, a generic
status note, the responsible department, times and location. Internal notes, squads, assignees, camera ids and
evidence images are never exposed (``media_url`` is always null) so no face or number plate leaves the system.

Mapping: ``service_request_id`` = the case's public id (``GW-20261122-000123``); ``status`` is ``closed`` for
closed, archived, rejected and duplicate cases, else ``open``; ``expected_datetime`` is the handling deadline.
Errors are a JSON array of ``{"code": <int>, "description": <str>}`` with the HTTP status equal to ``code``.
Filters: ``service_request_id`` (comma list), ``service_code`` (comma list), ``status`` (open|closed, comma list),
``start_date``/``end_date`` (ISO 8601 with time zone, on requested_datetime; without either the last 90 days as
the spec suggests), and the common extension ``page`` (1-based) / ``page_size`` (default 100, at most 1000).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.db import Case


class Open311ErrorItem(BaseModel):
    code: int
    description: str


# GeoReport v2 errors (400 for any invalid parameter, including validation; 404 for an unknown request id).
router = APIRouter(tags=["open311"], responses={"4XX": {"model": list[Open311ErrorItem],
                                                        "description": "GeoReport v2 error list"}})
DB_INT_MAX = 2**31 - 1

CLOSED_STATES = frozenset({"closed", "archived", "rejected", "duplicate"})
STATUS_NOTES: dict[str, str] = {
    "reported": "Reported by an automatic camera check; awaiting review.",
    "filed": "Accepted and filed; awaiting dispatch.",
    "rejected": "Reviewed and rejected: no action needed.",
    "dispatched": "Dispatched to the responsible department or squad.",
    "in_progress": "A squad is handling the issue.",
    "handled": "Handled; awaiting verification.",
    "verifying": "Being verified.",
    "closed": "Resolved and verified.",
    "archived": "Resolved and archived.",
    "duplicate": "Closed as a duplicate of another request.",
    "suspended": "On hold.",
}
DEFAULT_WINDOW = timedelta(days=90)
MAX_PAGE_SIZE = 1000


class Open311Error(Exception):
    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


def open311_error(code: int, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """GeoReport v2 error body: ``[{"code": 404, "description": "…"}]``."""
    return JSONResponse([{"code": code, "description": description}], status_code=code, headers=headers)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset, as the spec requires (``2026-11-22T09:15:30+00:00``)."""
    return dt.isoformat(timespec="seconds") if dt is not None else None


def request_status(state: str) -> str:
    return "closed" if state in CLOSED_STATES else "open"


def service_json(category: Any) -> dict[str, Any]:
    """A ``CategoryConfig`` as a GeoReport v2 service."""
    keywords = ",".join(k for k in (category.code, category.name_zh) if k)
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": category.name + (f" ({category.name_zh})" if category.name_zh else ""),
        "metadata": False,
        "type": "realtime",
        "keywords": keywords,
        "group": category.department or "",
    }


def request_json(case: Case, categories: dict[str, Any]) -> dict[str, Any]:
    """A case as a GeoReport v2 service request (public fields only)."""
    category = categories.get(case.category)
    name = category.name if category else case.category
    # Not the case title: it names the camera. Only the category and the public address are described.
    description = f"{name} at {case.address}" if case.address else name
    return {
        "service_request_id": case.public_id or str(case.id),
        "status": request_status(case.state),
        "status_notes": STATUS_NOTES.get(case.state, case.state),
        "service_name": name,
        "service_code": case.category,
        "description": description,
        "agency_responsible": case.department or (category.department if category else None),
        "service_notice": None,
        "requested_datetime": iso(case.reported_at),
        "updated_datetime": iso(case.updated_at),
        "expected_datetime": iso(case.due_at),
        "address": case.address,
        "address_id": None,
        "zipcode": None,
        "lat": case.lat,
        "long": case.lon,
        "media_url": None,
    }


def _parse_date(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} {value!r} is not an ISO 8601 date-time") from None
    if dt.tzinfo is None:
        raise Open311Error(400, f"{name} {value!r} needs a time zone (Z or ±HH:MM)")
    return dt


def _is_db_id(value: str) -> bool:
    """ASCII digits only (``'²'.isdigit()`` is true) and within the integer id range of the databases."""
    return value.isascii() and value.isdigit() and len(value) <= 10 and 1 <= int(value) <= DB_INT_MAX


def _parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 12) or not lo <= int(value) <= hi:
        raise Open311Error(400, f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _session(request: Request) -> Session:
    return request.app.state.session_factory()


def _categories(request: Request) -> dict[str, Any]:
    return {c.code: c for c in request.app.state.config.categories}


def _guard(fn: Any) -> Any:
    """Turn ``Open311Error`` into the GeoReport error body."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Open311Error as e:
            return open311_error(e.code, e.description)

    return wrapper


@router.get("/services.json", summary="GeoReport v2: list services (case categories)")
@_guard
def services(request: Request) -> JSONResponse:
    return JSONResponse([service_json(c) for c in request.app.state.config.categories])


@router.get("/requests.json", summary="GeoReport v2: query service requests (cases)")
@_guard
def requests(request: Request) -> JSONResponse:
    q = request.query_params
    ids = _csv(q.get("service_request_id"))
    codes = _csv(q.get("service_code"))
    statuses = _csv(q.get("status"))
    bad = [s for s in statuses if s not in ("open", "closed")]
    if bad:
        raise Open311Error(400, f"status must be 'open' or 'closed', got {bad[0]!r}")
    known = _categories(request)
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise Open311Error(400, f"unknown service_code {unknown[0]!r}")
    start = _parse_date("start_date", q.get("start_date"))
    end = _parse_date("end_date", q.get("end_date"))
    if start and end and end < start:
        raise Open311Error(400, "end_date is before start_date")
    page = _parse_int("page", q.get("page"), 1, 1, 1_000_000)
    page_size = _parse_int("page_size", q.get("page_size"), 100, 1, MAX_PAGE_SIZE)

    stmt = select(Case)
    if ids:
        # The spec: when service_request_id is given, all other parameters are ignored.
        if len(ids) > 100 or any(len(i) > 64 for i in ids):
            raise Open311Error(400, "service_request_id: at most 100 ids of at most 64 characters")
        numeric = [int(i) for i in ids if _is_db_id(i)]
        stmt = stmt.where(Case.public_id.in_(ids) | Case.id.in_(numeric))
    else:
        if codes:
            stmt = stmt.where(Case.category.in_(codes))
        if len(set(statuses)) == 1:
            closed = statuses[0] == "closed"
            stmt = stmt.where(Case.state.in_(CLOSED_STATES) if closed else Case.state.not_in(CLOSED_STATES))
        if start is None and end is None:
            start = request.app.state.clock.now() - DEFAULT_WINDOW
        if start is not None:
            stmt = stmt.where(Case.reported_at >= start)
        if end is not None:
            stmt = stmt.where(Case.reported_at <= end)
    with _session(request) as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = session.scalars(
            stmt.order_by(Case.reported_at.desc(), Case.id.desc()).limit(page_size).offset((page - 1) * page_size)
        ).all()
        body = [request_json(c, known) for c in rows]
    return JSONResponse(body, headers={"X-Total-Count": str(total)})


@router.get("/requests/{service_request_id}.json", summary="GeoReport v2: one service request")
@_guard
def request_by_id(request: Request, service_request_id: str) -> JSONResponse:
    if len(service_request_id) > 64:
        raise Open311Error(400, "service_request_id is too long")
    with _session(request) as session:
        case = session.scalar(select(Case).where(Case.public_id == service_request_id))
        if case is None and _is_db_id(service_request_id):
            case = session.get(Case, int(service_request_id))
        if case is None:
            raise Open311Error(404, f"service request {service_request_id!r} not found")
        # The spec returns a one-element array for a single request.
        return JSONResponse([request_json(case, _categories(request))])
