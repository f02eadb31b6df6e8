"""Pre-aggregated job counts: jobs per state, and per-minute job events for the charts

Revision ID: 0004
Revises: 0003

Counting a ledger of millions of jobs on every dashboard view is too slow, so triggers keep two
small tables current in the same transaction as each change of ``conveyor_jobs``:

- ``conveyor_state_counts``: jobs per state, as deltas spread over rows keyed by the writing
  backend (``pg_backend_pid() % 64``), so two writers never wait on one hot row and can never
  deadlock on each other's rows; a reader sums them.
- ``conveyor_job_stats``: per minute, task and queue, how many jobs were submitted, succeeded,
  failed, were cancelled, went dead or were retried, plus the run time of the finished ones.

Every trigger runs once per statement over its transition tables, so a statement that changes
thousands of jobs (a batch of submissions, a purge, the recorder's batch, retention) updates
each aggregate row once. Row triggers would update the same counts row once per job inside one
transaction, and PostgreSQL slows quadratically on such chains of row versions (33,000 cancels
took 10 s instead of 0.7). So writers of conveyor_jobs should change many jobs per statement,
as the intake and the recorder do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SHARD = "(pg_backend_pid() % 64)"
TERMINAL = "('succeeded','failed','cancelled','dead')"


def _run_seconds(row: str) -> str:
    return (
        f"(CASE WHEN {row}.state IN ('succeeded','failed') AND {row}.started_at IS NOT NULL "
        f"AND {row}.finished_at IS NOT NULL "
        f"THEN greatest(extract(epoch FROM {row}.finished_at - {row}.started_at), 0) "
        "ELSE 0 END)"
    )


def _happened(rows: str, was: str, was_attempt: str) -> str:
    """What a set of changed rows did: finished (each terminal state is an event), and started
    a retry (every attempt past the first, counted from the attempt number, because the
    recorder folds a quick retry into one write and the row may never show ``retrying``)."""
    return f"""
    SELECT date_trunc('minute', COALESCE(finished_at, now())) AS minute, state AS event, task,
           queue, 1 AS n, {_run_seconds(rows)} AS run_seconds
    FROM {rows} WHERE state IN {TERMINAL} AND {was} NOT IN {TERMINAL}
    UNION ALL
    SELECT date_trunc('minute', now()), 'retried', task, queue,
           attempt - greatest({was_attempt}, 1), 0
    FROM {rows} WHERE attempt > greatest({was_attempt}, 1)"""


def _insert_stats(table: str, unit: str) -> str:
    return f"""
  INSERT INTO {table} AS s ({unit}, event, task, queue, shard, n, run_seconds)
  SELECT date_trunc('{unit}', minute), event, task, queue, {SHARD}, sum(n), sum(run_seconds)
  FROM happened GROUP BY 1, event, task, queue
  ON CONFLICT ({unit}, event, task, queue, shard) DO UPDATE
  SET n = s.n + EXCLUDED.n, run_seconds = s.run_seconds + EXCLUDED.run_seconds"""


# Per minute for the last day's charts, per hour for the week's: the same events, added up in
# the same statement.
INSERT_STATS = f"""
  , per_minute AS ({_insert_stats("conveyor_job_stats", "minute")})
  {_insert_stats("conveyor_job_stats_hourly", "hour")}"""
UPSERT_COUNTS = """
  ON CONFLICT (state, shard) DO UPDATE SET n = c.n + EXCLUDED.n"""

FUNCTIONS = f"""
CREATE FUNCTION conveyor_count_inserted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO conveyor_state_counts AS c (state, shard, n)
  SELECT state, {SHARD}, count(*) FROM added GROUP BY state
  {UPSERT_COUNTS};
  -- A job the recorder first learns about late (plain .delay()) may arrive finished.
  WITH happened AS (
    SELECT date_trunc('minute', created_at) AS minute, 'submitted' AS event, task, queue,
           1 AS n, 0 AS run_seconds
    FROM added
    UNION ALL {_happened("added", "'queued'", "1")}
  ) {INSERT_STATS};
  RETURN NULL;
END $$;

