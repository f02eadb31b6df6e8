"""Fold a batch of job events into one row update per job and one per attempt.

Pure: the recorder feeds it decoded events in stream order and writes what it returns. Folding
first keeps each job to one row in the batch's upsert (PostgreSQL refuses to touch a row twice
in one INSERT ... ON CONFLICT) and turns thousands of events into a few statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.core.states import JobState, supersedes
from conveyor.ledger.events import PROGRESS

_INFO_FIELDS = (
    "task",
    "queue",
    "priority",
    "args",
    "kwargs",
    "parent_id",
    "root_id",
    "max_attempts",
    "xid",  # the task id Celery knew, when the ledger id was derived from it
    "raw",  # a refused message as it arrived
    # Canvas ids a published message carried (``ledger.workflows.canvas_fields``).
    "grp",
    "chord",
    "cmsg",
)


def _ts(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


@dataclass
class JobRow:
    id: str
    state: JobState
    attempt: int
    info: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    eta: datetime | None = None
    expires_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    has_result: bool = False
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


@dataclass
class AttemptRow:
    job_id: str
    attempt: int
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


@dataclass
class ProgressRow:
    job_id: str
    current: float
    total: float | None
    step: str | None
    message: str | None
    at: datetime
    first_current: float
    first_at: datetime


@dataclass
class Folded:
    jobs: dict[str, JobRow] = field(default_factory=dict)
    attempts: dict[tuple[str, int], AttemptRow] = field(default_factory=dict)
    progress: dict[str, ProgressRow] = field(default_factory=dict)
    # (job id, attempt, when): attempts before this one that never reported an end were lost.
    lost_before: list[tuple[str, int, datetime]] = field(default_factory=list)
    # job id -> attempt: a finished job that a new publish of its id runs again from this
    # attempt on; the recorder reopens its row before the upsert (which never leaves an end).
    reruns: dict[str, int] = field(default_factory=dict)


def fold(events: list[dict[str, Any]]) -> Folded:
    out = Folded()
    for ev in events:
        if ev["k"] == PROGRESS:
            _fold_progress(out, ev)
        else:
            _fold_state(out, ev)
    return out


def _fold_progress(out: Folded, ev: dict[str, Any]) -> None:
    at = _ts(ev["ts"])
    current = float(ev.get("current") or 0)
    prev = out.progress.get(ev["id"])
    total = ev.get("total")
    out.progress[ev["id"]] = ProgressRow(
        job_id=ev["id"],
        current=current,
        total=float(total) if total is not None else None,
        step=ev.get("step"),
        message=ev.get("message"),
        at=at,
        first_current=prev.first_current if prev else current,
        first_at=prev.first_at if prev else at,
    )


def _fold_state(out: Folded, ev: dict[str, Any]) -> None:
    state = JobState(ev["k"])
    attempt = int(ev.get("attempt") or 0)
    at = _ts(ev["ts"])
    row = out.jobs.get(ev["id"])
    if row is None:
        row = out.jobs[ev["id"]] = JobRow(id=ev["id"], state=state, attempt=attempt)
        apply = True
    else:
        apply = supersedes(state, attempt, row.state, row.attempt, rerun=bool(ev.get("rerun")))
    if ev.get("rerun") and state is JobState.RUNNING:
        out.reruns[ev["id"]] = max(attempt, out.reruns.get(ev["id"], 0))
    for name in _INFO_FIELDS:
        if name in ev and name not in row.info:
            row.info[name] = ev[name]
    if state in (JobState.QUEUED, JobState.SCHEDULED):
        row.queued_at = row.queued_at or at
        if ev.get("eta") is not None:
            row.eta = _ts(ev["eta"])
        if ev.get("expires") is not None:
            row.expires_at = _ts(ev["expires"])
    if (state is JobState.RUNNING and attempt > 1) or (state.terminal and ev.get("skipped")):
        out.lost_before.append((ev["id"], attempt, at))
    if state is JobState.RUNNING:
        # Progress reported before this start was an earlier attempt's: the new attempt's
        # rate and ETA start from its own first report.
        out.progress.pop(ev["id"], None)
        attempt_row = _attempt(out, ev["id"], attempt)
        attempt_row.worker = ev.get("worker")
        attempt_row.started_at = at
    elif state not in (JobState.QUEUED, JobState.SCHEDULED) and not ev.get("skipped"):
        # (a job cancelled before it started never had an attempt)
        attempt_row = _attempt(out, ev["id"], attempt)
        attempt_row.finished_at = at
        attempt_row.outcome = "timeout" if ev.get("timeout") else state.value
        attempt_row.error_type = ev.get("etype")
        attempt_row.error_message = ev.get("emsg")
        attempt_row.traceback = ev.get("tb")
        if attempt_row.worker is None:
            attempt_row.worker = ev.get("worker")
    if not apply:
        return
    row.state, row.attempt = state, attempt
    if state is JobState.RUNNING:
        row.worker = ev.get("worker")
        row.started_at = at
    if state.terminal or state is JobState.RETRYING:
        row.finished_at = at if state.terminal else None
        row.error_type = ev.get("etype")
        row.error_message = ev.get("emsg")
        row.traceback = ev.get("tb")
        if state is JobState.RETRYING and ev.get("eta") is not None:
            row.eta = _ts(ev["eta"])
    if state is JobState.SUCCEEDED:
        row.result, row.has_result = ev.get("result"), True


def _attempt(out: Folded, job_id: str, attempt: int) -> AttemptRow:
    key = (job_id, attempt)
    row = out.attempts.get(key)
    if row is None:
        row = out.attempts[key] = AttemptRow(job_id=job_id, attempt=attempt)
    return row
