"""The factory's Celery tasks: thin wrappers that decode ids and call the steps.

- ``factory.process_batch(batch_id)`` runs whatever steps the batch still needs, reporting
  progress (and so checking for a cancel) through :func:`conveyor.progress`. An anchoring
  failure is retried with exponential backoff and leaves the batch ``anchoring``; after the
  last attempt the job is ``dead`` and the stuck-batch schedule picks the batch up again.
- A per-batch PostgreSQL advisory lock, held on its own connection for the whole run, keeps
  two runs of one batch from overlapping (two Ethereum transactions for one root). The server
  releases it when the connection dies, so a killed worker never leaves the batch locked.
- Maintenance, on beat schedules the pack adds: resubmit stuck batches, refresh the planner's
  statistics, delete old failed batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from celery import Celery, Task
from sqlalchemy import Engine, create_engine, text

import conveyor
from conveyor.packs import psycopg_url, settings_of
from conveyor.packs.factory import submission
from conveyor.packs.factory.anchors import Anchor, build_anchor
from conveyor.packs.factory.batches import attach_job, fail_batch, get_batch
from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.errors import AnchorError
from conveyor.packs.factory.steps import run_batch
from conveyor.packs.factory.tokens import Keyring
from conveyor.packs.kit import EgressPolicy

log = logging.getLogger(__name__)

PROCESS_TASK = submission.PROCESS_TASK
RETRY_STUCK_TASK = "factory.retry_stuck_batches"
REFRESH_STATS_TASK = "factory.refresh_stats"
CLEANUP_TASK = "factory.cleanup_failed_batches"

# Anchoring is the step that talks to the outside (a node, a service): seven tries over about
# four minutes (2, 4, 8 … 120 s, with jitter). Only AnchorError is retried; any other failure
# marks the batch failed at its step, for an explicit retry.
ANCHOR_POLICY = conveyor.RetryPolicy(
    max_attempts=7, backoff=2, backoff_max=120, retry_on=(AnchorError,)
)
# How long a second run waits for the lock before it leaves the batch to the first.
LOCK_WAIT = "5s"


class BatchBusy(Exception):
    """Another run holds the batch's lock."""


@dataclass
class _Process:
    """What one worker process keeps between tasks (pools and clients must not cross a fork)."""

    pid: int
    engine: Engine
    factory: FactorySettings
    keyring: Keyring
    anchor: Anchor


_state: dict[str, _Process] = {}


def _process(app: Celery) -> _Process:
    settings = settings_of(app)
    state = _state.get("p")
    if state is None or state.pid != os.getpid():
        factory = FactorySettings()
        url = psycopg_url(settings).replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
        state = _Process(
            os.getpid(),
            engine,
            factory,
            Keyring.from_settings(factory, settings.env),
            build_anchor(factory, engine, EgressPolicy.from_settings(settings)),
        )
        _state["p"] = state
    return state


@contextmanager
def batch_lock(app: Celery, batch_id: UUID) -> Iterator[None]:
    """Hold the batch's advisory lock for the block; :class:`BatchBusy` if another run keeps
    it past :data:`LOCK_WAIT`."""
    url = psycopg_url(settings_of(app))
    with psycopg.connect(url, autocommit=True, application_name="conveyor-factory-lock") as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
        try:
            conn.execute(
                "SELECT pg_advisory_lock(hashtextextended('factory-batch:' || %s, 0))",
                (str(batch_id),),
            )
        except psycopg.errors.LockNotAvailable:
            raise BatchBusy(f"batch {batch_id} is being processed by another run") from None
        yield  # closing the connection releases the lock


