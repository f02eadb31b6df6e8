"""Assess pack: assessments and their per-analyzer results

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=NOW if now else None
    )


def upgrade() -> None:
    op.create_table(
        "assess_assessments",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("inventory", JSONB(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("example", sa.String(64), nullable=True),
        sa.Column("analyzers", JSONB(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="created"),
        sa.Column("run", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("jobs", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        _ts("created_at", nullable=False, now=True),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("partial", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("missing", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("synthesis", JSONB(), nullable=True),
        sa.Column("report_html", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_assess_assessments_created", "assess_assessments", ["created_at", "id"])
    op.create_index(
        "ix_assess_assessments_status_created", "assess_assessments", ["status", "created_at"]
    )
    op.create_table(
        "assess_results",
        sa.Column(
            "assessment_id",
            UUID(as_uuid=True),
            sa.ForeignKey("assess_assessments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("analyzer", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("result", JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("assessment_id", "analyzer", name="pk_assess_results"),
    )


def downgrade() -> None:
    op.drop_table("assess_results")
    op.drop_index("ix_assess_assessments_status_created", table_name="assess_assessments")
    op.drop_index("ix_assess_assessments_created", table_name="assess_assessments")
    op.drop_table("assess_assessments")
