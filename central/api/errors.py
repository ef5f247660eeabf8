"""One error body for the whole API: ``{"detail": "<human text>", "code": "<machine code>"}``.

Validation errors (422) add ``errors``: a list of ``{"loc": "body.action", "msg", "type"}`` with the field paths,
and name those paths in ``detail``. Paths under ``/open311/`` get the GeoReport v2 error format instead
(see ``central.open311``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ErrorItem(BaseModel):
    loc: str = Field(description="Where: 'body.action', 'query.q', 'path.case_id', 'path'.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every API error: a human ``detail`` and a machine ``code``; 422 adds ``errors``."""

    detail: str
    code: str = Field(description="Machine-readable: validation_error, unauthorized, case_not_found, …")
    errors: list[ErrorItem] | None = Field(None, description="422 only: one entry per invalid field.")


_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid Content-Length or evidence id)",
    401: "Missing, invalid or revoked API token",
    403: "The token's role may not do this, or a cross-origin write",
    404: "Not found",
    409: "Conflict (e.g. an illegal workflow transition)",
    413: "Request body over the size limit",
    415: "Unsupported media type",
    422: "Invalid input: a parameter or body field (named in ``errors``) is missing, out of range, or holds text "
         "that cannot be stored (NUL, invalid UTF-8, lone surrogates)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with the ``ErrorBody`` schema for these statuses."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


# Any /api/v1 operation can answer these (auth, the cross-origin guard, the body-size limit, input validation).
COMMON_ERROR_RESPONSES = error_responses(400, 401, 403, 413, 422)


class ApiError(StarletteHTTPException):
    """Raise from a route: ``raise ApiError(409, "…", "illegal_transition")``."""

    def __init__(self, status_code: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code or STATUS_CODES.get(status_code, "error")


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [{"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()]


def _is_open311(request: Request) -> bool:
    return request.url.path.startswith("/open311/")


async def http_exception_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    if _is_open311(request):
        from central.open311 import open311_error

        return open311_error(exc.status_code, str(exc.detail), headers=headers)
    code = getattr(exc, "code", None) or STATUS_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"detail": detail, "code": code}, status_code=exc.status_code, headers=headers)


async def validation_exception_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc)
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    if _is_open311(request):
        from central.open311 import open311_error

        return open311_error(400, f"invalid request: {summary}")
    return JSONResponse(
        {"detail": f"invalid request: {summary}", "code": "validation_error", "errors": errors}, status_code=422
    )


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    if _is_open311(request):
        from central.open311 import open311_error

        return open311_error(500, "internal error")
    return JSONResponse({"detail": "internal error", "code": "internal_error"}, status_code=500)


def document_text_guard(app: FastAPI) -> None:
    """The input guard (``central.api.inputs.TextGuardMiddleware``) can answer 422 on any path, including routes
    added elsewhere: make the OpenAPI document say so for every operation (Open311 ones declare ``4XX``)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorBody" not in schemas:
            full = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(full.pop("$defs", {}))
            schemas["ErrorBody"] = full
        for item in schema.get("paths", {}).values():
            for op in item.values():
                responses = op.setdefault("responses", {})
                if not any(k in responses for k in ("422", "4XX", "default")):
                    responses["422"] = {"description": _DESCRIPTIONS[422], "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_exception_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unhandled_exception_handler)
