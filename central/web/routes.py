"""The command-center dashboard: server-rendered page shells plus the zone editor's two API endpoints.

Pages carry no data and need no credentials: each shell loads a small ES module from /static/js that signs in
with an API token (kept in sessionStorage, sent as ``Authorization: Bearer``) and calls the JSON API. There are
no cookies, so a cross-site request can never act with the user's rights (CSRF-safe by construction), and the
CSP allows scripts and styles only from this origin.

``router`` is mounted by ``central.app.create_app`` at "/" and the static files at "/static".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from central.api.errors import ApiError, ErrorBody, error_responses
from central.api.inputs import CaseId, SafeBody
from central.auth import Principal, require
from central.web.zone_editor import ZoneEditorError, managed_cameras, save_zones, validate_zones

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"
LANGUAGES = ("en", "zh-CN")

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
router = APIRouter()

# page name → (template, title key in the i18n files, English title for the server-rendered shell)
PAGES: dict[str, tuple[str, str, str]] = {
    "queue": ("queue.html", "nav.queue", "Case queue"),
    "cameras": ("cameras.html", "nav.cameras", "Cameras & edges"),
    "analytics": ("analytics.html", "nav.analytics", "Analytics"),
    "zones": ("zones.html", "nav.zones", "Zone editor"),
    "command": ("command.html", "nav.command", "Command center"),
    "map": ("map.html", "nav.map", "Map"),
    "report": ("report.html", "nav.report", "Field report"),
    "login": ("login.html", "nav.login", "Sign in"),
}


def _render(request: Request, page: str, **context: Any) -> HTMLResponse:
    template, title_key, title = PAGES[page]
    return templates.TemplateResponse(
        request, template, {"page": page, "title_key": title_key, "title": title, "languages": LANGUAGES, **context}
    )


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/queue", status_code=307)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request) -> HTMLResponse:
    return _render(request, "login")


@router.get("/queue", response_class=HTMLResponse, include_in_schema=False)
def queue_page(request: Request) -> HTMLResponse:
    return _render(request, "queue")


@router.get("/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
def case_page(request: Request, case_id: CaseId) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "case.html",
        {"page": "case", "title_key": "case.title", "title": "Case", "languages": LANGUAGES, "case_id": case_id},
    )


@router.get("/cameras", response_class=HTMLResponse, include_in_schema=False)
def cameras_page(request: Request) -> HTMLResponse:
    return _render(request, "cameras")


@router.get("/analytics", response_class=HTMLResponse, include_in_schema=False)
def analytics_page(request: Request) -> HTMLResponse:
    return _render(request, "analytics")


@router.get("/zones", response_class=HTMLResponse, include_in_schema=False)
def zones_page(request: Request) -> HTMLResponse:
    return _render(request, "zones")


@router.get("/command", response_class=HTMLResponse, include_in_schema=False)
def command_page(request: Request) -> HTMLResponse:
    return _render(request, "command")


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
def map_page(request: Request) -> HTMLResponse:
    return _render(request, "map")


@router.get("/report", response_class=HTMLResponse, include_in_schema=False)
def report_page(request: Request) -> HTMLResponse:
    return _render(request, "report")


# --------------------------------------------------------------------------- zone editor API


class ZonesIn(SafeBody):
    """One camera's complete zone list, as it would appear under the camera in cameras.yaml."""

    model_config = ConfigDict(extra="forbid")
    camera_id: str = Field(max_length=64, description="Camera id (the edge's id pattern).")
    zones: list[Any] = Field(max_length=100, description="Zone mappings; validated by the edge schema, not here.")


def _zone_config_path(request: Request) -> Path | None:
    path = request.app.state.config.zone_config_path
    return Path(path) if path is not None else None


def _api_error(e: ZoneEditorError) -> ApiError:
    return ApiError(e.status, e.message, {404: "camera_not_found", 409: "zone_config_not_managed",
                                          422: "validation_error"}.get(e.status, "zone_editor"))


@router.get("/api/v1/zones/config", tags=["zones"], summary="The edge cameras.yaml this central manages, if any",
            responses=error_responses(400, 401, 403, 404, 409, 413, 422))
def zones_config(request: Request, principal: Annotated[Principal, Depends(require("viewer"))]) -> dict[str, Any]:
    """Whether this central manages an edge cameras.yaml, and that file's cameras with their zones."""
    path = _zone_config_path(request)
    try:
        cameras = managed_cameras(path)
    except ZoneEditorError as e:
        raise _api_error(e) from None
    return {"managed": path is not None, "file": path.name if path else None, "cameras": cameras,
            "can_save": path is not None and principal.has_role("admin")}


@router.post("/api/v1/zones/validate", tags=["zones"], summary="Validate a camera's zones with the edge schema",
             responses=error_responses(400, 401, 403, 404, 409, 413, 422))
def zones_validate(
    request: Request, body: ZonesIn, principal: Annotated[Principal, Depends(require("viewer"))]
) -> dict[str, Any]:
    """Validate one camera's zones exactly as the edge does (``edge.config.parse_config``).

    Always 200 for zones that merely fail validation: ``{"ok", "errors": [{"path", "message"}], "yaml"}`` with the
    edge's paths (``cameras[0].zones[1].points``). When a cameras.yaml is managed the zones are checked inside it.
    """
    try:
        return validate_zones(body.camera_id, body.zones, _zone_config_path(request)).as_dict()
    except ZoneEditorError as e:
        raise _api_error(e) from None


class ZoneErrorItem(BaseModel):
    path: str
    message: str


class ZonesInvalidBody(BaseModel):
    """422 from zones/save when the zones fail the edge's validation (nothing was written)."""

    ok: bool
    errors: list[ZoneErrorItem]
    yaml: str
    detail: str
    code: str


@router.post("/api/v1/zones/save", tags=["zones"], response_model=None,
             responses={**error_responses(400, 401, 403, 404, 409, 413),
                        422: {"model": ErrorBody | ZonesInvalidBody, "description": "Invalid input, or zones that "
                              "do not validate (the edge's errors; nothing is written)"}},
             summary="Admin: write a camera's zones into the managed cameras.yaml")
def zones_save(
    request: Request, body: ZonesIn, principal: Annotated[Principal, Depends(require("admin"))]
) -> dict[str, Any] | JSONResponse:
    """Replace a camera's zones in the managed cameras.yaml (validated first, written atomically).

    409 when no ``zone_config_path`` is configured, 404 for a camera not in that file, 422 with the edge's errors
    when the zones do not validate (nothing is written then). The file path never comes from the request.
    """
    try:
        result = save_zones(body.camera_id, body.zones, _zone_config_path(request), actor=principal.actor)
    except ZoneEditorError as e:
        raise _api_error(e) from None
    if not result.ok:
        return JSONResponse({**result.as_dict(), "detail": "zones do not validate", "code": "invalid_zones"}, 422)
    return {**result.as_dict(), "saved": True}
