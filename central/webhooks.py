"""Signed webhooks on case events, delivered from a background thread.

Each configured ``WebhookConfig(url, secret, events)`` receives a JSON POST for every bus event whose kind is in
``events`` (default ``case.created`` and ``case.updated``). The body is::

    {"id": "<delivery uuid>", "event": "case.updated", "timestamp": 1763782800, "data": {...case summary...}}

Headers: ``X-GridWatch-Event``, ``X-GridWatch-Delivery``, ``X-GridWatch-Timestamp`` (Unix seconds, equal to the
body's ``timestamp``) and, when the webhook has a secret, ``X-GridWatch-Signature: sha256=<hex>`` — the
HMAC-SHA256 of the exact body bytes with the secret. Because the timestamp is inside the signed body, a receiver
that checks the signature (``verify_signature``) and the timestamp's freshness is protected against replays.

Delivery: a bounded queue (oldest deliveries are dropped and counted when full, so a dead receiver can never
exhaust memory or block ingest); 2xx is success; network errors, 408, 429 and 5xx are retried with exponential
back-off (1 s, 2 s, 4 s, … capped at 60 s) up to ``max_attempts``; other 4xx are permanent failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.redact import mask_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-GridWatch-Signature"
TIMESTAMP_HEADER = "X-GridWatch-Timestamp"
EVENT_HEADER = "X-GridWatch-Event"
DELIVERY_HEADER = "X-GridWatch-Delivery"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookTarget(Protocol):
    """What the dispatcher needs from ``central.config.WebhookConfig``."""

    url: str
    secret: str | None
    events: list[str]


def sign(secret: str, body: bytes) -> str:
    """The ``X-GridWatch-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, body: bytes, signature_header: str | None, timestamp_header: str | None = None,
    *, tolerance_s: float | None = 300, now: float | None = None,
) -> bool:
    """Receiver side: True when the signature matches and (if ``tolerance_s``) the timestamp is fresh.

    The timestamp header must equal the signed body's ``timestamp`` field, so it cannot be swapped.
    """
    if not signature_header or not hmac.compare_digest(sign(secret, body), signature_header.strip()):
        return False
    if tolerance_s is None:
        return True
    try:
        ts = int(timestamp_header or "")
        body_ts = int(json.loads(body)["timestamp"])
    except (ValueError, KeyError, TypeError):
        return False
    if ts != body_ts:
        return False
    return abs((time.time() if now is None else now) - ts) <= tolerance_s


def build_delivery(
    kind: str, data: dict[str, Any], secret: str | None, *, now: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers of one delivery."""
    ts = int(time.time() if now is None else now)
    delivery_id = str(uuid.uuid4())
    body = json.dumps(
        {"id": delivery_id, "event": kind, "timestamp": ts, "data": data}, separators=(",", ":"), default=str
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GridWatch-Webhooks/1",
        EVENT_HEADER: kind,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(ts),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class WebhookStats:
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    last_error: str | None = None


class WebhookDispatcher:
    """Subscribes to the event bus and POSTs signed deliveries to the configured webhooks.

    ``start()`` launches the worker thread; ``stop()`` ends it (pending retries are abandoned).
    """

    def __init__(
        self, targets: Iterable[WebhookTarget], *, max_queue: int = 1000, max_attempts: int = 5,
        timeout_s: float = 5.0, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
    ):
        self.targets = list(targets)
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = WebhookStats()
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=max_queue)
        self._retries: list[_Pending] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- producer side (called from any thread, e.g. the MQTT ingest thread) --
    def handle_event(self, kind: str, data: dict[str, Any]) -> None:
        """Event-bus callback: enqueue one delivery per target subscribed to ``kind``. Never blocks."""
        for target in self.targets:
            if kind not in target.events:
                continue
            body, headers = build_delivery(kind, data, target.secret)
            self._enqueue(_Pending(time.monotonic(), next(self._seq), target.url, body, headers))

    def _enqueue(self, item: _Pending) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                    self.stats.dropped += 1
                    log.warning("webhook queue full: dropped the oldest delivery")

    def attach(self, bus: Any) -> None:
        """Subscribe to ``bus`` (a ``central.events.EventBus``)."""
        self._unsubscribe = bus.subscribe(self.handle_event)

    # -- worker --
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def pending(self) -> int:
        return self._queue.qsize() + len(self._retries)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if self._retries and self._retries[0].due <= now:
                self._deliver(heapq.heappop(self._retries))
                continue
            wait = min(0.5, self._retries[0].due - now) if self._retries else 0.5
            try:
                item = self._queue.get(timeout=max(wait, 0.01))
            except queue.Empty:
                continue
            self._deliver(item)

    def _deliver(self, item: _Pending) -> None:
        status, error = self._post(item)
        if status is not None and 200 <= status < 300:
            self.stats.delivered += 1
            return
        retryable = status is None or status in RETRY_STATUSES
        reason = error or f"HTTP {status}"
        if retryable and item.attempt < self.max_attempts:
            item.attempt += 1
            item.due = time.monotonic() + min(self.backoff_s * 2 ** (item.attempt - 2), self.max_backoff_s)
            heapq.heappush(self._retries, item)
            self.stats.retried += 1
            log.info("webhook %s failed (%s); retry %d scheduled", mask_url(item.url), reason, item.attempt)
        else:
            self.stats.failed += 1
            self.stats.last_error = reason
            log.warning(
                "webhook %s failed permanently after %d attempt(s): %s", mask_url(item.url), item.attempt, reason
            )

    def _post(self, item: _Pending) -> tuple[int | None, str | None]:
        if not item.url.lower().startswith(("http://", "https://")):
            return 0, f"unsupported URL scheme in {mask_url(item.url)}"
        req = urllib.request.Request(item.url, data=item.body, headers=item.headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (scheme checked above)
                resp.read(1024)
                return resp.status, None
        except urllib.error.HTTPError as e:
            return e.code, None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            return None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"
