"""crowd figures keep the estimate's detail: interval, method, raw count, stationary persons, forecast

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crowd_figures") as batch:
        batch.add_column(sa.Column("detail_json", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crowd_figures") as batch:
        batch.drop_column("detail_json")
