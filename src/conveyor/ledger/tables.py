"""Ledger tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` must equal these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

NOW = text("now()")

jobs = Table(
    "conveyor_jobs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("task", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("queue", String(255), nullable=False, server_default="default"),
    Column("priority", SmallInteger, nullable=True),
    Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=True),
    Column("worker", String(255), nullable=True),
    Column("parent_id", UUID(as_uuid=False), nullable=True),
    Column("root_id", UUID(as_uuid=False), nullable=True),
    Column("retry_of", UUID(as_uuid=False), nullable=True),
    Column("idempotency_key", String(255), nullable=True, unique=True),
    Column("payload_hash", String(64), nullable=True),
    Column("eta", DateTime(timezone=True), nullable=True),
    # Celery's `expires`: past it, a job still waiting is ended (cancelled, "Expired"), never run.
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("queued_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("result", JSONB, nullable=True),
    Column("result_ref", String(255), nullable=True),
    Column("error_type", String(255), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("traceback", Text, nullable=True),
    Column("cancel_requested_at", DateTime(timezone=True), nullable=True),
    Column("progress_current", Double, nullable=True),
    Column("progress_total", Double, nullable=True),
    Column("progress_step", String(255), nullable=True),
    Column("progress_message", Text, nullable=True),
    Column("progress_first_current", Double, nullable=True),
    Column("progress_first_at", DateTime(timezone=True), nullable=True),
    Column("progress_at", DateTime(timezone=True), nullable=True),
    # The task id Celery was given when it is not a UUID (``send_task(..., task_id="order-1")``):
    # the row's id is then derived from it (``core.ids.ledger_id``), so lookups by either work.
    Column("external_id", Text, nullable=True),
    # A message the worker refused (``runtime.poison``): headers, properties and the first
    # 64 KiB of its body as it arrived, kept with its dead letter.
    Column("raw_message", JSONB, nullable=True),
    # The schedule whose fire submitted this job (``conveyor_schedules.id``; no foreign key: a
    # deleted schedule leaves its jobs in the history).
    Column("schedule_id", UUID(as_uuid=False), nullable=True),
    # The workflow (``conveyor_workflows``) the job is a node of, if any.
    Column("workflow_id", UUID(as_uuid=False), nullable=True),
    # Listing is newest-first with keyset pagination on (created_at, id); each filter that a
    # dashboard offers gets an index whose trailing columns match that order.
    Index("ix_conveyor_jobs_created", "created_at", "id"),
    Index("ix_conveyor_jobs_state_created", "state", "created_at", "id"),
    Index("ix_conveyor_jobs_task_created", "task", "created_at", "id"),
    Index("ix_conveyor_jobs_queue_created", "queue", "created_at", "id"),
    Index("ix_conveyor_jobs_root", "root_id", postgresql_where=text("root_id IS NOT NULL")),
    Index("ix_conveyor_jobs_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
    Index("ix_conveyor_jobs_retry_of", "retry_of", postgresql_where=text("retry_of IS NOT NULL")),
    Index(
        "ix_conveyor_jobs_schedule_created",
        "schedule_id",
        "created_at",
        "id",
        postgresql_where=text("schedule_id IS NOT NULL"),
    ),
    Index(
        "ix_conveyor_jobs_workflow",
        "workflow_id",
        "created_at",
        postgresql_where=text("workflow_id IS NOT NULL"),
    ),
)

attempts = Table(
    "conveyor_attempts",
    metadata,
    Column(
        "job_id",
        UUID(as_uuid=False),
        ForeignKey("conveyor_jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("attempt", Integer, primary_key=True),
    Column("worker", String(255), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("error_type", String(255), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("traceback", Text, nullable=True),
)

# Rows written in the same transaction as a job; the relay publishes those the API could not
# (broker down) and those whose time has come (delays held in PostgreSQL, not broker ETAs).
outbox = Table(
    "conveyor_outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "job_id",
        UUID(as_uuid=False),
        ForeignKey("conveyor_jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message", JSONB, nullable=False),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Index("ix_conveyor_outbox_available", "available_at"),
    Index("ix_conveyor_outbox_job", "job_id"),
)

# Results over the inline cap, referenced from jobs.result_ref.
blobs = Table(
    "conveyor_blobs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("content_type", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# API keys for the REST API and the dashboard login. Only a SHA-256 of the secret is kept; the
# key id is the visible part of the key (``cvk_<key_id>_<secret>``) and is how a request finds
# its row. NULL allowlists mean any task / any queue.
api_keys = Table(
    "conveyor_api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", ARRAY(String(32)), nullable=False),
    Column("allowed_tasks", ARRAY(String(255)), nullable=True),
    Column("allowed_queues", ARRAY(String(255)), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

# Pre-aggregated counts, kept current by triggers on conveyor_jobs (migration 0004): jobs per
# state as per-backend deltas (sum over ``shard``), and job events per minute and per hour for
# the charts.
state_counts = Table(
    "conveyor_state_counts",
    metadata,
    Column("state", String(16), primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("n", BigInteger, nullable=False),
)


def _job_stats(name: str, unit: str) -> Table:
    return Table(
        name,
        metadata,
        Column(unit, DateTime(timezone=True), primary_key=True),
        Column("event", String(16), primary_key=True),
        Column("task", String(255), primary_key=True),
        Column("queue", String(255), primary_key=True),
        Column("shard", SmallInteger, primary_key=True),
        Column("n", BigInteger, nullable=False),
        Column("run_seconds", Double, nullable=False),
    )


job_stats = _job_stats("conveyor_job_stats", "minute")
job_stats_hourly = _job_stats("conveyor_job_stats_hourly", "hour")
# Dashboard users. ``username`` is stored case-folded (``ledger.users.normalize_username``), so
# the plain unique constraint makes names unique regardless of case. ``password_hash`` carries
# its own algorithm, parameters and salt (``scrypt$n=..,r=..,p=..$salt$hash``), so parameters
# can be raised later without a migration.
users = Table(
    "conveyor_users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("password_changed_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)

# Schedules (``conveyor.schedules``): one row each, fired by the leader among ``conveyor beat``
# replicas. The trigger is a cron expression, an interval (seconds) or one instant; the leader
# keeps ``next_fire_at`` current, so "what is due" is one indexed range scan.
schedules = Table(
    "conveyor_schedules",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("task", String(255), nullable=False),
    Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("queue", String(255), nullable=True),
    Column("priority", SmallInteger, nullable=True),
    Column("trigger_kind", String(16), nullable=False),
    Column("trigger_expr", String(255), nullable=True),
    Column("trigger_every", Double, nullable=True),
    Column("trigger_at", DateTime(timezone=True), nullable=True),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("overlap", String(16), nullable=False, server_default="skip"),
    Column("catchup_window", Double, nullable=False, server_default="60"),
    Column("catchup_max", Integer, nullable=False, server_default="1"),
    Column("jitter", Double, nullable=False, server_default="0"),
    Column("start_at", DateTime(timezone=True), nullable=True),
    Column("end_at", DateTime(timezone=True), nullable=True),
    Column("max_runs", Integer, nullable=True),
    Column("run_count", Integer, nullable=False, server_default="0"),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("paused_note", Text, nullable=True),
    # 'code' rows come from the app's beat_schedule: ``code_default`` is the code's version,
    # ``overridden`` the fields a user changed since (kept across restarts until reset).
    Column("source", String(8), nullable=False, server_default="user"),
    Column("code_default", JSONB, nullable=True),
    Column("overridden", ARRAY(String(32)), nullable=False, server_default=text("'{}'")),
    Column("retired_at", DateTime(timezone=True), nullable=True),
    Column("next_fire_at", DateTime(timezone=True), nullable=True),
    Column("last_fire_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Index(
        "ix_conveyor_schedules_due",
        "next_fire_at",
        postgresql_where=text("NOT paused AND retired_at IS NULL AND next_fire_at IS NOT NULL"),
    ),
)

# Every fire of a schedule and what became of it; (schedule, fire time) is unique, so a fire
# is recorded once whichever replica (or leader for a moment) wrote it.
schedule_fires = Table(
    "conveyor_schedule_fires",
    metadata,
    Column(
        "schedule_id",
        UUID(as_uuid=False),
        ForeignKey("conveyor_schedules.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("fire_time", DateTime(timezone=True), primary_key=True),
    Column("job_id", UUID(as_uuid=False), nullable=True),
    # submitted | skipped_overlap | missed | cancelled_previous | buffered
    Column("outcome", String(24), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# Leases for services of which one replica works at a time (the scheduler). ``token`` is the
# fencing token: it grows on every take-over, and writes check it, so a leader that lost its
# lease without knowing (paused, partitioned) can no longer write.
leases = Table(
    "conveyor_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Workflows (``conveyor.workflows``): a DAG of jobs. ``source`` is 'canvas' (chains, groups and
# chords an app sent with Celery's canvas, recorded by the recorder) or 'spec' (a JSON
# description posted to the API, driven step by step from the ledger). ``state`` is what the
# control plane decided ('running', 'cancelled'); the state shown is aggregated from the nodes.
workflows = Table(
    "conveyor_workflows",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("source", String(16), nullable=False),
    Column("spec", JSONB, nullable=True),
    Column("state", String(16), nullable=False, server_default="running"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_conveyor_workflows_created", "created_at", "id"),
)

# One row per node. A spec step is a node before it runs (``job_id`` NULL until its parents
# succeed and it is submitted; a retry gives it a new job). A canvas node's ``step`` is its job
# id; ``group_id`` and ``chord`` (the node is a chord header member) let its edges be read back.
workflow_nodes = Table(
    "conveyor_workflow_nodes",
    metadata,
    Column(
        "workflow_id",
        UUID(as_uuid=False),
        ForeignKey("conveyor_workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", String(255), primary_key=True),
    Column("job_id", UUID(as_uuid=False), nullable=True),
    Column("task", String(255), nullable=False),
    Column("queue", String(255), nullable=True),
    Column("position", Integer, nullable=False, server_default="0"),
    Column("weight", Double, nullable=False, server_default="1"),
    Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("pass_result", Boolean, nullable=False, server_default=text("false")),
    Column("group_id", String(255), nullable=True),
    Column("chord", Boolean, nullable=False, server_default=text("false")),
    # A canvas node's message options (chain, chord, group...): a resend of its job keeps them.
    # None binds as SQL NULL (not JSON null), so that the recorder's upsert, which keeps the
    # stored options when a later sighting of the job carries none (coalesce), never erases
    # them: a chord header member re-sent without its chord would never fire the callback.
    Column("message", JSONB(none_as_null=True), nullable=True),
    Index("ix_conveyor_workflow_nodes_job", "job_id", postgresql_where=text("job_id IS NOT NULL")),
)

# Spec workflows' dependencies, step to step (a canvas' edges follow from its nodes and jobs).
workflow_edges = Table(
    "conveyor_workflow_edges",
    metadata,
    Column(
        "workflow_id",
        UUID(as_uuid=False),
        ForeignKey("conveyor_workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("parent", String(255), primary_key=True),
    Column("child", String(255), primary_key=True),
)

# Which workflow a canvas id belongs to: each node's job id, each group id and each id a message
# carried for later (chain steps, chord callbacks). The recorder resolves a message's workflow
# from any of its ids already known here.
workflow_keys = Table(
    "conveyor_workflow_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("workflow_id", UUID(as_uuid=False), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Index("ix_conveyor_workflow_keys_workflow", "workflow_id"),
)
