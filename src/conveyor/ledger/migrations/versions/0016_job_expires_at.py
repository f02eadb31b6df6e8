"""jobs.expires_at: when a queued job's message stops being worth running (Celery ``expires``)

Revision ID: 0016
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "conveyor_jobs", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("conveyor_jobs", "expires_at")
