"""central.yaml: the central case service's configuration, as pydantic models.

Unknown keys are errors. ``load_central_config(path)`` raises ``CentralConfigError`` whose message names the
file and each bad key path (``categories[1].limits.handle``), like the edge's ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from central.command_config import (
    CatalogueConfig,
    CrowdResponseConfig,
    EscalationConfig,
    FindingsScheduleConfig,
    GridConfig,
    MapConfig,
)
from edge.config import TlsConfig, parse_days
from edge.yamlconfig import ConfigError, Strict, read_yaml, validate_document


class CentralConfigError(ConfigError):
    """central.yaml could not be loaded (same shape as the edge's ConfigError)."""


# Same TLS settings as the edge's broker connection.
CentralTlsConfig = TlsConfig


class CentralMqttConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(None, repr=False)
    tls: CentralTlsConfig = CentralTlsConfig()
    client_id: str = Field(
        "gridwatch-central",
        description="Fixed so the broker keeps the persistent session (queued QoS 1 messages) across restarts.",
    )
    topic_prefix: str = "gridwatch/v1"
    shared_group: str | None = Field(
        None, description="When set, subscribe as $share/<group>/... so several central instances split the load."
    )
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0, description="MQTT v5 session expiry (broker keeps queue).")
    receiver: Literal["process", "thread"] = Field(
        "process", description="Where MQTT messages are received and classified: `process` (a child process, so "
        "receiving and parsing do not share the filing's core: a backlog drains 1.27x as fast on SQLite, 1.05x on "
        "PostgreSQL, for 25-35 % more CPU per event; central/ingest_process.py) or `thread` (all in the ingest "
        "process: less CPU, for small boxes)."
    )
    batch_max: int = Field(200, ge=1, le=10_000, description="Ingest commits at most this many messages at once.")
    batch_wait_ms: int = Field(20, ge=0, le=5_000, description="Wait this long to fill a batch before committing.")
    queue_max_messages: int | None = Field(
        None, ge=1, le=60_000,
        description="Received messages held in memory until the ingest worker takes them (default 4 × batch_max). "
        "When it is full, paho's network thread waits at most keepalive_s / 4 for room (it also sends the keepalive "
        "PINGs); then a QoS 0 message is dropped and a QoS 1 one is admitted over the bound (it is acknowledged only "
        "after its commit). The broker is asked to keep at most this plus 4 × batch_max unacknowledged messages in "
        "flight (MQTT v5 Receive Maximum) and queues the rest.",
    )
    queue_max_bytes: int = Field(
        64 * 2**20, ge=2**20, description="Payload bytes held in that queue at most (one larger message is let in "
        "when the queue is empty).",
    )
    edges: list[str] = Field(
        default_factory=list,
        description="The site's edge ids. `gridwatch-central broker-config` makes one broker login per edge from it; "
        "when non-empty, ingest also refuses messages from any other edge id (dead letter 'unknown_edge').",
    )

    @field_validator("username", "password", "shared_group", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if v == "" else v  # "${VAR:-}" unset in the environment

    @field_validator("shared_group")
    @classmethod
    def _group_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError("shared_group may hold letters, digits, '_', '.', '-' only (no '/', '+', '#')")
        return v

    @field_validator("edges")
    @classmethod
    def _edge_ids(cls, v: list[str]) -> list[str]:
        for e in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", e):
                raise ValueError(f"edge id {e!r} must be 1-64 letters, digits, '_', '.', '-' (as edge_id)")
        if len(set(v)) != len(v):
            raise ValueError("edge ids must be unique")
        return v

    @property
    def queue_messages(self) -> int:
        """The receive queue's bound in messages: ``queue_max_messages`` or 4 × ``batch_max``."""
        return self.queue_max_messages or 4 * self.batch_max

    def incident_topic(self) -> str:
        base = f"{self.topic_prefix}/+/incidents"
        return f"$share/{self.shared_group}/{base}" if self.shared_group else base

    def frame_topic(self) -> str:
        """Live frames, never shared: every instance gets the retained ones on subscribing."""
        return f"{self.topic_prefix}/+/cameras/+/frame"

    def topics(self) -> list[str]:
        """All subscriptions: incidents (shared when configured), plus status, heartbeat and crowd."""
        out = [self.incident_topic()]
        for leaf in ("status", "heartbeat", "crowd", "occupancy"):
            base = f"{self.topic_prefix}/+/{leaf}"
            out.append(f"$share/{self.shared_group}/{base}" if self.shared_group and leaf != "status" else base)
        return out


_PERIOD = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_period(text: str) -> tuple[time, time]:
    m = _PERIOD.match(text.strip())
    if not m:
        raise ValueError(f"work period {text!r} must look like 'HH:MM-HH:MM'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"work period {text!r} has an invalid time")
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    if end <= start:
        raise ValueError(f"work period {text!r} ends before it starts")
    return start, end


def parse_workdays(text: str) -> set[int]:
    """'mon-fri' or 'mon,wed,sat' or 'mon-fri,sun' → set of weekday numbers (Monday = 0); the edge's day syntax."""
    days = parse_days(text)
    if not days:
        raise ValueError("workdays must name at least one day")
    return days


class WorkingCalendarConfig(Strict):
    work_periods: list[str] = Field(default_factory=lambda: ["09:00-12:00", "13:30-18:00"])
    workdays: str = "mon-fri"
    holidays: list[date] = Field(default_factory=list, description="Workdays that are not worked (public holidays).")
    extra_workdays: list[date] = Field(
        default_factory=list, description="Weekend days that are worked (China's make-up workdays, 调休)."
    )

    @field_validator("work_periods")
    @classmethod
    def _periods(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one work period is needed")
        parsed = sorted(parse_period(p) for p in v)
        for (_, e1), (s2, _) in zip(parsed, parsed[1:], strict=False):
            if s2 < e1:
                raise ValueError("work periods overlap")
        return v

    @field_validator("workdays")
    @classmethod
    def _workdays(cls, v: str) -> str:
        parse_workdays(v)
        return v


Stage = Literal["file", "dispatch", "handle", "verify"]
STAGES: tuple[str, ...] = ("file", "dispatch", "handle", "verify")


class StageLimits(Strict):
    """Time limit per stage, in hours (working or calendar per the category's ``unit``). None = no limit.

    file: reported → filed; dispatch: filed → dispatched; handle: dispatched → handled (the overall handling
    limit used for overdue/KPIs); verify: handled → closed.
    """

    file: float | None = Field(1.0, gt=0)
    dispatch: float | None = Field(1.0, gt=0)
    handle: float | None = Field(24.0, gt=0)
    verify: float | None = Field(4.0, gt=0)


class CategoryConfig(Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,47}$")
    name: str
    name_zh: str | None = None
    department: str | None = None
    urgency: Literal["low", "normal", "urgent"] = "normal"
    unit: Literal["working", "calendar"] = "working"
    limits: StageLimits = StageLimits()
    auto_file: bool = False
    auto_dispatch: bool = Field(False, description="Implies auto_file; goes straight to dispatched.")
    dedup_grid: float = Field(0.05, gt=0, le=1, description="Subject positions are rounded to this grid for dedup.")


def default_categories() -> list[CategoryConfig]:
    return [
        CategoryConfig(
            code="illegal_parking", name="Illegally parked motor vehicle", name_zh="机动车违法停放",
            department="traffic_police", urgency="urgent", unit="working",
            limits=StageLimits(file=0.5, dispatch=0.5, handle=3.0, verify=2.0), auto_file=True,
        ),
        CategoryConfig(
            code="street_vending", name="Unlicensed street vending", name_zh="无照游商",
            department="urban_management", urgency="normal", unit="working",
            limits=StageLimits(file=1.0, dispatch=1.0, handle=8.0, verify=4.0),
        ),
        CategoryConfig(
            code="crowd_density", name="Crowd density", name_zh="人群聚集",
            department="public_security", urgency="urgent", unit="calendar",
            limits=StageLimits(file=0.25, dispatch=0.25, handle=1.0, verify=1.0), auto_file=True, auto_dispatch=True,
        ),
    ]


class RoutingRule(Strict):
    """First matching rule wins (list order). Empty match fields match anything."""

    grid_cell_prefix: str | None = None
    zone: str | None = None
    category: str | None = None
    camera_id: str | None = None
    department: str | None = None
    squad: str | None = None


class DisplayName(Strict):
    """A label for people: English ``name`` and an optional Chinese ``name_zh`` (the dashboard picks by language)."""

    name: str = Field(min_length=1, max_length=200)
    name_zh: str | None = Field(None, max_length=200)


class DepartmentConfig(DisplayName):
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SquadConfig(DisplayName):
    """A squad cases can be dispatched to; the dashboard's squad picker lists these."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    department: str | None = None


class DisplayNamesConfig(Strict):
    """Display names for codes the edges send: camera ids and zone names.

    ``zones`` keys are a zone name (``west-kerb``) or ``camera_id/zone`` for one camera's zone; the latter wins."""

    cameras: dict[str, DisplayName] = Field(default_factory=dict)
    zones: dict[str, DisplayName] = Field(default_factory=dict)


class WebhookConfig(Strict):
    """A receiver of signed case events (central.webhooks): deliveries are recorded, retried and kept in order."""

    url: str
    secret: str | None = Field(None, repr=False, description="HMAC-SHA256 key of the X-GridWatch-Signature header.")
    events: list[str] = Field(default_factory=lambda: ["case.created", "case.updated"],
                              description="Event kinds to deliver: case.created, case.updated, case.escalated.")
    name: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
        description="Stable key of this webhook's delivery record. Default: derived from the URL, so changing the "
        "URL starts a new record (pending deliveries to the old URL stop); set a name to keep them across a URL "
        "change.",
    )

    @field_validator("events")
    @classmethod
    def _durable_kinds(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in ("case.created", "case.updated", "case.escalated")]
        if bad:
            raise ValueError(f"webhooks deliver case.created, case.updated and case.escalated only, not {bad}")
        return v

    @property
    def key(self) -> str:
        """The delivery record's key: ``name`` or ``url-<first 16 hex of sha256(url)>``."""
        return self.name or "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:16]


class EventsConfig(Strict):
    """The case-event outbox (central.event_outbox) and its readers: the SSE relay and webhook delivery."""

    poll_s: float = Field(
        0.5, gt=0, le=60, description="How often each API process looks for new events written by other processes "
        "(its own are seen at once; on PostgreSQL a NOTIFY also wakes it).",
    )
    retention_days: float = Field(
        7, gt=0, description="Events older than this are deleted once no webhook still owes them (their delivery "
        "records go with them). SSE clients can resume within this window.",
    )
    prune_every_s: float = Field(3600, ge=1, description="How often an API process prunes old events.")
    replay_max: int = Field(
        1000, ge=1, le=100_000, description="Most events a resuming SSE client (Last-Event-ID) is replayed; beyond "
        "that it gets a `stream.resync` event and should reload.",
    )
    webhook_attempts: int = Field(
        30, ge=1, le=1000, description="Attempts per delivery before it is recorded as failed and the next is sent "
        "(with the defaults: 3.45 h of waits between them).",
    )
    webhook_backoff_s: float = Field(1.0, gt=0, description="Wait before the 2nd attempt; doubles per attempt.")
    webhook_max_backoff_s: float = Field(600.0, gt=0, description="Cap of the wait between attempts.")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="HTTP timeout of one attempt.")


class ApiConfig(Strict):
    cors_origins: list[str] = Field(default_factory=list)
    public_base_url: str | None = None
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics (no API token needed).")
    metrics_token: str | None = Field(
        None, repr=False, description="When set, /metrics needs `Authorization: Bearer <this>` (Prometheus "
        "`authorization: {credentials: ...}`)."
    )

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, v: Any) -> Any:
        return None if v == "" else v


