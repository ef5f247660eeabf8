"""parking occupancy over time: one row per figure of a legal parking zone (edge/rules/occupancy.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parking_occupancy",
        sa.Column("camera_id", sa.String(length=128), nullable=False),
        sa.Column("zone", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("edge_id", sa.String(length=128), nullable=False),
        sa.Column("grid_cell", sa.String(length=64), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("occupied", sa.Integer(), nullable=False),
        sa.Column("occupied_mean", sa.Float(), nullable=False),
        sa.Column("vehicles", sa.Integer(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("period_s", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "zone", "at"),
    )
    op.create_index("ix_parking_occupancy_hour", "parking_occupancy", ["hour"], unique=False)
    op.create_index("ix_parking_occupancy_grid_cell_hour", "parking_occupancy", ["grid_cell", "hour"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_parking_occupancy_grid_cell_hour", table_name="parking_occupancy")
    op.drop_index("ix_parking_occupancy_hour", table_name="parking_occupancy")
    op.drop_table("parking_occupancy")
