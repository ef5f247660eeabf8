"""index cases (state, stage_deadline_at) for the overdue filter

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_state_deadline", "cases", ["state", "stage_deadline_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cases_state_deadline", table_name="cases")
