"""Starting a batch's job: the first time, on a retry, and for a batch left stuck.

Shared by the API, the dashboard, the CLI and the maintenance task, so a batch is checked the
same way everywhere and nothing is enqueued for a request that cannot run.

A batch may be run again when it is ``failed`` or unfinished and no live job is working on it
(its job ended — ``dead`` after its anchoring retries, ``cancelled`` — or never reached the
ledger). A retry locks the batch's row while it checks and submits, so two retries at once
start one job; the per-batch lock in ``tasks.py`` covers any other overlap. Running it again
resumes at the step that failed: written chunks are skipped, a stored root is reused, the
anchors are idempotent per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Connection, Engine, func, select, text, update

from conveyor.errors import InvalidTransition
from conveyor.packs.factory.batches import (
    Batch,
    BatchSpec,
    attach_job,
    create_batch,
    get_batch,
)
from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.tables import batches

if TYPE_CHECKING:  # the worker imports this module and needs none of the API's machinery
    from conveyor.packs.kit import Services

PROCESS_TASK = "factory.process_batch"
UNFINISHED = ("pending", "processing", "anchoring")

# The state of a batch's job in the ledger.
_JOB_STATE = text("SELECT state, created_at FROM conveyor_jobs WHERE id = CAST(:job_id AS uuid)")
LIVE_STATES = ("scheduled", "queued", "running", "retrying")
# A job sent from a worker (the stuck-batch task) reaches the ledger through the recorder a
# moment after the batch names it: until then it counts as live.
RECORDING_GRACE_SECONDS = 60.0
_STUCK = text(
    "SELECT b.id FROM factory_batches b"
    " LEFT JOIN conveyor_jobs j ON j.id = CAST(b.job_id AS uuid)"
    " WHERE b.status IN ('pending', 'processing', 'anchoring')"
    "   AND b.updated_at < now() - make_interval(secs => :idle)"
    # A cancelled job is someone's decision: its batch waits for an explicit retry.
    "   AND (j.id IS NULL OR j.state IN ('succeeded', 'failed', 'dead'))"
    " ORDER BY b.updated_at LIMIT :limit"
)


@dataclass(frozen=True)
class Submitted:
    """A batch and the job now running it."""

    batch_id: UUID
    job_id: str


def has_live_job(conn: Connection, batch: Batch) -> bool:
    """Whether a job the ledger counts as waiting or running is on ``batch`` (or one it has
    not heard of yet, named by the batch moments ago)."""
    if batch.job_id is None:
        return False
    job = conn.execute(_JOB_STATE, {"job_id": batch.job_id}).first()
    if job is None:
        age = (datetime.now(UTC) - batch.updated_at).total_seconds()
        return age < RECORDING_GRACE_SECONDS
    if batch.status == "failed" and batch.failed_at and job.created_at <= batch.failed_at:
        # The job that failed the batch: over, even while the ledger still says `running`
        # (the batch row is marked just before the task raises, the ledger a moment later).
        return False
    return bool(job.state in LIVE_STATES)


def retryable(conn: Connection, batch: Batch) -> bool:
    """Whether ``batch`` may be run again now: failed or unfinished, with no live job (a
    retry that just started one makes the next retry wait for it)."""
    if batch.status not in ("failed", *UNFINISHED):
        return False
    return not has_live_job(conn, batch)


Send = Callable[[UUID], str]
"""Submits the batch's job; its id."""


def control_sender(services: Services) -> Send:
    """Submit through Conveyor's control plane: the job row is committed before the publish."""

    def send(batch_id: UUID) -> str:
        job, _ = services.control.submit(PROCESS_TASK, kwargs={"batch_id": str(batch_id)})
        return str(job["id"])

    return send


def start(services: Services, spec: BatchSpec, settings: FactorySettings) -> Submitted:
    """Record a new batch and submit its job."""
    batch_id = create_batch(services.engine, spec, settings)
    job_id = control_sender(services)(batch_id)
    attach_job(services.engine, batch_id, job_id)
    return Submitted(batch_id, job_id)


def retry(engine: Engine, batch_id: UUID, send: Send) -> Submitted:
    """Run ``batch_id`` again from the step it stopped at; :class:`InvalidTransition` (409)
    when it is completed or a live job is already on it."""
    with engine.begin() as conn:
        # The row lock makes concurrent retries take turns: the second sees the first's job.
        conn.execute(select(batches.c.id).where(batches.c.id == batch_id).with_for_update())
        batch = get_batch(conn, batch_id)
        if not retryable(conn, batch):
            why = "completed" if batch.status == "completed" else f"{batch.status}, job live"
            raise InvalidTransition(
                f"batch {batch_id} is {why}: only a failed batch, or one whose job ended"
                " before it finished, can be retried"
            )
        job_id = send(batch_id)
        conn.execute(
            update(batches)
            .where(batches.c.id == batch_id)
            .values(job_id=job_id, updated_at=func.now())
        )
    return Submitted(batch_id, job_id)


def stuck_batches(engine: Engine, idle_seconds: float, limit: int = 100) -> list[UUID]:
    """Unfinished batches untouched for ``idle_seconds`` whose job is no longer live."""
    with engine.connect() as conn:
        rows = conn.execute(_STUCK, {"idle": idle_seconds, "limit": limit}).scalars()
        return [UUID(str(r)) for r in rows]


def job_links(batch_id: UUID, job_id: str | None) -> dict[str, Any]:
    """Where a client follows a batch: itself, its job, the job's live events."""
    job = f"/api/v1/jobs/{job_id}" if job_id else None
    return {
        "self": f"/api/v1/factory/batches/{batch_id}",
        "job": job,
        "events": f"{job}/events" if job else None,
        "products": f"/api/v1/factory/batches/{batch_id}/products",
        "csv": f"/api/v1/factory/batches/{batch_id}/products.csv",
    }