class LiveFramesConfig(Strict):
    """The edges' live frames (<prefix>/<edge>/cameras/<camera>/frame): the newest per camera, kept on disk for the
    zone editor and the cameras page. Every central instance subscribes (not shared: retained messages are not
    delivered on shared subscriptions) and writes the same files, atomically."""

    enabled: bool = True
    dir: Path | None = Field(None, description="Where the frames are kept; default <evidence_dir>/live-frames.")
    max_bytes: int = Field(500_000, ge=10_000, le=5_000_000, description="Largest JPEG accepted (decoded bytes).")

    def directory(self, evidence_dir: Path) -> Path:
        return self.dir if self.dir is not None else Path(evidence_dir) / "live-frames"


class CentralConfig(Strict):
    database_url: str = "sqlite:///var/central/gridwatch.db"
    mqtt: CentralMqttConfig = CentralMqttConfig()
    evidence_dir: Path = Path("var/central/evidence")
    max_payload_bytes: int = Field(2_000_000, ge=1_000)
    max_upload_bytes: int = Field(10_000_000, ge=1_000)
    max_snapshot_bytes: int = Field(1_000_000, ge=1_000, description="Decoded inline snapshot limit.")
    live_frames: LiveFramesConfig = LiveFramesConfig()
    timezone: str = "Asia/Shanghai"
    calendar: WorkingCalendarConfig = WorkingCalendarConfig()
    categories: list[CategoryConfig] = Field(default_factory=default_categories)
    routing: list[RoutingRule] = Field(default_factory=list)
    departments: list[DepartmentConfig] = Field(default_factory=list, description="Department codes → names.")
    squads: list[SquadConfig] = Field(
        default_factory=list, description="Squads for dispatch; when set, routing may only name these squads."
    )
    display_names: DisplayNamesConfig = DisplayNamesConfig()
    grid: GridConfig = Field(GridConfig(), description="Grid hierarchy district → street → community → cell.")
    escalation: EscalationConfig = Field(EscalationConfig(), description="Three-level linkage: escalation.")
    catalogue: CatalogueConfig = Field(CatalogueConfig(), description="Category standard (classes A-D).")
    crowd_response: CrowdResponseConfig = Field(
        CrowdResponseConfig(), description="Crowd response plans per zone and level (who is notified, dispatched)."
    )
    map: MapConfig = Field(MapConfig(), description="The map page: an optional internal tile server.")
    findings: FindingsScheduleConfig = Field(
        FindingsScheduleConfig(), description="The weekly findings analysis (schedule, period, level)."
    )
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    events: EventsConfig = Field(EventsConfig(), description="Case-event outbox, SSE resume and webhook retries.")
    zone_config_path: Path | None = None
    api: ApiConfig = ApiConfig()
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @model_validator(mode="after")
    def _unique_webhooks(self) -> CentralConfig:
        keys = [w.key for w in self.webhooks]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"webhooks: two entries share the delivery key {dup} (the same url or name)")
        return self

    @model_validator(mode="after")
    def _unique_categories(self) -> CentralConfig:
        codes = [c.code for c in self.categories]
        dup = {c for c in codes if codes.count(c) > 1}
        if dup:
            raise ValueError(f"duplicate category codes: {sorted(dup)}")
        for i, rule in enumerate(self.routing):
            if rule.category is not None and rule.category not in codes:
                raise ValueError(f"routing[{i}].category {rule.category!r} is not a configured category")
        squads = [q.code for q in self.squads]
        dup = {q for q in squads if squads.count(q) > 1}
        if dup:
            raise ValueError(f"duplicate squad codes: {sorted(dup)}")
        if squads:
            for i, rule in enumerate(self.routing):
                if rule.squad is not None and rule.squad not in squads:
                    raise ValueError(f"routing[{i}].squad {rule.squad!r} is not one of the configured squads")
            for i, plan in enumerate(self.crowd_response.plans):
                for squad in plan.dispatch:
                    if squad not in squads:
                        raise ValueError(f"crowd_response.plans[{i}].dispatch {squad!r} is not one of the "
                                         "configured squads")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def category(self, code: str) -> CategoryConfig | None:
        for c in self.categories:
            if c.code == code:
                return c
        return None


