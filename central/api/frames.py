"""A camera's latest live frame (central.live_frames): the zone editor's background and the cameras page thumbnail.

Auth as for evidence (Bearer, a signed URL from ``/api/v1/cameras``, or ``?token=``). The camera id is checked
against the edge's id pattern before anything else, and the file name on disk is a hash of it, so no request
can name a path.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from central.api.errors import ApiError, error_responses
from central.auth import Principal, get_principal_for_get, sign_path
from central.live_frames import ID_RE, LiveFrame, LiveFrameStore

router = APIRouter(tags=["cameras"])


def frame_store(request: Request) -> LiveFrameStore:
    cfg = request.app.state.config
    return LiveFrameStore(cfg.live_frames.directory(cfg.evidence_dir))


def frame_info(request: Request, frame: LiveFrame | None) -> dict[str, Any] | None:
    """What ``/api/v1/cameras`` says about a camera's live frame, with a signed URL an ``<img>`` can load."""
    if frame is None:
        return None
    path = f"/api/v1/cameras/{frame.camera_id}/frame"
    return {**frame.meta(), "url": sign_path(request.app, path)}


@router.get(
    "/cameras/{camera_id}/frame",
    summary="The camera's latest clean live frame (JPEG, no overlays; Bearer, a signed URL or ?token=)",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The JPEG; X-Frame-At is its capture time"},
        **error_responses(400, 404),
    },
)
def get_frame(
    request: Request, camera_id: str, principal: Annotated[Principal, Depends(get_principal_for_get)]
) -> Response:
    if not ID_RE.match(camera_id):
        raise ApiError(400, f"camera id {camera_id[:80]!r} must match {ID_RE.pattern}", "invalid_camera_id")
    frame = frame_store(request).get(camera_id)
    data = None
    if frame is not None:
        try:
            data = frame.path.read_bytes()  # whole file in memory (≤ live_frames.max_bytes): a newer one may land
        except OSError:
            data = None
    if frame is None or data is None:
        raise ApiError(404, f"camera {camera_id} has no live frame yet (its edge publishes one on start and every "
                            "mqtt.live_frames.interval_s)", "no_live_frame")  # fmt: skip
    return Response(
        data,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, no-cache",
            "ETag": f'"{frame.sha256}"',
            "X-Frame-At": str(frame.at),
            "X-Frame-Edge": str(frame.edge_id),
            "Content-Disposition": f'inline; filename="{camera_id}-live.jpg"',
        },
    )
