"""Factory pack: the job that last ran each batch, for its progress and for stuck-batch retries

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("factory_batches", sa.Column("job_id", sa.String(36), nullable=True))


def downgrade() -> None:
    op.drop_column("factory_batches", "job_id")