CREATE FUNCTION conveyor_count_updated_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH changed AS MATERIALIZED (
    SELECT o.state AS was, o.attempt AS was_attempt, n.state, n.attempt, n.task, n.queue,
           n.started_at, n.finished_at
    FROM old o JOIN new n USING (id)
    WHERE o.state IS DISTINCT FROM n.state OR o.attempt IS DISTINCT FROM n.attempt
  ), counted AS (
    INSERT INTO conveyor_state_counts AS c (state, shard, n)
    SELECT state, {SHARD}, sum(d) FROM (
      SELECT was AS state, -1 AS d FROM changed WHERE was <> state
      UNION ALL SELECT state, 1 FROM changed WHERE was <> state
    ) AS delta GROUP BY state
    {UPSERT_COUNTS}
  ), happened AS ({_happened("changed", "was", "was_attempt")}
  ) {INSERT_STATS};
  RETURN NULL;
END $$;

CREATE FUNCTION conveyor_count_deleted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO conveyor_state_counts AS c (state, shard, n)
  SELECT state, {SHARD}, -count(*) FROM gone GROUP BY state
  {UPSERT_COUNTS};
  RETURN NULL;
END $$;

CREATE FUNCTION conveyor_count_truncated_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM conveyor_state_counts;
  RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER conveyor_jobs_count_insert AFTER INSERT ON conveyor_jobs
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION conveyor_count_inserted_jobs();
CREATE TRIGGER conveyor_jobs_count_update AFTER UPDATE ON conveyor_jobs
  REFERENCING OLD TABLE AS old NEW TABLE AS new FOR EACH STATEMENT
  EXECUTE FUNCTION conveyor_count_updated_jobs();
CREATE TRIGGER conveyor_jobs_count_delete AFTER DELETE ON conveyor_jobs
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
  EXECUTE FUNCTION conveyor_count_deleted_jobs();
CREATE TRIGGER conveyor_jobs_count_truncate AFTER TRUNCATE ON conveyor_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION conveyor_count_truncated_jobs();
"""

# Existing ledgers start with their current counts and a week of history (retries before the
# upgrade cannot be recovered: they left no row of their own).
BACKFILL = f"""
LOCK TABLE conveyor_jobs IN SHARE MODE;
INSERT INTO conveyor_state_counts (state, shard, n)
SELECT state, 0, count(*) FROM conveyor_jobs GROUP BY state;
INSERT INTO conveyor_job_stats (minute, event, task, queue, shard, n, run_seconds)
SELECT date_trunc('minute', created_at), 'submitted', task, queue, 0, count(*), 0
FROM conveyor_jobs WHERE created_at > now() - interval '8 days' GROUP BY 1, 3, 4;
INSERT INTO conveyor_job_stats (minute, event, task, queue, shard, n, run_seconds)
SELECT date_trunc('minute', finished_at), state, task, queue, 0, count(*),
       sum({_run_seconds("conveyor_jobs")})
FROM conveyor_jobs WHERE state IN {TERMINAL} AND finished_at > now() - interval '8 days'
GROUP BY 1, 2, 3, 4;
INSERT INTO conveyor_job_stats_hourly (hour, event, task, queue, shard, n, run_seconds)
SELECT date_trunc('hour', minute), event, task, queue, 0, sum(n), sum(run_seconds)
FROM conveyor_job_stats GROUP BY 1, 2, 3, 4;
DELETE FROM conveyor_job_stats WHERE minute < now() - interval '2 days';
"""


def upgrade() -> None:
    op.create_table(
        "conveyor_state_counts",
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("state", "shard"),
    )
    for table, unit in (("conveyor_job_stats", "minute"), ("conveyor_job_stats_hourly", "hour")):
        op.create_table(
            table,
            sa.Column(unit, sa.DateTime(timezone=True), nullable=False),
            sa.Column("event", sa.String(length=16), nullable=False),
            sa.Column("task", sa.String(length=255), nullable=False),
            sa.Column("queue", sa.String(length=255), nullable=False),
            sa.Column("shard", sa.SmallInteger(), nullable=False),
            sa.Column("n", sa.BigInteger(), nullable=False),
            sa.Column("run_seconds", sa.Double(), nullable=False),
            sa.PrimaryKeyConstraint(unit, "event", "task", "queue", "shard"),
        )
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)
    op.execute(BACKFILL)


def downgrade() -> None:
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER conveyor_jobs_count_{trigger} ON conveyor_jobs")
    for function in ("inserted_jobs", "updated_jobs", "deleted_jobs", "truncated_jobs"):
        op.execute(f"DROP FUNCTION conveyor_count_{function}()")
    op.drop_table("conveyor_job_stats_hourly")
    op.drop_table("conveyor_job_stats")
    op.drop_table("conveyor_state_counts")
