"""Workflows: a DAG of jobs (canvas or spec), its nodes, edges and canvas keys; jobs.workflow_id

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_UUID = UUID(as_uuid=False)


def upgrade() -> None:
    op.add_column("conveyor_jobs", sa.Column("workflow_id", _UUID, nullable=True))
    op.create_index(
        "ix_conveyor_jobs_workflow",
        "conveyor_jobs",
        ["workflow_id", "created_at"],
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
    )
    op.create_table(
        "conveyor_workflows",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("spec", JSONB(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="running"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_conveyor_workflows_created", "conveyor_workflows", ["created_at", "id"])
    op.create_table(
        "conveyor_workflow_nodes",
        sa.Column(
            "workflow_id",
            _UUID,
            sa.ForeignKey("conveyor_workflows.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.String(255), primary_key=True),
        sa.Column("job_id", _UUID, nullable=True),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("weight", sa.Double(), nullable=False, server_default="1"),
        sa.Column("args", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("kwargs", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("pass_result", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("group_id", sa.String(255), nullable=True),
        sa.Column("chord", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("message", JSONB(), nullable=True),
    )
    op.create_index(
        "ix_conveyor_workflow_nodes_job",
        "conveyor_workflow_nodes",
        ["job_id"],
        postgresql_where=sa.text("job_id IS NOT NULL"),
    )
    op.create_table(
        "conveyor_workflow_edges",
        sa.Column(
            "workflow_id",
            _UUID,
            sa.ForeignKey("conveyor_workflows.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("parent", sa.String(255), primary_key=True),
        sa.Column("child", sa.String(255), primary_key=True),
    )
    op.create_table(
        "conveyor_workflow_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("workflow_id", _UUID, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.create_index("ix_conveyor_workflow_keys_workflow", "conveyor_workflow_keys", ["workflow_id"])


def downgrade() -> None:
    op.drop_table("conveyor_workflow_keys")
    op.drop_table("conveyor_workflow_edges")
    op.drop_table("conveyor_workflow_nodes")
    op.drop_index("ix_conveyor_workflows_created", table_name="conveyor_workflows")
    op.drop_table("conveyor_workflows")
    op.drop_index("ix_conveyor_jobs_workflow", table_name="conveyor_jobs")
    op.drop_column("conveyor_jobs", "workflow_id")
