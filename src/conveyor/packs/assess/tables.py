"""The assess pack's tables (SQLAlchemy Core), in a MetaData of the pack's own.

Migration ``0019_assess`` creates them. An assessment is one row; each analyzer that ran for it
is one row of ``assess_results`` keyed by (assessment, analyzer), which a task upserts — a
redelivered analyzer overwrites its row and bumps ``attempt``, never adds a second one.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

NOW = text("now()")

assessments = Table(
    "assess_assessments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("inventory", JSONB, nullable=False),
    # Where the inventory came from: "upload" (a file), "api" (a JSON body), "example".
    Column("source", String(16), nullable=False),
    Column("example", String(64), nullable=True),
    # The analyzers this assessment runs (registry names, in registry order).
    Column("analyzers", JSONB, nullable=False),
    # created → running → completed | failed | cancelled (and running again on a retry)
    Column("status", String(16), nullable=False, server_default="created"),
    # The current run: its workflow (the id of its first job) and its job ids by step
    # ("validate", "synthesize", "report", "analyze.<name>"), fixed before anything is sent.
    Column("run", Integer, nullable=False, server_default="0"),
    Column("workflow_id", String(36), nullable=True),
    Column("jobs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("partial", Boolean, nullable=False, server_default=text("false")),
    Column("missing", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("synthesis", JSONB, nullable=True),
    Column("report_html", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_assess_assessments_created", "created_at", "id"),
    Index("ix_assess_assessments_status_created", "status", "created_at"),
)

results = Table(
    "assess_results",
    metadata,
    Column(
        "assessment_id",
        UUID(as_uuid=True),
        ForeignKey("assess_assessments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("analyzer", String(64), nullable=False),
    # queued → running → ok | failed | timeout | cancelled
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("job_id", String(36), nullable=True),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("result", JSONB, nullable=True),  # an AnalyzerResult once it ended
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("assessment_id", "analyzer", name="pk_assess_results"),
)
