"""The REST API under ``/api/v1`` (see docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter

from central.api import analytics, cases, command, evidence, frames, health, labels, meta, silences, stream
from central.api.errors import COMMON_ERROR_RESPONSES

api_router = APIRouter(responses=COMMON_ERROR_RESPONSES)
for _module in (cases, evidence, frames, health, analytics, silences, meta, labels, stream, command):
    api_router.include_router(_module.router)

probe_router = health.probe_router

__all__ = ["api_router", "probe_router"]
