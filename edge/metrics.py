"""The edge's HTTP endpoint (``health.listen`` in cameras.yaml): Prometheus metrics at ``/metrics``, liveness at
``/healthz``.

Metrics (``gridwatch_edge_*``), read from the running worker at scrape time:

- per camera (label ``camera_id``): ``camera_state{state}`` (1 for the current state), ``decode_fps``,
  ``analysed_fps`` (what the detector really analysed over the last minute) against ``detect_fps_target``,
  ``frames_decoded_total``, ``frames_analysed_total``, ``reconnects_total``, ``last_frame_timestamp_seconds``,
  ``last_analysed_timestamp_seconds``, ``open_incidents``;
- ``detector_batch_seconds`` histogram (one shared detector: a batch holds every camera with a new frame);
- the publisher: ``outbox_depth``, ``outbox_dropped``, ``mqtt_connected``, ``events_published_total``,
  ``events_acked_total``, ``last_publish_timestamp_seconds`` (last broker acknowledgement of an incident event);
- ``incident_events_total{event}``, ``uptime_seconds``.

``/healthz`` answers 200 while the pipeline loop turns (it ran within ``stale_after_s``) and the evidence thread is
alive, else 503; the body lists camera states and the broker connection (informational: a camera that is down is
not a reason to restart the edge). The server is a ``ThreadingHTTPServer`` on a daemon thread, started and stopped
with the worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.sources.health import CameraState

log = logging.getLogger("gridwatch.edge.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DETECT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATES = [s.value for s in CameraState]


class EdgeMetrics:
    """Metrics of one ``EdgeWorker`` (and its publisher, when it has one)."""

    def __init__(self, worker: Any, *, stale_after_s: float = 60.0):
        self.worker = worker
        self.stale_after_s = stale_after_s
        self.registry = CollectorRegistry(auto_describe=True)
        self.detect_batch = Histogram("gridwatch_edge_detector_batch_seconds",
                                      "Detector time per batch (all cameras with a new frame)",
                                      buckets=DETECT_BUCKETS, registry=self.registry)
        self.last_publish_at: float | None = None
        self.registry.register(_WorkerCollector(self))
        worker.stats.observers.append(self._on_stage)
        pub = getattr(worker, "publisher", None)
        if pub is not None and hasattr(pub, "on_ack"):
            previous = pub.on_ack

            def on_ack(meta: dict) -> None:
                self.last_publish_at = meta.get("acked_at") or time.time()
                if previous is not None:
                    previous(meta)

            pub.on_ack = on_ack

    def _on_stage(self, stage: str, ms: float) -> None:
        if stage == "detect_total":
            self.detect_batch.observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> tuple[bool, dict[str, Any]]:
        w = self.worker
        age = time.monotonic() - getattr(w, "last_loop_at", time.monotonic())
        evidence = getattr(w, "_evidence_thread", None)
        evidence_alive = evidence is None or evidence.is_alive()
        pub = getattr(w, "publisher", None)
        ok = age <= self.stale_after_s and evidence_alive and not w.stopping
        body = {
            "status": "ok" if ok else "error",
            "edge_id": w.config.edge_id,
            "loop_age_s": round(age, 1),
            "evidence_thread": evidence_alive,
            "mqtt": None if pub is None else {"connected": bool(pub.connected), "pending": pub.outbox.pending()},
            "cameras": {row["camera_id"]: row["state"] for row in w.health()},
        }
        return ok, body


class _WorkerCollector(Collector):
    def __init__(self, metrics: EdgeMetrics):
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        w = self.m.worker
        rows = w.health()
        state = GaugeMetricFamily("gridwatch_edge_camera_state", "1 for the camera's current state",
                                  labels=["camera_id", "state"])
        gauges = {
            "decode_fps": GaugeMetricFamily("gridwatch_edge_camera_decode_fps", "Frames decoded per second",
                                            labels=["camera_id"]),
            "analysed_fps": GaugeMetricFamily("gridwatch_edge_camera_analysed_fps",
                                              "Frames the detector analysed per second (last minute)",
                                              labels=["camera_id"]),
            "detect_fps": GaugeMetricFamily("gridwatch_edge_camera_detect_fps_target",
                                            "Configured detect_fps (0 when disabled)", labels=["camera_id"]),
            "last_frame_at": GaugeMetricFamily("gridwatch_edge_camera_last_frame_timestamp_seconds",
                                               "Unix time of the last decoded frame", labels=["camera_id"]),
            "last_analysed_at": GaugeMetricFamily("gridwatch_edge_camera_last_analysed_timestamp_seconds",
                                                  "Unix time of the last analysed frame", labels=["camera_id"]),
            "open_incidents": GaugeMetricFamily("gridwatch_edge_camera_open_incidents", "Incidents open now",
                                                labels=["camera_id"]),
        }
        counters = {
            "frames_decoded": CounterMetricFamily("gridwatch_edge_camera_frames_decoded", "Frames decoded",
                                                  labels=["camera_id"]),
            "frames_analyzed": CounterMetricFamily("gridwatch_edge_camera_frames_analysed", "Frames analysed",
                                                   labels=["camera_id"]),
            "reconnects": CounterMetricFamily("gridwatch_edge_camera_reconnects", "Stream reconnects",
                                              labels=["camera_id"]),
        }
        for row in rows:
            cam = row["camera_id"]
            for s in STATES:
                state.add_metric([cam, s], 1.0 if row.get("state") == s else 0.0)
            for key, g in gauges.items():
                v = row.get(key)
                if v is not None:
                    g.add_metric([cam], float(v))
            for key, c in counters.items():
                c.add_metric([cam], float(row.get(key) or 0))
        yield state
        yield from gauges.values()
        yield from counters.values()

        events = CounterMetricFamily("gridwatch_edge_incident_events", "Incident events emitted, by kind",
                                     labels=["event"])
        for kind in ("opened", "updated", "closed"):
            events.add_metric([kind], float(w.counters.get(f"incident_{kind}", 0)))
        yield events
        up = GaugeMetricFamily("gridwatch_edge_uptime_seconds", "Seconds since the worker started")
        up.add_metric([], time.time() - w._started_at)
        yield up

        pub = getattr(w, "publisher", None)
        if pub is None:
            return
        st = pub.stats()
        for name, key, doc in (
            ("gridwatch_edge_outbox_depth", "pending", "Incident events in the outbox not yet acknowledged"),
            ("gridwatch_edge_outbox_dropped", "dropped", "Events dropped because the outbox was full"),
            ("gridwatch_edge_mqtt_connected", "connected", "1 while connected to the broker"),
            ("gridwatch_edge_outbox_oldest_age_seconds", "oldest_pending_age_s", "Age of the oldest pending event"),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(st.get(key) or 0))
            yield g
        for name, key, doc in (("gridwatch_edge_events_published", "published", "Incident events sent"),
                               ("gridwatch_edge_events_acked", "acked", "Incident events the broker acknowledged")):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], float(st.get(key) or 0))
            yield c
        last = GaugeMetricFamily("gridwatch_edge_last_publish_timestamp_seconds",
                                 "Unix time the broker last acknowledged an incident event (0: none yet)")
        last.add_metric([], float(self.m.last_publish_at or 0))
        yield last


class _Handler(BaseHTTPRequestHandler):
    metrics: EdgeMetrics  # set on the subclass made per server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.metrics.render(), CONTENT_TYPE)
        elif path == "/healthz":
            ok, body = self.metrics.health()
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b'{"detail": "not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("health endpoint: " + format, *args)


class HealthServer:
    """``/metrics`` and ``/healthz`` for one worker on ``(host, port)``; ``start()`` / ``stop()``."""

    def __init__(self, metrics: EdgeMetrics, host: str, port: int):
        handler = type("EdgeHealthHandler", (_Handler,), {"metrics": metrics})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="edge-health", daemon=True)
        self._thread.start()
        log.info("health endpoint on http://%s:%d (/metrics, /healthz)", *self.server.server_address[:2])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_health_server(worker: Any, host: str, port: int) -> HealthServer:
    server = HealthServer(EdgeMetrics(worker), host, port)
    server.start()
    return server
