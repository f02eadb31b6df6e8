"""Jobs: the task id as Celery knew it when it is not a UUID, and a refused message as it arrived

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conveyor_jobs", sa.Column("external_id", sa.Text(), nullable=True))
    op.add_column("conveyor_jobs", sa.Column("raw_message", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("conveyor_jobs", "raw_message")
    op.drop_column("conveyor_jobs", "external_id")
