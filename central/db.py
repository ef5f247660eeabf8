"""Storage: SQLAlchemy 2 typed ORM (one ``Base``), engine set-up and Alembic upgrades.

All timestamps are stored as naive UTC and returned as timezone-aware UTC (``UTCDateTime``) so SQLite and
PostgreSQL behave the same. The schema itself is owned by the Alembic migrations in ``central/migrations``;
``Base.metadata`` mirrors it (tests check the two agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (identical on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# --------------------------------------------------------------------------- edges & cameras


class Edge(Base):
    __tablename__ = "edges"
    edge_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # online | offline | unknown
    last_seen_at: Mapped[datetime | None]
    version: Mapped[str | None] = mapped_column(String(64))
    status_json: Mapped[dict[str, Any] | None]
    heartbeat_json: Mapped[dict[str, Any] | None]
    heartbeat_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]


class Camera(Base):
    __tablename__ = "cameras"
    camera_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    edge_id: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    grid_cell: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(512))
    health_json: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime | None]


class CrowdFigure(Base):
    """Latest crowd figure per camera and zone (overwritten on each report)."""

    __tablename__ = "crowd_figures"
    camera_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    zone: Mapped[str] = mapped_column(String(128), primary_key=True)
    edge_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime]
    count: Mapped[int | None] = mapped_column(Integer)
    density: Mapped[float | None] = mapped_column(Float)
    level: Mapped[str | None] = mapped_column(String(16))
    # the estimate's detail as published: estimate, count_low, count_high, count_method, raw_count, stationary,
    # forecast (edge/rules/crowd.py CrowdFigure.to_dict)
    detail_json: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime]


# --------------------------------------------------------------------------- incidents


class Incident(Base):
    __tablename__ = "incidents"
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(48))
    edge_id: Mapped[str | None] = mapped_column(String(128))
    camera_id: Mapped[str] = mapped_column(String(128))
    zone: Mapped[str] = mapped_column(String(128))
    grid_cell: Mapped[str | None] = mapped_column(String(64))
    position_x: Mapped[float | None] = mapped_column(Float)
    position_y: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    silence_id: Mapped[int | None] = mapped_column(Integer)
    payload_json: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_incidents_started_at", "started_at"),
        Index("ix_incidents_camera_zone", "camera_id", "zone"),
    )


class IncidentEvent(Base):
    """Every accepted event, keyed by its event_id: the idempotency record."""

    __tablename__ = "incident_events"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))
    emitted_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(32))  # applied | stale | after_close | silenced
    payload_json: Mapped[dict[str, Any] | None]


# --------------------------------------------------------------------------- cases


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(48))
    state: Mapped[str] = mapped_column(String(16))
    state_before_suspend: Mapped[str | None] = mapped_column(String(16))
    dedup_key: Mapped[str] = mapped_column(String(400))
    camera_id: Mapped[str | None] = mapped_column(String(128))
    edge_id: Mapped[str | None] = mapped_column(String(128))
    zone: Mapped[str | None] = mapped_column(String(128))
    grid_cell: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(512))
    position_x: Mapped[float | None] = mapped_column(Float)
    position_y: Mapped[float | None] = mapped_column(Float)
    department: Mapped[str | None] = mapped_column(String(128))
    squad: Mapped[str | None] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(128))
    reported_at: Mapped[datetime]
    filed_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    handled_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]
    stage_started_at: Mapped[datetime | None]
    stage_deadline_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    previous_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    recurrence_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    incident_count: Mapped[int] = mapped_column(Integer, default=1)
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64))
    after_photo_sha256: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]

    evidence: Mapped[list[CaseEvidence]] = relationship(
        back_populates="case", order_by="CaseEvidence.id", lazy="selectin", viewonly=True
    )

    __table_args__ = (
        Index("ix_cases_state_id", "state", "id"),
        Index("ix_cases_category_id", "category", "id"),
        Index("ix_cases_grid_cell_id", "grid_cell", "id"),
        Index("ix_cases_camera_id_id", "camera_id", "id"),
        Index("ix_cases_reported_at", "reported_at"),
        Index("ix_cases_due_at", "due_at"),
        Index("ix_cases_stage_deadline_at", "stage_deadline_at"),
        Index("ix_cases_state_deadline", "state", "stage_deadline_at"),
        Index("ix_cases_closed_at", "closed_at"),
        Index("ix_cases_dedup_key_state", "dedup_key", "state"),
    )


class CaseAudit(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "case_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(48))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    attachments_json: Mapped[list[Any] | None]


class CaseEvidence(Base):
    __tablename__ = "case_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # before | after | attachment | arrival | closeup
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime]
    incident_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(128))

    case: Mapped[Case] = relationship(back_populates="evidence", viewonly=True)


# --------------------------------------------------------------------------- operations


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(String(32))  # malformed_json | schema | oversized | unknown_version | ...
    detail: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)  # truncated to 64 KiB for oversized payloads


class Silence(Base):
    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    category: Mapped[str] = mapped_column(String(48))
    camera_id: Mapped[str | None] = mapped_column(String(128))
    zone: Mapped[str | None] = mapped_column(String(128))
    grid_cell: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_silences_category_window", "category", "starts_at", "ends_at"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class OutboxEvent(Base):
    """A durable case event, written in the transaction of the case change (``central.event_outbox.record``).

    ``id`` is the event's id everywhere: the SSE ``id:`` line and a webhook's ``event_id``. Ids only grow and are
    never reused (SQLite AUTOINCREMENT survives pruning; on PostgreSQL they are drawn in commit order)."""

    __tablename__ = "event_outbox"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(48))  # case.created | case.updated | case.escalated
    case_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)  # the event's data, JSON text
    created_at: Mapped[datetime] = mapped_column(index=True)  # wall clock of the write (retention)

    __table_args__ = {"sqlite_autoincrement": True}


class WebhookDelivery(Base):
    """One outbox event owed to one webhook (``central.webhooks``): attempts, result and when to try again."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook: Mapped[str] = mapped_column(String(64))  # WebhookConfig.key
    url: Mapped[str] = mapped_column(String(1024))  # masked (no credentials), for people
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          ForeignKey("event_outbox.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(48))
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the process delivering it now
    claimed_until: Mapped[datetime | None]  # …until then; after that another process may take it over
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]  # delivered, or given up

    __table_args__ = (
        UniqueConstraint("webhook", "event_id", name="uq_webhook_deliveries_webhook_event"),
        Index("ix_webhook_deliveries_queue", "webhook", "status", "event_id"),
    )


class WebhookCursor(Base):
    """Per webhook, the newest outbox id for which deliveries have been scheduled (one scheduler at a time)."""

    __tablename__ = "webhook_cursors"
    webhook: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


# --------------------------------------------------------------------------- engine & migrations


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """Engine for a database URL. SQLite gets WAL, foreign keys and a busy timeout; its directory is created.

    ``postgresql://`` URLs use psycopg 3 (``postgresql+psycopg://``).
    """
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A central process that dies mid-transaction (SIGKILL, power, network) must not leave its server session
    # holding row locks that block the instances still running: the server probes idle connections and ends
    # sessions left idle inside a transaction.
    server_options = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
                      "-c idle_in_transaction_session_timeout=60000")
    return create_engine(u, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args={"options": server_options})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations (programmatically; there is no alembic.ini)."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    if isinstance(url_or_engine, str):
        engine.dispose()


def utcnow() -> datetime:
    return datetime.now(UTC)


# The command-center tables (grid units, catalogue, escalations) live in their own module; importing it here keeps
# them in Base.metadata whichever module is imported first.
from central import command_models as _command_models  # noqa: E402,F401
from central import parking_models as _parking_models  # noqa: E402,F401
