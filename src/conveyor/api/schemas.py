"""Request and response bodies of ``/api/v1`` (separate from the ledger's tables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.control import MAX_DELAY_SECONDS
from conveyor.core.progress import estimate


class JobSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=255, description="registered task name")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, max_length=255)
    # Strict: `true` is not a priority, "5" is not a countdown.
    priority: int | None = Field(
        default=None, ge=0, le=9, strict=True, description="0 (lowest) .. 9"
    )
    countdown: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        strict=True,
        allow_inf_nan=False,
        description="seconds from now, at most one year",
    )
    eta: datetime | None = Field(default=None, description="when to run, at most one year ahead")


class Progress(BaseModel):
    current: float
    total: float | None
    percent: float | None
    step: str | None
    message: str | None
    rate: float | None = Field(description="units of `current` per second")
    eta_seconds: float | None
    updated_at: datetime | None


class Attempt(BaseModel):
    attempt: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error_type: str | None
    error_message: str | None
    traceback: str | None


class JobPublic(BaseModel):
    id: str
    external_id: str | None = Field(
        default=None,
        description="the task id Celery was given, when it is not a UUID (the job is found by "
        "either)",
    )
    task: str
    state: str
    queue: str
    priority: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    worker: str | None
    parent_id: str | None
    root_id: str | None
    workflow_id: str | None = None
    retry_of: str | None
    schedule_id: str | None = Field(
        default=None, description="the schedule whose fire submitted this job"
    )
    idempotency_key: str | None
    eta: datetime | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    error_type: str | None
    error_message: str | None
    progress: Progress | None


class JobDetail(JobPublic):
    traceback: str | None
    raw_message: dict[str, Any] | None = Field(
        default=None,
        description="a message the worker refused, as it arrived: content type and encoding, "
        "headers, properties and the first 64 KiB of its body (base64 and as text)",
    )
    has_result: bool
    attempts: list[Attempt]
    children: list[dict[str, Any]]


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class JobResult(BaseModel):
    id: str
    state: str
    ready: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None


def progress_of(row: dict[str, Any]) -> Progress | None:
    if row.get("progress_current") is None:
        return None
    est = estimate(
        row["progress_current"],
        row.get("progress_total"),
        row.get("progress_first_current"),
        row.get("progress_first_at"),
        row.get("progress_at"),
    )
    eta = est.eta_seconds
    if eta is not None and row.get("progress_at") is not None and row["state"] == "running":
        # The ETA was true when progress was last reported; count down since then.
        eta = max(0.0, eta - (datetime.now(UTC) - row["progress_at"]).total_seconds())
    return Progress(
        current=row["progress_current"],
        total=row.get("progress_total"),
        percent=est.percent,
        step=row.get("progress_step"),
        message=row.get("progress_message"),
        rate=est.rate,
        eta_seconds=eta,
        updated_at=row.get("progress_at"),
    )


def job_public(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in JobPublic.model_fields if name in row}
    for key in ("id", "parent_id", "root_id", "workflow_id", "retry_of", "schedule_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    out["cancel_requested"] = row.get("cancel_requested_at") is not None
    out["progress"] = progress_of(row)
    return out
