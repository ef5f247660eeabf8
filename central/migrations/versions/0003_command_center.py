"""command center: grid units, category catalogue, case escalations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grid_units",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent_code", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=True),
        sa.Column("team", sa.String(length=128), nullable=True),
        sa.Column("boundary_json", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_grid_units_parent_code", "grid_units", ["parent_code"], unique=False)
    op.create_table(
        "catalogue_entries",
        sa.Column("code", sa.String(length=48), nullable=False),
        sa.Column("class_code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=True),
        sa.Column("standard", sa.Text(), nullable=True),
        sa.Column("department", sa.String(length=128), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("limit_file", sa.Float(), nullable=True),
        sa.Column("limit_dispatch", sa.Float(), nullable=True),
        sa.Column("limit_handle", sa.Float(), nullable=True),
        sa.Column("limit_verify", sa.Float(), nullable=True),
        sa.Column("incident_types", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "case_escalations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("from_level", sa.String(length=16), nullable=False),
        sa.Column("to_level", sa.String(length=16), nullable=False),
        sa.Column("to_rank", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=True),
        sa.Column("from_squad", sa.String(length=128), nullable=True),
        sa.Column("to_squad", sa.String(length=128), nullable=True),
        sa.Column("deadline_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_escalations_case_id_id", "case_escalations", ["case_id", "id"], unique=False)
    op.create_index("ix_case_escalations_at", "case_escalations", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_case_escalations_at", table_name="case_escalations")
    op.drop_index("ix_case_escalations_case_id_id", table_name="case_escalations")
    op.drop_table("case_escalations")
    op.drop_table("catalogue_entries")
    op.drop_index("ix_grid_units_parent_code", table_name="grid_units")
    op.drop_table("grid_units")
