"""The REST API under ``/api/v1`` (see docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter

from central.api import analytics, cases, evidence, health, meta, silences, stream

api_router = APIRouter()
for _module in (cases, evidence, health, analytics, silences, meta, stream):
    api_router.include_router(_module.router)

probe_router = health.probe_router

__all__ = ["api_router", "probe_router"]
