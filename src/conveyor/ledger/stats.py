"""Reads of the pre-aggregated job counts that triggers keep current (migration 0004).

``conveyor_state_counts`` answers "how many jobs are in each state" without counting a ledger
of millions; ``conveyor_job_stats`` holds, per minute, task and queue, how many jobs were
submitted, succeeded, failed, were cancelled, went dead or were retried, and how long the
finished ones ran. The overview's charts and the queues page's throughput read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Table, delete, func, select

from conveyor.core.states import JobState
from conveyor.ledger.tables import job_stats, job_stats_hourly, state_counts

EVENTS = ("submitted", "succeeded", "failed", "dead", "cancelled", "retried")
"""What ``conveyor_job_stats`` counts; the rest of a job's life is in its row."""
FAILED_EVENTS = ("failed", "dead")
MINUTE_RETENTION = timedelta(days=2)
"""Per-minute rows are kept this long (they draw the ranges up to a day)."""
RETENTION = timedelta(days=8)
"""Per-hour rows are kept this long (the overview's longest range is 7 days)."""


def counts_by_state(conn: Connection) -> dict[str, int]:
    """Jobs per state, every state present (0 where none)."""
    rows = conn.execute(
        select(state_counts.c.state, func.sum(state_counts.c.n)).group_by(state_counts.c.state)
    ).all()
    counts = {s.value: 0 for s in JobState}
    counts.update({state: int(n) for state, n in rows if state in counts})
    return counts


@dataclass
class Bucket:
    """One bar of a chart: events in ``[start, start + width)``."""

    start: datetime
    counts: dict[str, int] = field(default_factory=dict)
    run_seconds: float = 0.0

    @property
    def finished(self) -> int:
        return sum(self.counts.get(e, 0) for e in ("succeeded", *FAILED_EVENTS))

    @property
    def failed(self) -> int:
        return sum(self.counts.get(e, 0) for e in FAILED_EVENTS)

    @property
    def failure_rate(self) -> float | None:
        """Failed or dead among the jobs that finished (cancelled ones aside)."""
        return self.failed / self.finished if self.finished else None

    @property
    def mean_run_seconds(self) -> float | None:
        ran = self.counts.get("succeeded", 0) + self.counts.get("failed", 0)
        return self.run_seconds / ran if ran else None


@dataclass(frozen=True)
class TaskFigures:
    """One task's figures over a time range (from :func:`totals`)."""

    name: str
    submitted: int
    succeeded: int
    failed: int
    dead: int
    retried: int
    cancelled: int
    mean_run_seconds: float | None

    @property
    def failure_rate(self) -> float | None:
        finished = self.succeeded + self.failed + self.dead
        return (self.failed + self.dead) / finished if finished else None

    @classmethod
    def of(cls, name: str, figures: dict[str, float]) -> TaskFigures:
        def count(event: str) -> int:
            return int(figures.get(event, 0))

        ran = count("succeeded") + count("failed")
        return cls(
            name=name,
            submitted=count("submitted"),
            succeeded=count("succeeded"),
            failed=count("failed"),
            dead=count("dead"),
            retried=count("retried"),
            cancelled=count("cancelled"),
            mean_run_seconds=figures["run_seconds"] / ran if ran else None,
        )


def _table(width: timedelta) -> Table:
    """Hourly rows for buckets of an hour or more (a week is 168 rows per task and event,
    not 10,080), minute rows otherwise."""
    return job_stats_hourly if width >= timedelta(hours=1) else job_stats


def series(conn: Connection, *, until: datetime, span: timedelta, width: timedelta) -> list[Bucket]:
    """Buckets of ``width`` covering ``span`` up to ``until`` (which is rounded up to a whole
    bucket), oldest first, empty buckets included."""
    step = int(width.total_seconds())
    end = datetime.fromtimestamp((int(until.timestamp()) // step + 1) * step, until.tzinfo)
    origin = end - span
    buckets = [Bucket(origin + i * width) for i in range(int(span / width))]
    index = {b.start: b for b in buckets}
    table = _table(width)
    at = table.c.hour if table is job_stats_hourly else table.c.minute
    start = func.date_bin(func.make_interval(0, 0, 0, 0, 0, 0, step), at, origin)
    rows = conn.execute(
        select(start, table.c.event, func.sum(table.c.n), func.sum(table.c.run_seconds))
        .where(at >= origin, at < end)
        .group_by(start, table.c.event)
    ).all()
    for bucket_start, event, n, run_seconds in rows:
        bucket = index.get(bucket_start)
        if bucket is not None:
            bucket.counts[event] = int(n)
            bucket.run_seconds += float(run_seconds)
    return buckets


def totals(
    conn: Connection, since: datetime, *, by: str = "task", hourly: bool = False
) -> dict[str, dict[str, float]]:
    """Per task (or queue) since ``since``: count of each event, plus ``run_seconds``.
    ``hourly`` reads the hourly rows (``since`` then counts from the start of its hour)."""
    table = job_stats_hourly if hourly else job_stats
    at = table.c.hour if hourly else table.c.minute
    column = table.c.task if by == "task" else table.c.queue
    n, run_seconds = func.sum(table.c.n), func.sum(table.c.run_seconds)
    rows = conn.execute(
        select(column, table.c.event, n, run_seconds)
        .where(at >= (since.replace(minute=0, second=0, microsecond=0) if hourly else since))
        .group_by(column, table.c.event)
    ).all()
    out: dict[str, dict[str, float]] = {}
    for name, event, count, seconds in rows:
        entry = out.setdefault(name, {"run_seconds": 0.0})
        entry[event] = int(count)
        entry["run_seconds"] += float(seconds)
    return out


def prune(conn: Connection, now: datetime) -> int:
    """Drop minute rows past :data:`MINUTE_RETENTION` and hour rows past :data:`RETENTION`;
    how many went."""
    minutes = conn.execute(delete(job_stats).where(job_stats.c.minute < now - MINUTE_RETENTION))
    hours = conn.execute(delete(job_stats_hourly).where(job_stats_hourly.c.hour < now - RETENTION))
    return int(minutes.rowcount or 0) + int(hours.rowcount or 0)
