"""What the job pages show, built from ledger rows: the plain logic behind ``jobs.py``.

Views are frozen dataclasses of display-ready values, so templates stay free of arithmetic and
the live JSON endpoint sends exactly what the first render showed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from conveyor.api.schemas import progress_of
from conveyor.core.ids import parse_job_id
from conveyor.core.states import JobState
from conveyor.errors import JobNotFound, ScheduleNotFound
from conveyor.ledger import repository as repo
from conveyor.ledger import schedule_store
from conveyor.ledger.workflows import get_workflow_row
from conveyor.web import formatting as fmt

TERMINAL: frozenset[str] = frozenset(s.value for s in JobState if s.terminal)
STATES: tuple[str, ...] = tuple(s.value for s in JobState)
LIVE_MAX_IDS = 200
"""Most jobs one live request may ask about (a page shows at most this many)."""


@dataclass(frozen=True)
class ProgressView:
    """A job's progress as shown: bar percentage and the words around it."""

    percent: float | None
    current: float
    total: float | None
    count: str
    rate: str | None
    eta: str | None
    eta_seconds: float | None
    step: str | None
    message: str | None
    first_current: float | None
    first_at: float | None  # epoch seconds, so the browser can recompute the rate

    def as_json(self) -> dict[str, Any]:
        """The fields the browser updates."""
        return {
            "percent": self.percent,
            "count": self.count,
            "rate": self.rate,
            "eta": self.eta,
            "eta_seconds": self.eta_seconds,
            "step": self.step,
            "message": self.message,
        }


def progress_view(row: dict[str, Any]) -> ProgressView | None:
    """Progress of a job row (None until its task first reports)."""
    p = progress_of(row)
    if p is None:
        return None
    total = f" / {fmt.format_number(p.total)}" if p.total is not None else ""
    return ProgressView(
        percent=round(p.percent, 1) if p.percent is not None else None,
        current=p.current,
        total=p.total,
        count=fmt.format_number(p.current) + total,
        rate=fmt.format_rate(p.rate),
        eta=fmt.format_duration(p.eta_seconds) if p.eta_seconds is not None else None,
        eta_seconds=p.eta_seconds,
        step=p.step,
        message=p.message,
        first_current=row.get("progress_first_current"),
        first_at=fmt.epoch(row.get("progress_first_at")),
    )


def run_seconds(row: dict[str, Any], now: datetime) -> float | None:
    """How long the job ran, or has been running so far."""
    if row.get("started_at") is None:
        return None
    if row.get("finished_at") is not None:
        return fmt.seconds_between(row["started_at"], row["finished_at"])
    if row["state"] in TERMINAL:
        return None
    return fmt.seconds_between(row["started_at"], now)


@dataclass(frozen=True)
class JobSummary:
    """One row of the jobs table."""

    id: str
    task: str
    state: str
    terminal: bool
    queue: str
    attempt: int
    created_at: datetime
    duration: str
    progress: ProgressView | None
    cancel_requested: bool
    workflow_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """What the list page's script needs to refresh this row."""
        return {
            "state": self.state,
            "terminal": self.terminal,
            "attempt": self.attempt,
            "duration": self.duration,
            "cancel_requested": self.cancel_requested,
            "progress": self.progress.as_json() if self.progress else None,
        }


def job_summary(row: dict[str, Any], now: datetime) -> JobSummary:
    """A ledger row as a row of the jobs table."""
    return JobSummary(
        id=str(row["id"]),
        task=row["task"],
        state=row["state"],
        terminal=row["state"] in TERMINAL,
        queue=row["queue"],
        attempt=row["attempt"],
        created_at=row["created_at"],
        duration=fmt.format_duration(run_seconds(row, now)),
        progress=progress_view(row),
        cancel_requested=row.get("cancel_requested_at") is not None,
        workflow_id=str(row["workflow_id"]) if row.get("workflow_id") else None,
    )


