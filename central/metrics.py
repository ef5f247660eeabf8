"""Prometheus metrics for the central service: ``GET /metrics`` on ``serve``, and an HTTP listener of its own on
``gridwatch-central ingest --metrics-port``.

Two kinds of figures:

- **this process** — what its MQTT ingest did: messages by outcome, dead letters by reason, batch duration, filing
  latency (edge ``emitted_at`` → case committed), queue depth and broker connection; SSE clients, webhook attempts
  and the newest event its relay put on its SSE streams. Sum them over instances
  (``sum by (outcome) (rate(...[5m]))``).
- **the database** (the same from every instance, so take ``max``) — cases by state, stored dead letters by reason,
  edges online, the outbox's newest event id and the webhook backlog (pending deliveries, oldest age), read at
  scrape time with a few ``GROUP BY`` queries.

Each app gets its own ``CollectorRegistry`` (several apps in one test process must not share counters).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CentralMetrics:
    """The metrics of one central process. ``instrument(ingest_service)`` counts what an ``IngestService`` does;
    ``bind(...)`` names where the scrape-time figures come from."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("gridwatch_ingest_messages", "MQTT messages ingested by this process, by outcome",
                                ["outcome"], registry=r)
        self.dead_letters = Counter("gridwatch_ingest_dead_letters", "Messages this process dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.cases_created = Counter("gridwatch_ingest_cases_created", "Cases opened by this process's ingest",
                                     registry=r)
        self.batch_seconds = Histogram("gridwatch_ingest_batch_seconds", "Time to process and commit one batch",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.filing_latency = Histogram(
            "gridwatch_filing_latency_seconds",
            "From the edge's emitted_at of the event that opened a case to that case's commit (includes the broker "
            "and any backlog; edge and central clocks must agree)", buckets=LATENCY_BUCKETS, registry=r)
        self._sources = _Sources()
        r.register(_ScrapeCollector(self._sources))

    def bind(self, *, session_factory: Any = None, ingest: Callable[[], Any] | None = None,
             bus: Any = None, webhooks: Callable[[], Any] | None = None, relay: Callable[[], Any] | None = None,
             webhook_keys: list[str] | None = None, clock: Any = None, stale_after_s: float = 120.0) -> None:
        s = self._sources
        s.session_factory = session_factory if session_factory is not None else s.session_factory
        s.ingest = ingest or s.ingest
        s.bus = bus if bus is not None else s.bus
        s.webhooks = webhooks or s.webhooks
        s.relay = relay or s.relay
        s.webhook_keys = tuple(webhook_keys) if webhook_keys is not None else s.webhook_keys
        s.clock = clock if clock is not None else s.clock
        s.stale_after_s = stale_after_s

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ ingest
    def instrument(self, service: Any) -> Any:
        """Wrap ``service.handle_batch`` (an ``IngestService``) so every batch is counted once, after its commit.

        The service redoes a failed batch message by message through ``self.handle_batch``: those inner calls are
        passed through uncounted (a thread-local depth), so each message is counted exactly once."""
        if getattr(service, "_gridwatch_metrics", None) is self:
            return service
        inner = service.handle_batch
        local = threading.local()

        def handle_batch(messages: list[tuple[str, bytes]]) -> list[Any]:
            if getattr(local, "depth", 0):
                return inner(messages)
            local.depth = 1
            t0 = time.perf_counter()
            try:
                results = inner(messages)
            finally:
                local.depth = 0
            committed = time.time()
            self.batch_seconds.observe(time.perf_counter() - t0)
            self._count(messages, results, committed)
            return results

        service.handle_batch = handle_batch
        service._gridwatch_metrics = self
        return service

    def _count(self, messages: list[tuple[str, bytes]], results: list[Any], committed: float) -> None:
        for r in results:
            self.messages.labels(r.outcome).inc()
            if r.outcome == "dead_letter":
                self.dead_letters.labels(r.reason or "unknown").inc()
        if len(results) != len(messages):
            return
        for (_, payload), r in zip(messages, results, strict=True):
            if not getattr(r, "case_created", False):
                continue
            self.cases_created.inc()
            emitted = _emitted_at(payload)
            if emitted is not None:
                self.filing_latency.observe(max(0.0, committed - emitted))


def _emitted_at(payload: bytes) -> float | None:
    try:
        text = json.loads(payload)["emitted_at"]
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _Sources:
    session_factory: Any = None
    ingest: Callable[[], Any] | None = None
    bus: Any = None
    webhooks: Callable[[], Any] | None = None
    relay: Callable[[], Any] | None = None
    webhook_keys: tuple[str, ...] = ()
    clock: Any = None
    stale_after_s: float = 120.0


class _ScrapeCollector(Collector):
    """Figures read when Prometheus scrapes: the database's and the live objects' of this process."""

    def __init__(self, sources: _Sources):
        self.s = sources

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        if self.s.session_factory is not None:
            try:
                yield from self._database()
            except Exception as e:  # noqa: BLE001 - a scrape must answer even with the database down
                log.warning("metrics: database figures unavailable: %s", e)
                up = GaugeMetricFamily("gridwatch_database_up", "1 when the scrape could read the database")
                up.add_metric([], 0)
                yield up

    def _process(self) -> Iterator[Metric]:
        runner = self.s.ingest() if self.s.ingest else None
        if runner is not None:
            h = runner.health()
            for name, key, doc in (("gridwatch_ingest_queue_depth", "queued", "Messages received, not yet committed"),
                                   ("gridwatch_ingest_connected", "connected", "1 while connected to the broker")):
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], float(h.get(key) or 0))
                yield g
            g = GaugeMetricFamily("gridwatch_ingest_database_errors", "Batches not committed (database unavailable) "
                                  "since start; a rising value means ingest is stalled")
            g.add_metric([], float(h.get("db_errors") or 0))
            yield g
            frames = h.get("live_frames")
            if isinstance(frames, dict):  # central.live_frames: best effort, outside the batches above
                c = CounterMetricFamily("gridwatch_live_frames", "Live camera frames since start, by result "
                                        "(stored, cleared, dead_letter, superseded by a newer one)", labels=["result"])
                for result, key in (("stored", "stored"), ("cleared", "cleared"), ("dead_letter", "dead_letters"),
                                    ("superseded", "superseded")):
                    c.add_metric([result], float(frames.get(key) or 0))
                yield c
        if self.s.bus is not None:
            g = GaugeMetricFamily("gridwatch_sse_clients", "Open server-sent event streams on this process")
            g.add_metric([], float(self.s.bus.stream_count))
            yield g
        hooks = self.s.webhooks() if self.s.webhooks else None
        if hooks is not None:
            g = GaugeMetricFamily("gridwatch_webhook_deliveries", "Webhook attempts by this process since start, by "
                                  "result (retried: failed and scheduled again)", labels=["result"])
            for result in ("delivered", "failed", "retried"):
                g.add_metric([result], float(getattr(hooks.stats, result)))
            yield g
        relay = self.s.relay() if self.s.relay else None
        if relay is not None:
            g = GaugeMetricFamily("gridwatch_event_relay_last_id", "Newest outbox event this process has put on its "
                                  "SSE streams (compare gridwatch_event_outbox_last_id)")
            g.add_metric([], float(relay.last_id))
            yield g

    def _database(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from central.db import Case, DeadLetter, Edge

        with self.s.session_factory() as session:
            by_state = dict(session.execute(select(Case.state, func.count()).group_by(Case.state)).all())
            by_reason = dict(session.execute(select(DeadLetter.reason, func.count())
                                             .group_by(DeadLetter.reason)).all())
            edges = list(session.execute(select(Edge.edge_id, Edge.state, Edge.last_seen_at)).all())
        from central.workflow import STATES

        cases = GaugeMetricFamily("gridwatch_cases", "Cases in the database, by state", labels=["state"])
        for state in sorted(set(STATES) | set(by_state)):
            cases.add_metric([state], float(by_state.get(state, 0)))
        yield cases
        dl = GaugeMetricFamily("gridwatch_dead_letters_stored", "Dead letters in the database, by reason",
                               labels=["reason"])
        for reason, n in sorted(by_reason.items()):
            dl.add_metric([reason or "unknown"], float(n))
        yield dl
        now = self.s.clock.now() if self.s.clock is not None else None
        up = GaugeMetricFamily("gridwatch_edge_online", "1 when the edge's last status is online and recent",
                               labels=["edge_id"])
        for edge_id, state, last_seen in edges:
            fresh = now is not None and last_seen is not None and _age_s(now, last_seen) <= self.s.stale_after_s
            up.add_metric([edge_id], 1.0 if state == "online" and fresh else 0.0)
        yield up
        yield from self._events()
        ok = GaugeMetricFamily("gridwatch_database_up", "1 when the scrape could read the database")
        ok.add_metric([], 1)
        yield ok

    def _events(self) -> Iterator[Metric]:
        """The outbox's newest id and the webhook backlog (pending deliveries of the configured webhooks)."""
        from sqlalchemy import func, select

        from central.db import OutboxEvent, WebhookDelivery

        keys = list(self.s.webhook_keys)
        with self.s.session_factory() as session:
            top = session.scalar(select(func.max(OutboxEvent.id))) or 0
            pending = {} if not keys else {k: (n, oldest) for k, n, oldest in session.execute(
                select(WebhookDelivery.webhook, func.count(), func.min(WebhookDelivery.created_at))
                .where(WebhookDelivery.status == "pending", WebhookDelivery.webhook.in_(keys))
                .group_by(WebhookDelivery.webhook)).all()}
        g = GaugeMetricFamily("gridwatch_event_outbox_last_id", "Newest case event id in the outbox")
        g.add_metric([], float(top))
        yield g
        backlog = GaugeMetricFamily("gridwatch_webhook_backlog", "Webhook deliveries not yet delivered or given up "
                                    "(all configured webhooks, from the database)")
        backlog.add_metric([], float(sum(n for n, _ in pending.values())))
        yield backlog
        by = GaugeMetricFamily("gridwatch_webhook_pending", "Pending deliveries per webhook", labels=["webhook"])
        age = GaugeMetricFamily("gridwatch_webhook_oldest_pending_seconds", "Age of the oldest pending delivery per "
                                "webhook (0 when none)", labels=["webhook"])
        now = datetime.now(UTC)
        for k in keys:
            n, oldest = pending.get(k, (0, None))
            by.add_metric([k], float(n))
            age.add_metric([k], max(0.0, _age_s(now, oldest)) if oldest is not None else 0.0)
        yield by
        yield age


def _age_s(now: datetime, then: datetime) -> float:
    if then.tzinfo is None and now.tzinfo is not None:
        now = now.replace(tzinfo=None)
    return (now - then).total_seconds()


def serve_metrics(metrics: CentralMetrics, port: int, addr: str = "127.0.0.1") -> Any:
    """A Prometheus listener for processes without the API (``gridwatch-central ingest``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server


# --------------------------------------------------------------------------- GET /metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
def metrics_endpoint(request: Request) -> Response:
    """Ingest, dead letters, filing latency, cases by state, SSE clients, webhook backlog (see docs/deploy.md).

    No API token is needed unless central.yaml sets ``api.metrics_token`` (then ``Authorization: Bearer``)."""
    st = request.app.state
    token = st.config.api.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse({"detail": "metrics need the configured bearer token", "code": "unauthorized"},
                                401, headers={"WWW-Authenticate": "Bearer"})
    return Response(st.metrics.render(), media_type=CONTENT_TYPE)
