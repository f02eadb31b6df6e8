"""Reads of the pre-aggregated job counts that triggers keep current (migration 0004).

``conveyor_state_counts`` answers "how many jobs are in each state" without counting a ledger
of millions; ``conveyor_job_stats`` holds, per minute, task and queue, how many jobs were
submitted, succeeded, failed, were cancelled, went dead or were retried, and how long the
finished ones ran. The overview's charts and the queues page's throughput read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select, text

from conveyor.core.states import JobState
from conveyor.ledger.tables import job_stats, state_counts

EVENTS = ("submitted", "succeeded", "failed", "dead", "cancelled", "retried")
"""What ``conveyor_job_stats`` counts; the rest of a job's life is in its row."""
FAILED_EVENTS = ("failed", "dead")
RETENTION = timedelta(days=8)
"""Per-minute rows older than this are pruned (the overview's longest range is 7 days)."""


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


_SERIES = text("""
SELECT date_bin(make_interval(secs => :width), minute, :origin) AS start, event,
       sum(n) AS n, sum(run_seconds) AS run_seconds
FROM conveyor_job_stats
WHERE minute >= :origin AND minute < :until
GROUP BY 1, 2
""")


def series(conn: Connection, *, until: datetime, span: timedelta, width: timedelta) -> list[Bucket]:
    """Buckets of ``width`` covering ``span`` up to ``until`` (which is rounded up to a whole
    bucket), oldest first, empty buckets included."""
    step = int(width.total_seconds())
    end = datetime.fromtimestamp((int(until.timestamp()) // step + 1) * step, until.tzinfo)
    origin = end - span
    buckets = [Bucket(origin + i * width) for i in range(int(span / width))]
    index = {b.start: b for b in buckets}
    rows = conn.execute(_SERIES, {"width": step, "origin": origin, "until": end}).all()
    for start, event, n, run_seconds in rows:
        bucket = index.get(start)
        if bucket is not None:
            bucket.counts[event] = int(n)
            bucket.run_seconds += float(run_seconds)
    return buckets


def totals(conn: Connection, since: datetime, *, by: str = "task") -> dict[str, dict[str, float]]:
    """Per task (or queue) since ``since``: count of each event, plus ``run_seconds``."""
    column = job_stats.c.task if by == "task" else job_stats.c.queue
    n, run_seconds = func.sum(job_stats.c.n), func.sum(job_stats.c.run_seconds)
    rows = conn.execute(
        select(column, job_stats.c.event, n, run_seconds)
        .where(job_stats.c.minute >= since)
        .group_by(column, job_stats.c.event)
    ).all()
    out: dict[str, dict[str, float]] = {}
    for name, event, count, seconds in rows:
        entry = out.setdefault(name, {"run_seconds": 0.0})
        entry[event] = int(count)
        entry["run_seconds"] += float(seconds)
    return out


def prune(conn: Connection, now: datetime) -> int:
    """Drop per-minute rows past :data:`RETENTION`; how many went."""
    result = conn.execute(delete(job_stats).where(job_stats.c.minute < now - RETENTION))
    return int(result.rowcount or 0)