def live_jobs(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The current state of the given jobs, keyed by id; ids not in the ledger are left out."""
    wanted: list[str] = []
    for raw in ids[:LIVE_MAX_IDS]:
        try:
            wanted.append(parse_job_id(raw))
        except JobNotFound:
            continue
    if not wanted:
        return {}
    now = datetime.now(UTC)
    return {str(r["id"]): job_summary(r, now).as_json() for r in repo.get_jobs(conn, wanted)}


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a job, as the attempts table shows it."""

    attempt: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: str
    outcome: str | None
    error_type: str | None
    error_message: str | None
    traceback: str | None


def attempt_view(row: dict[str, Any], now: datetime) -> AttemptView:
    """An attempt row; an unfinished attempt's duration counts up to ``now``."""
    end = row.get("finished_at") or (now if row.get("outcome") is None else None)
    return AttemptView(
        attempt=row["attempt"],
        worker=row.get("worker"),
        started_at=row.get("started_at"),
        finished_at=row.get("finished_at"),
        duration=fmt.format_duration(fmt.seconds_between(row.get("started_at"), end)),
        outcome=row.get("outcome"),
        error_type=row.get("error_type"),
        error_message=row.get("error_message"),
        traceback=row.get("traceback"),
    )


@dataclass(frozen=True)
class ResultView:
    """A finished job's return value, as text to show in a ``<pre>``."""

    text: str
    truncated: bool
    size: int | None  # bytes of the stored JSON, when it came from a blob


@dataclass(frozen=True)
class JobDetail:
    """Everything the job page shows."""

    summary: JobSummary
    row: dict[str, Any]
    attempts: list[AttemptView]
    children: list[dict[str, Any]]
    result: ResultView | None
    waited: str
    schedule_name: str | None = None  # of the schedule that fired it, while it exists
    workflow_name: str | None = None  # of the workflow the job is a node of

    @property
    def id(self) -> str:
        return self.summary.id

    @property
    def state(self) -> str:
        return self.summary.state

    @property
    def terminal(self) -> bool:
        return self.summary.terminal

    @property
    def can_cancel(self) -> bool:
        return not self.summary.terminal

    @property
    def can_retry(self) -> bool:
        # A dead job is replayed from the dead letters (its own form), not retried as well.
        return self.summary.terminal and self.summary.state != JobState.DEAD.value

    @property
    def scheduled_for(self) -> datetime | None:
        """When the job is due, while it waits for that time; afterwards the ETA is history."""
        waiting = self.summary.state in (JobState.SCHEDULED.value, JobState.RETRYING.value)
        return self.row.get("eta") if waiting else None


def result_view(conn: Connection, row: dict[str, Any]) -> ResultView | None:
    """The job's result from the ledger row, or from its blob when it was too large to inline."""
    limit = fmt.JSON_DISPLAY_LIMIT
    if row.get("result_ref"):
        blob = repo.get_blob(conn, row["result_ref"])
        if blob is None:
            return None
        raw = bytes(blob)
        if len(raw) <= limit:
            try:
                return ResultView(fmt.json_text(json.loads(raw)), truncated=False, size=len(raw))
            except ValueError:
                pass  # not JSON after all: show it as stored
        # Too big to re-indent usefully: show its start as stored.
        text = raw[:limit].decode("utf-8", errors="replace")
        if len(raw) > limit:
            text += f"\n… {len(raw) - limit:,} more bytes not shown"
        return ResultView(text=text, truncated=len(raw) > limit, size=len(raw))
    if row.get("result") is None:
        return None
    full = fmt.json_text(row["result"])
    return ResultView(fmt.truncate(full, limit), truncated=len(full) > limit, size=None)


def load_job_detail(conn: Connection, job_id: str) -> JobDetail:
    """Read a job, its attempts, children and result; JobNotFound if it is not in the ledger."""
    row = repo.get_job(conn, job_id)
    now = datetime.now(UTC)
    children = [
        {"id": str(c["id"]), "task": c["task"], "state": c["state"], "created_at": c["created_at"]}
        for c in repo.get_children(conn, job_id)
    ]
    for key in ("id", "parent_id", "root_id", "retry_of", "schedule_id", "workflow_id"):
        if row.get(key) is not None:
            row[key] = str(row[key])
    attempts = repo.get_attempts(conn, job_id)
    # Time in the queue before the first attempt (later attempts wait on their retry delay).
    queued = row.get("queued_at") or row.get("eta") or row.get("created_at")
    first_start = attempts[0]["started_at"] if attempts else None
    return JobDetail(
        summary=job_summary(row, now),
        row=row,
        attempts=[attempt_view(a, now) for a in attempts],
        children=children,
        result=result_view(conn, row),
        waited=fmt.format_duration(fmt.seconds_between(queued, first_start)),
        schedule_name=_schedule_name(conn, row.get("schedule_id")),
        workflow_name=_workflow_name(conn, row.get("workflow_id")),
    )


def _schedule_name(conn: Connection, schedule_id: str | None) -> str | None:
    if schedule_id is None:
        return None
    try:
        return str(schedule_store.get(conn, schedule_id)["name"])
    except ScheduleNotFound:
        return None


def _workflow_name(conn: Connection, workflow_id: str | None) -> str | None:
    if workflow_id is None:
        return None
    found = get_workflow_row(conn, workflow_id)
    return str(found["name"] or "workflow") if found else None