def process_batch(self: Task, batch_id: str) -> dict[str, Any]:
    """Run the batch's remaining steps; its final state."""
    state = _process(self.app)
    uuid = UUID(batch_id)
    try:
        with batch_lock(self.app, uuid):
            # Only the run holding the lock names itself on the batch: a run that stands
            # aside must not make the batch look as if its live job had ended.
            if self.request.id:
                attach_job(state.engine, uuid, str(self.request.id))
            batch = run_batch(
                state.engine,
                uuid,
                state.keyring,
                state.anchor,
                workers=state.factory.workers,
                progress=conveyor.progress,
            )
    except BatchBusy as exc:
        # The other run finishes the batch; this job ends without touching it.
        return {"batch_id": batch_id, "skipped": str(exc)}
    except conveyor.JobCancelled:
        # Cancelled while anchoring: run_batch only marks earlier steps. Say so on the batch,
        # which stays `anchoring` (never completed) until someone retries it.
        if get_batch(state.engine, uuid).status == "anchoring":
            fail_batch(state.engine, uuid, "anchor", "cancelled; retry the batch to anchor it")
        raise
    return {
        "batch_id": batch_id,
        "status": batch.status,
        "product_count": batch.product_count,
        "merkle_root": batch.merkle_root.hex() if batch.merkle_root else None,
        "anchor": {"backend": batch.anchor_backend, "ref": batch.anchor_ref},
    }


def retry_stuck_batches(self: Task, idle_minutes: float | None = None) -> dict[str, Any]:
    """Resubmit unfinished batches whose job ended (or vanished) and that have been idle for
    ``idle_minutes`` (default ``CONVEYOR_FACTORY_STUCK_MINUTES``)."""
    state = _process(self.app)
    idle = (idle_minutes if idle_minutes is not None else state.factory.stuck_minutes) * 60

    def send(batch_id: UUID) -> str:
        return str(self.app.send_task(PROCESS_TASK, kwargs={"batch_id": str(batch_id)}).id)

    retried = []
    for batch_id in submission.stuck_batches(state.engine, idle):
        try:
            submission.retry(state.engine, batch_id, send)
        except conveyor.ConveyorError as exc:  # it moved on meanwhile
            log.info("stuck batch %s not retried: %s", batch_id, exc)
            continue
        retried.append(str(batch_id))
    return {"retried": retried}


def refresh_stats(self: Task) -> dict[str, Any]:
    """ANALYZE the factory's tables, so the planner knows about the millions of rows a few
    batches add between autovacuum's own runs."""
    state = _process(self.app)
    with state.engine.connect() as conn:
        conn.execute(text("ANALYZE factory_batches, factory_products, factory_chunks"))
        conn.commit()
    return {"analyzed": ["factory_batches", "factory_products", "factory_chunks"]}


def cleanup_failed_batches(self: Task, older_than_days: float | None = None) -> dict[str, Any]:
    """Delete batches failed more than ``older_than_days`` ago (default
    ``CONVEYOR_FACTORY_FAILED_RETENTION_DAYS``) with their products and chunks; the anchor log
    keeps its entries (it is append-only, and a failed batch never anchored)."""
    state = _process(self.app)
    days = older_than_days if older_than_days is not None else state.factory.failed_retention_days
    with state.engine.begin() as conn:
        ids = list(
            conn.execute(
                text(
                    "DELETE FROM factory_batches WHERE status = 'failed'"
                    " AND failed_at < now() - make_interval(secs => :secs) RETURNING id"
                ),
                {"secs": days * 86400},
            ).scalars()
        )
        if ids:
            # Products carry no foreign key (see tables.py); chunks go by cascade.
            conn.execute(
                text("DELETE FROM factory_products WHERE batch_id = ANY(:ids)"), {"ids": ids}
            )
    return {"deleted": [str(i) for i in ids]}


def register(app: Celery) -> None:
    """Register the factory's tasks on ``app`` and add its maintenance schedules."""
    app.task(name=PROCESS_TASK, bind=True, **ANCHOR_POLICY.task_options())(process_batch)
    app.task(name=RETRY_STUCK_TASK, bind=True, max_retries=0)(retry_stuck_batches)
    app.task(name=REFRESH_STATS_TASK, bind=True, max_retries=0)(refresh_stats)
    app.task(name=CLEANUP_TASK, bind=True, max_retries=0)(cleanup_failed_batches)
    factory = FactorySettings()
    schedule = dict(app.conf.beat_schedule or {})
    schedule.update(
        {
            "factory-retry-stuck": {
                "task": RETRY_STUCK_TASK,
                "schedule": factory.maintenance_interval_seconds,
            },
            "factory-refresh-stats": {"task": REFRESH_STATS_TASK, "schedule": 1800.0},
            "factory-cleanup-failed": {"task": CLEANUP_TASK, "schedule": 86400.0},
        }
    )
    app.conf.beat_schedule = schedule
