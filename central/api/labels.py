"""Display names for the codes the dashboard shows: departments, squads, cameras and zones (from central.yaml)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from central.auth import CurrentPrincipal

router = APIRouter(tags=["meta"])


def labels_document(config: Any) -> dict[str, Any]:
    """central.yaml's ``departments``, ``squads`` and ``display_names`` as one JSON document.

    Department names also come from categories' ``department`` codes that have no entry (name = code), so the
    picker and the labels cover every department a case can have."""
    departments = [d.model_dump(mode="json") for d in config.departments]
    known = {d["code"] for d in departments}
    for c in config.categories:
        if c.department and c.department not in known:
            known.add(c.department)
            departments.append({"code": c.department, "name": c.department, "name_zh": None})
    return {
        "departments": departments,
        "squads": [q.model_dump(mode="json") for q in config.squads],
        "cameras": {k: v.model_dump(mode="json") for k, v in config.display_names.cameras.items()},
        "zones": {k: v.model_dump(mode="json") for k, v in config.display_names.zones.items()},
    }


@router.get("/labels", summary="Display names for departments, squads, cameras and zones (central.yaml)")
def labels(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    return labels_document(request.app.state.config)