def parse_central_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> CentralConfig:
    try:
        return validate_document(CentralConfig, {} if data is None else data, source, env, docs_hint="docs/central.md")
    except ConfigError as e:
        raise CentralConfigError(e.source, e.problems) from None


def load_central_config(path: str | Path | None) -> CentralConfig:
    """Load central.yaml; None gives the defaults. Environment ``${VARS}`` are expanded in strings."""
    if path is None:
        return CentralConfig()
    p = Path(path)
    try:
        data = read_yaml(p)
    except ConfigError as e:
        raise CentralConfigError(e.source, e.problems) from None
    cfg = parse_central_config(data, str(p))
    resolve_relative_paths(cfg, p.resolve().parent)
    return cfg


def resolve_relative_paths(cfg: CentralConfig, base: Path) -> None:
    """Relative paths in central.yaml (SQLite file, evidence, zone file, TLS files) are relative to the file,
    as in cameras.yaml, not to wherever the command was started."""

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else Path(os.path.normpath(base / p))

    prefix = "sqlite:///"
    if cfg.database_url.startswith(prefix):
        rest = cfg.database_url[len(prefix):]
        file_part, sep, query = rest.partition("?")
        if file_part and file_part != ":memory:" and not file_part.startswith("/"):
            cfg.database_url = prefix + str(fix(Path(file_part))) + sep + query
    cfg.evidence_dir = fix(cfg.evidence_dir)  # type: ignore[assignment]
    cfg.live_frames.dir = fix(cfg.live_frames.dir)
    cfg.zone_config_path = fix(cfg.zone_config_path)
    tls = cfg.mqtt.tls
    tls.ca_file, tls.cert_file, tls.key_file = fix(tls.ca_file), fix(tls.cert_file), fix(tls.key_file)
