"""Application composition: ``create_app(config, …) -> FastAPI``.

Routes: the REST API under ``/api/v1`` (central.api), the Open311 facade under ``/open311/v2``, ``/healthz``,
the dashboard (``central.web.routes.router`` at ``/`` and its static files at ``/static``) when that package is
present, and self-hosted API docs at ``/docs`` (no CDN). ``app.state`` holds config, session_factory, bus, clock,
store, url_secret and, while running, relay, webhooks and ingest.

The lifespan starts the outbox relay (``central.event_relay``: case events from the database, whichever process
wrote them, onto this process's SSE streams), the webhook dispatcher (when webhooks are configured) and, with
``start_ingest=True``, the MQTT ingest; all are stopped on shutdown.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from central.api import api_router, probe_router
from central.api.docs import router as docs_router
from central.api.errors import document_text_guard, install_error_handlers
from central.api.inputs import TextGuardMiddleware
from central.auth import install_log_redaction, url_secret_from_env
from central.clock import Clock, SystemClock
from central.config import CentralConfig
from central.db import make_engine, make_session_factory
from central.event_relay import EventRelay
from central.events import EventBus
from central.metrics import CentralMetrics
from central.metrics import router as metrics_router
from central.open311 import router as open311_router
from central.security import (
    BodySizeLimitMiddleware,
    CrossOriginWriteGuard,
    SecurityHeadersMiddleware,
    security_headers,
)
from central.store import EvidenceStore, FileEvidenceStore
from central.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
OPEN311_PREFIX = "/open311/v2"
# Multipart framing around an upload of max_upload_bytes; JSON bodies are far smaller.
BODY_OVERHEAD_BYTES = 256 * 1024


def _start_ingest(app: FastAPI) -> Any:
    """Start central-core's MQTT ingest thread; returns the runner (it has ``stop()``)."""
    from central.ingest_process import make_ingest

    st = app.state
    runner = make_ingest(
        st.config, session_factory=st.session_factory, bus=st.bus, clock=st.clock, store=st.store
    )
    st.metrics.instrument(runner.ingest)
    runner.start()
    return runner


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    st = app.state
    st.shutting_down = False
    install_log_redaction()  # again: the server configured its logging after create_app
    st.relay = EventRelay(st.session_factory, st.config, st.bus)
    st.relay.start()
    if st.config.webhooks:
        st.webhooks = WebhookDispatcher(st.session_factory, st.config.webhooks, st.config.events)
        st.webhooks.attach(st.bus)
        st.webhooks.start()
    st.escalation = None
    if st.start_escalation and st.config.escalation.enabled:
        from central.escalation import EscalationTicker

        st.escalation = EscalationTicker(st.session_factory, st.config, st.clock, st.bus)
        st.escalation.start()
    if st.config.crowd_response.plans:
        from central.crowd_plans import CrowdResponder

        st.crowd_response = CrowdResponder(st.session_factory, st.config, st.clock, st.bus)
        st.crowd_response.start()
    if st.start_escalation and st.config.findings.enabled:  # `serve`: the weekly findings run
        from central.findings_runs import FindingsScheduler

        st.findings_schedule = FindingsScheduler(st.session_factory, st.config, st.clock)
        st.findings_schedule.start()
    if st.start_ingest and st.config.mqtt.enabled:
        st.ingest = _start_ingest(app)
    try:
        yield
    finally:
        st.shutting_down = True
        if st.escalation is not None:
            st.escalation.stop()
            st.escalation = None
        for name in ("crowd_response", "findings_schedule"):
            if getattr(st, name) is not None:
                getattr(st, name).stop()
                setattr(st, name, None)
        if st.ingest is not None:
            st.ingest.stop()
            st.ingest = None
        if st.webhooks is not None:
            st.webhooks.stop()
            st.webhooks = None
        if st.relay is not None:
            st.relay.stop()
            st.relay = None


def _include_web(app: FastAPI) -> bool:
    """Mount the dashboard when ``central.web.routes`` exists (import errors in it are not hidden)."""
    if importlib.util.find_spec("central.web") is None or importlib.util.find_spec("central.web.routes") is None:
        return False
    from central.web.routes import router as web_router

    app.include_router(web_router)
    static = Path(__file__).parent / "web" / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return True


def create_app(
    config: CentralConfig,
    *,
    session_factory: sessionmaker[Session] | None = None,
    bus: EventBus | None = None,
    clock: Clock | None = None,
    store: EvidenceStore | None = None,
    start_ingest: bool = False,
    include_web: bool = True,
    start_escalation: bool = False,
) -> FastAPI:
    """The central service. Without a ``session_factory`` one is made for ``config.database_url`` (the schema
    must already be migrated: ``gridwatch-central migrate``)."""
    app = FastAPI(
        title="GridWatch central",
        version="1",
        summary="Camera incidents → grid-management cases: workflow, SLA, KPIs, Open311 facade.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's default pages load Swagger UI from a CDN; central.api.docs serves them locally
        redoc_url=None,
    )
    st = app.state
    st.config = config
    st.session_factory = session_factory or make_session_factory(make_engine(config.database_url))
    st.bus = bus or EventBus()
    st.clock = clock or SystemClock()
    st.store = store or FileEvidenceStore(
        config.evidence_dir, max_bytes=max(config.max_upload_bytes, config.max_snapshot_bytes)
    )
    st.url_secret = url_secret_from_env()
    st.start_ingest = start_ingest
    st.start_escalation = start_escalation  # the escalation sweep thread (central.escalation), for `serve`
    st.escalation = None
    st.crowd_response = None  # central.crowd_plans.CrowdResponder, when crowd response plans are configured
    st.findings_schedule = None  # central.findings_runs.FindingsScheduler, in `serve`
    st.ingest = None
    st.webhooks = None
    st.relay = None
    st.shutting_down = False
    st.metrics = CentralMetrics()
    st.metrics.bind(session_factory=st.session_factory, ingest=lambda: st.ingest, bus=st.bus,
                    webhooks=lambda: st.webhooks, relay=lambda: st.relay,
                    webhook_keys=[w.key for w in config.webhooks], clock=st.clock)

    install_error_handlers(app)
    document_text_guard(app)
    install_log_redaction()  # ?token= / ?ticket= / ?sig= never reach the access log in clear
    app.include_router(probe_router)
    if config.api.metrics:
        app.include_router(metrics_router)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(open311_router, prefix=OPEN311_PREFIX)
    app.include_router(docs_router)
    st.web = _include_web(app) if include_web else False

    # Middleware: the last added runs first (outermost).
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_upload_bytes + BODY_OVERHEAD_BYTES)
    app.add_middleware(CrossOriginWriteGuard, allowed_origins=config.api.cors_origins)
    if config.api.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=config.api.cors_origins, allow_credentials=False,
            allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
        )
    # NUL / invalid UTF-8 in the path or query string: refused before any route or log sees it
    app.add_middleware(TextGuardMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, headers=security_headers(config.map.tile_origin()))
    return app
