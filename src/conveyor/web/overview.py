"""The overview page, the dashboard's home: jobs per state, finished jobs and the failure rate
over the last hour, day or week, per-task figures, queues, workers and the latest failures.

Everything here reads pre-aggregated counts (``conveyor.ledger.stats``) or short index ranges,
so the page costs the same with a thousand jobs in the ledger or ten million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from conveyor.api.deps import ServicesDep
from conveyor.api.routes.system import queue_list, worker_list
from conveyor.ledger import repository as repo
from conveyor.ledger import stats
from conveyor.web import charts
from conveyor.web.job_views import STATES
from conveyor.web.pages import PagesDep, page_errors

DEAD_LETTERS_MAX = 10_000  # counted no further (the dead-letters page counts as far)

router = APIRouter()


@dataclass(frozen=True)
class Range:
    """A time range the charts can show, and the width of one bar."""

    key: str
    label: str
    span: timedelta
    bucket: timedelta
    bucket_label: str


RANGES = (
    Range("1h", "Last hour", timedelta(hours=1), timedelta(minutes=1), "minute"),
    Range("24h", "Last 24 hours", timedelta(hours=24), timedelta(minutes=15), "15 minutes"),
    Range("7d", "Last 7 days", timedelta(days=7), timedelta(hours=2), "2 hours"),
)
RECENT_FAILURES = 10


def recent_failures(conn: Connection, limit: int = RECENT_FAILURES) -> list[dict[str, Any]]:
    """The newest failed or dead jobs: one ordered index range per state, merged here (an
    ``IN`` over both states would make PostgreSQL sort every failure ever recorded)."""
    found: list[dict[str, Any]] = []
    for state in stats.FAILED_EVENTS:
        rows, _ = repo.list_jobs(conn, repo.JobFilter(states=(state,)), limit=limit)
        found.extend(rows)
    found.sort(key=lambda r: (r["created_at"], str(r["id"])), reverse=True)
    return found[:limit]


def overview_context(services: Any, chosen: Range, now: datetime) -> dict[str, Any]:
    """Everything the overview shows, read in one connection plus the broker and Redis."""
    since = now - chosen.span
    with services.engine.connect() as conn:
        counts = stats.counts_by_state(conn)
        buckets = stats.series(conn, until=now, span=chosen.span, width=chosen.bucket)
        per_task = stats.totals(conn, since, hourly=chosen.bucket >= timedelta(hours=1))
        failures = recent_failures(conn)
        # The dead-letters page's own count (dead, not replayed), not the `dead` state's.
        dead_letters = repo.count_matching(conn, repo.dead_letters(), DEAD_LETTERS_MAX)
    summary = stats.Bucket(since)
    for b in buckets:
        for event, n in b.counts.items():
            summary.counts[event] = summary.counts.get(event, 0) + n
        summary.run_seconds += b.run_seconds
    workers = worker_list(services)  # once: the queues' consumer counts read them too
    alive = [w for w in workers if w["alive"]]
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "summary": summary,
        "per_minute": summary.finished / (chosen.span.total_seconds() / 60),
        "throughput": charts.throughput_chart(buckets, chosen.bucket),
        "failure": charts.failure_chart(buckets, chosen.bucket),
        "tasks": sorted(
            (stats.TaskFigures.of(name, figures) for name, figures in per_task.items()),
            key=lambda t: (-(t.failed + t.dead), -t.submitted, t.name),
        ),
        "queues": queue_list(services, workers),
        "workers": workers,
        "alive": alive,
        "processes": sum(int(w.get("processes") or w.get("concurrency") or 0) for w in alive),
        "failures": failures,
        "dead_letters": dead_letters,
        "dead_letters_max": DEAD_LETTERS_MAX,
    }


@router.get("/", name="web_home", response_class=HTMLResponse)
def overview_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    span: Annotated[str, Query(alias="range", max_length=16)] = "1h",
) -> HTMLResponse:
    """The dashboard's home page."""
    chosen = next((r for r in RANGES if r.key == span), None)
    error = None
    if chosen is None:
        error = f"Unknown range {span!r}: choose one of {', '.join(r.key for r in RANGES)}."
        chosen = RANGES[0]
    with page_errors():
        context = overview_context(services, chosen, datetime.now(UTC))
    context.update({"ranges": RANGES, "range": chosen, "states": STATES, "error": error})
    status = 400 if error else 200
    return pages.render(request, "overview.html", context, status_code=status, active="overview")
