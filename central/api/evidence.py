"""Evidence download by sha256: the id is validated as 64 hex characters before any file-system access, so no
path from a request ever reaches the disk (``../``, ``%2e%2e``, absolute paths → 400 or 404)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from central.api.errors import ApiError, error_responses
from central.auth import Principal, get_principal_for_get

router = APIRouter(tags=["evidence"])

_SHA = re.compile(r"^[0-9a-f]{64}$")
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


@router.get(
    "/evidence/{sha256}",
    summary="Download evidence (Bearer, a signed URL from a case view, or ?token=)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **error_responses(404)},
)
def get_evidence(
    request: Request, sha256: str, principal: Annotated[Principal, Depends(get_principal_for_get)]
) -> Response:
    sha = sha256.lower()
    if not _SHA.match(sha):
        raise ApiError(400, "evidence id must be a sha256: 64 hexadecimal characters", "invalid_evidence_id")
    store = request.app.state.store
    if not store.exists(sha):
        raise ApiError(404, f"evidence {sha} not found", "evidence_not_found")
    content_type = store.content_type(sha) or "application/octet-stream"
    disposition = "inline" if content_type in INLINE_TYPES else "attachment"
    ext = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf"}
    return FileResponse(
        store.path(sha),
        media_type=content_type,
        headers={
            "Content-Disposition": f'{disposition}; filename="{sha}{ext.get(content_type, "")}"',
            # Content-addressed: the bytes behind this URL never change.
            "Cache-Control": "private, max-age=86400, immutable",
            "ETag": f'"{sha}"',
        },
    )
