"""index jobs by retry_of: dead-letter replays and "retried as" links

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_conveyor_jobs_retry_of",
        "conveyor_jobs",
        ["retry_of"],
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conveyor_jobs_retry_of", table_name="conveyor_jobs")
