"""schedules, their fires, leases; jobs.schedule_id

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=False)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conveyor_schedules",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("args", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column(
            "kwargs", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("priority", sa.SmallInteger, nullable=True),
        sa.Column("trigger_kind", sa.String(16), nullable=False),
        sa.Column("trigger_expr", sa.String(255), nullable=True),
        sa.Column("trigger_every", sa.Double, nullable=True),
        sa.Column("trigger_at", TS, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("overlap", sa.String(16), nullable=False, server_default="skip"),
        sa.Column("catchup_window", sa.Double, nullable=False, server_default="60"),
        sa.Column("catchup_max", sa.Integer, nullable=False, server_default="1"),
        sa.Column("jitter", sa.Double, nullable=False, server_default="0"),
        sa.Column("start_at", TS, nullable=True),
        sa.Column("end_at", TS, nullable=True),
        sa.Column("max_runs", sa.Integer, nullable=True),
        sa.Column("run_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("paused_note", sa.Text, nullable=True),
        sa.Column("source", sa.String(8), nullable=False, server_default="user"),
        sa.Column("code_default", postgresql.JSONB, nullable=True),
        sa.Column(
            "overridden",
            postgresql.ARRAY(sa.String(32)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("next_fire_at", TS, nullable=True),
        sa.Column("last_fire_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_index(
        "ix_conveyor_schedules_due",
        "conveyor_schedules",
        ["next_fire_at"],
        postgresql_where=sa.text("NOT paused AND retired_at IS NULL AND next_fire_at IS NOT NULL"),
    )
    op.create_table(
        "conveyor_schedule_fires",
        sa.Column(
            "schedule_id",
            UUID,
            sa.ForeignKey("conveyor_schedules.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("fire_time", TS, primary_key=True),
        sa.Column("job_id", UUID, nullable=True),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "conveyor_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.add_column("conveyor_jobs", sa.Column("schedule_id", UUID, nullable=True))
    op.create_index(
        "ix_conveyor_jobs_schedule_created",
        "conveyor_jobs",
        ["schedule_id", "created_at", "id"],
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conveyor_jobs_schedule_created", table_name="conveyor_jobs")
    op.drop_column("conveyor_jobs", "schedule_id")
    op.drop_table("conveyor_leases")
    op.drop_table("conveyor_schedule_fires")
    op.drop_index("ix_conveyor_schedules_due", table_name="conveyor_schedules")
    op.drop_table("conveyor_schedules")
