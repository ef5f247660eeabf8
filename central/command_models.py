"""Command-center tables: imported grid units, the category catalogue and the escalation log (migration 0003).

``central.db`` imports this module at its end so ``Base.metadata`` always includes these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.db import Base


class GridUnit(Base):
    """An imported unit of the grid hierarchy (units in central.yaml are not stored; they win over these)."""

    __tablename__ = "grid_units"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))  # district | street | community | cell
    parent_code: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(128))
    boundary_json: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime]


class CatalogueRow(Base):
    """An imported catalogue entry (the category standard)."""

    __tablename__ = "catalogue_entries"
    code: Mapped[str] = mapped_column(String(48), primary_key=True)
    class_code: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    standard: Mapped[str | None] = mapped_column(Text)
    department: Mapped[str | None] = mapped_column(String(128))
    unit: Mapped[str] = mapped_column(String(16), default="working")
    limit_file: Mapped[float | None] = mapped_column(Float)
    limit_dispatch: Mapped[float | None] = mapped_column(Float)
    limit_handle: Mapped[float | None] = mapped_column(Float)
    limit_verify: Mapped[float | None] = mapped_column(Float)
    incident_types: Mapped[list[Any] | None]
    updated_at: Mapped[datetime]


class CaseEscalation(Base):
    """Append-only: one row per move of a case up one level. A case's level is its highest ``to_rank``
    (0 cell, 1 community, 2 street, 3 district); a case without rows is at the cell level."""

    __tablename__ = "case_escalations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime]
    from_level: Mapped[str] = mapped_column(String(16))
    to_level: Mapped[str] = mapped_column(String(16))
    to_rank: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # deadline | beyond_powers
    actor: Mapped[str] = mapped_column(String(128))
    unit_code: Mapped[str | None] = mapped_column(String(64))  # the unit at to_level (None: cell not in the grid)
    from_squad: Mapped[str | None] = mapped_column(String(128))
    to_squad: Mapped[str | None] = mapped_column(String(128))
    deadline_at: Mapped[datetime | None]  # when this level's own limit runs out
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_case_escalations_case_id_id", "case_id", "id"),
        Index("ix_case_escalations_at", "at"),
    )


class FindingsRun(Base):
    """One run of the findings analysis (weekly on the schedule, or on demand), with its report (migration 0006).

    ``scheduled_for`` is the slot a scheduled run belongs to; it is unique, so two central instances cannot both
    store the same weekly run (manual runs leave it NULL)."""

    __tablename__ = "findings_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    actor: Mapped[str] = mapped_column(String(128))
    scheduled_for: Mapped[datetime | None] = mapped_column(unique=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    since: Mapped[datetime]
    until: Mapped[datetime]
    level: Mapped[str] = mapped_column(String(16))
    cases: Mapped[int] = mapped_column(Integer)
    finding_count: Mapped[int] = mapped_column(Integer)
    report_json: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_findings_runs_started_at", "started_at"),)
