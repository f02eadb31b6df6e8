"""Reads and writes of the ledger that the API, CLI and services share.

Every function takes a SQLAlchemy ``Connection`` so the caller owns the transaction.
Rows come back as plain dicts (``RowMapping``) so callers never hold ORM state.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import UUID

from conveyor.core.states import ACTIVE_STATES, TERMINAL_STATES, JobState
from conveyor.errors import InvalidTransition, JobNotFound
from conveyor.ledger import stats
from conveyor.ledger.tables import attempts, blobs, jobs, outbox, workflow_nodes


@dataclass(frozen=True)
class NewJob:
    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int | None
    eta: datetime | None
    idempotency_key: str | None = None
    payload_hash: str | None = None
    retry_of: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    schedule_id: str | None = None
    workflow_id: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        """What the outbox relay needs to publish this job."""
        return {
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            **({"schedule_id": self.schedule_id} if self.schedule_id else {}),
        }


# Jobs and their outbox rows from one JSON parameter, in one statement (atomic on its own, so it
# needs no transaction around it): a batch of submissions costs one round trip and one commit
# however many it holds. Rows whose idempotency key exists are skipped (also when two rows of the
# batch share one: the first wins) and come back absent, as do rows whose id exists — the same
# batch written again after a connection broke under it.
_INSERT_JOBS = text("""
WITH new AS (
  SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
    n int, id uuid, task text, queue text, priority smallint, args jsonb, kwargs jsonb,
    eta timestamptz, idempotency_key text, payload_hash text, retry_of uuid, parent_id uuid,
    root_id uuid, schedule_id uuid, workflow_id uuid, message jsonb)
), ins AS (
  INSERT INTO conveyor_jobs (id, task, state, queue, priority, args, kwargs, eta,
    idempotency_key, payload_hash, retry_of, parent_id, root_id, schedule_id, workflow_id,
    queued_at)
  SELECT id, task, CASE WHEN eta IS NULL THEN 'queued' ELSE 'scheduled' END, queue, priority,
    args, kwargs, eta, idempotency_key, payload_hash, retry_of, parent_id, root_id, schedule_id,
    workflow_id,
    CASE WHEN eta IS NULL THEN now() END
  FROM new ORDER BY n
  ON CONFLICT DO NOTHING
  RETURNING *
), box AS (
  INSERT INTO conveyor_outbox (job_id, message, available_at)
  SELECT new.id, new.message, COALESCE(new.eta, now() + make_interval(secs => :grace))
  FROM new JOIN ins ON ins.id = new.id
)
SELECT * FROM ins
""")


def job_params(n: int, job: NewJob) -> dict[str, Any]:
    """A new job as one JSON record of a batch insert (``n``: its place in the batch)."""
    return {
        "n": n,
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "priority": job.priority,
        "args": job.args,
        "kwargs": job.kwargs,
        "eta": job.eta.isoformat() if job.eta is not None else None,
        "idempotency_key": job.idempotency_key,
        "payload_hash": job.payload_hash,
        "retry_of": job.retry_of,
        "parent_id": job.parent_id,
        "root_id": job.root_id or job.id,
        "schedule_id": job.schedule_id,
        "workflow_id": job.workflow_id,
        "message": job.message,
    }


def insert_jobs(
    conn: Connection, batch: list[NewJob], *, publish_grace: float = 5.0
) -> list[dict[str, Any] | None]:
    """Insert jobs and their outbox rows; each job's row, or None where its id or idempotency
    key already exists (the caller looks it up: :func:`jobs_by_idempotency_key`, :func:`get_jobs`).

    An outbox row becomes due at its job's eta, or ``publish_grace`` seconds from now for an
    immediate job: the submitter publishes it itself and deletes the row; the relay only steps
    in if that did not happen in time (broker down, or the submitter died after commit).
    """
    rows = [job_params(n, job) for n, job in enumerate(batch)]
    result = conn.execute(_INSERT_JOBS, {"rows": json.dumps(rows), "grace": publish_grace})
    inserted = {str(r["id"]): dict(r) for r in result.mappings()}
    return [inserted.get(job.id) for job in batch]


def insert_job(
    conn: Connection, job: NewJob, *, publish_grace: float = 5.0
) -> dict[str, Any] | None:
    """One job: :func:`insert_jobs` of a batch of one."""
    return insert_jobs(conn, [job], publish_grace=publish_grace)[0]


def jobs_by_idempotency_key(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(jobs).where(jobs.c.idempotency_key.in_(keys))).mappings()
    return {r["idempotency_key"]: dict(r) for r in rows}


def delete_outbox_of(conn: Connection, job_ids: list[str]) -> None:
    """Drop the outbox rows of jobs that were published. (Not worth waiting for a WAL flush: a
    row that a crash brings back only publishes its job once more, which delivery absorbs.)"""
    conn.execute(delete(outbox).where(outbox.c.job_id.in_(job_ids)))


def job_by_idempotency_key(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(select(jobs).where(jobs.c.idempotency_key == key)).mappings().first()
    return dict(row) if row else None


def get_job(conn: Connection, job_id: str) -> dict[str, Any]:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise JobNotFound(job_id)
    return dict(row)


_SUMMARY_COLUMNS = [
    c for c in jobs.c if c.name not in ("args", "kwargs", "result", "traceback", "raw_message")
]


def get_jobs(conn: Connection, job_ids: list[str], *, full: bool = False) -> list[dict[str, Any]]:
    """Several jobs in one indexed lookup, without their payloads unless ``full``; unknown ids
    are left out."""
    if not job_ids:
        return []
    columns = list(jobs.c) if full else _SUMMARY_COLUMNS
    rows = conn.execute(select(*columns).where(jobs.c.id.in_(job_ids))).mappings()
    return [dict(r) for r in rows]


def get_attempts(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.attempt)
    ).mappings()
    return [dict(r) for r in rows]


def get_children(conn: Connection, job_id: str, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            jobs.c.id, jobs.c.task, jobs.c.queue, jobs.c.state, jobs.c.parent_id, jobs.c.created_at
        )
        .where(jobs.c.parent_id == job_id)
        .order_by(jobs.c.created_at)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def get_blob(conn: Connection, ref: str) -> bytes | None:
    return conn.execute(select(blobs.c.data).where(blobs.c.id == ref)).scalar()


@dataclass(frozen=True)
class JobFilter:
    states: tuple[str, ...] = ()
    task: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    text: str | None = None
    root_id: str | None = None
    schedule_id: str | None = None
    workflow_id: str | None = None
    error_type: str | None = None
    replayed: bool | None = None  # has a later job with retry_of = this one
    # A limited API key's allowlists: only jobs of these tasks / on these queues (None: any).
    tasks_in: tuple[str, ...] | None = None
    queues_in: tuple[str, ...] | None = None


def dead_letters(flt: JobFilter | None = None) -> JobFilter:
    """The dead-letter set, narrowed by ``flt``'s other fields: jobs that are dead and not yet
    replayed. The one definition the list, the counts, replay-all and purge all use (API, CLI,
    dashboard): a replayed original is history its replay links to (``retry_of``), not a
    dead letter, so it is neither listed, counted nor purged."""
    return replace(flt or JobFilter(), states=(JobState.DEAD.value,), replayed=False)


def encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; ValueError with a readable message on garbage."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), str(uuid.UUID(job_id))
    except Exception as exc:
        raise ValueError("cursor is not one this API returned") from exc


def filter_conditions(flt: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a filter; ValueError on values PostgreSQL cannot take."""
    for name in ("task", "queue", "text", "error_type"):
        value = getattr(flt, name)
        if value is not None and "\x00" in value:
            raise ValueError(f"{name} filter contains a NUL character")
    conds: list[ColumnElement[bool]] = []
    if flt.states:
        conds.append(jobs.c.state.in_(flt.states))
    if flt.task:
        conds.append(jobs.c.task == flt.task)
    if flt.queue:
        conds.append(jobs.c.queue == flt.queue)
    if flt.error_type:
        conds.append(jobs.c.error_type == flt.error_type)
    if flt.tasks_in is not None:
        conds.append(jobs.c.task.in_(flt.tasks_in))
    if flt.queues_in is not None:
        conds.append(jobs.c.queue.in_(flt.queues_in))
    if flt.created_after:
        conds.append(jobs.c.created_at >= flt.created_after)
    if flt.created_before:
        conds.append(jobs.c.created_at < flt.created_before)
    if flt.root_id:
        conds.append(jobs.c.root_id == flt.root_id)
    if flt.schedule_id:
        conds.append(jobs.c.schedule_id == flt.schedule_id)
    if flt.workflow_id:
        conds.append(jobs.c.workflow_id == flt.workflow_id)
    if flt.text:
        pattern = "%" + flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(
            or_(
                cast(jobs.c.args, Text).ilike(pattern),
                cast(jobs.c.kwargs, Text).ilike(pattern),
                jobs.c.error_message.ilike(pattern),
            )
        )
    if flt.replayed is not None:
        later = jobs.alias("later")
        replayed = select(later.c.id).where(later.c.retry_of == jobs.c.id).exists()
        conds.append(replayed if flt.replayed else ~replayed)
    return conds


def list_jobs(
    conn: Connection, flt: JobFilter, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id); ValueError on unusable filters."""
    columns = [c for c in jobs.c if c.name not in ("traceback", "result", "raw_message")]
    conds = filter_conditions(flt)
    if cursor:
        created, job_id = decode_cursor(cursor)
        conds.append(
            tuple_(jobs.c.created_at, jobs.c.id)
            < tuple_(literal(created), literal(job_id, UUID(as_uuid=False)))
        )
    q = select(*columns)
    if conds:
        q = q.where(and_(*conds))
    q = q.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def matching_ids(conn: Connection, flt: JobFilter, limit: int) -> list[str]:
    """Ids of the jobs a filter selects, oldest first (for bulk actions)."""
    conds = filter_conditions(flt)
    q = select(jobs.c.id).where(and_(*conds)) if conds else select(jobs.c.id)
    rows = conn.execute(q.order_by(jobs.c.created_at, jobs.c.id).limit(limit)).all()
    return [str(r[0]) for r in rows]


def count_matching(conn: Connection, flt: JobFilter, limit: int) -> int:
    """How many jobs a filter selects, counting no further than ``limit``."""
    conds = filter_conditions(flt)
    inner = select(literal(1)).select_from(jobs).where(*conds).limit(limit)
    return int(conn.execute(select(func.count()).select_from(inner.subquery())).scalar_one())


def delete_jobs(conn: Connection, job_ids: list[str]) -> int:
    """Remove jobs (and, by cascade, their attempts and outbox rows) from the ledger."""
    if not job_ids:
        return 0
    result = conn.execute(delete(jobs).where(jobs.c.id.in_(job_ids)))
    conn.execute(delete(blobs).where(blobs.c.id.in_([f"blob:{i}" for i in job_ids])))
    return int(result.rowcount or 0)


def delete_dead_letters(conn: Connection, job_ids: list[str]) -> int:
    """Delete those of ``job_ids`` that are dead letters (dead, not replayed); how many went.
    Checked in the statement itself, so a job replayed meanwhile is kept."""
    if not job_ids:
        return 0
    later = jobs.alias("later")
    replayed = select(later.c.id).where(later.c.retry_of == jobs.c.id).exists()
    doomed = select(jobs.c.id).where(
        jobs.c.id.in_(job_ids), jobs.c.state == JobState.DEAD.value, ~replayed
    )
    ids = [str(r[0]) for r in conn.execute(doomed.with_for_update(of=jobs)).all()]
    return delete_jobs(conn, ids)


def state_counts(conn: Connection) -> dict[str, int]:
    """Jobs per state, from the counts the ledger's triggers keep (no scan of the jobs)."""
    return stats.counts_by_state(conn)


WAITING_STATES = ("queued", "scheduled", "retrying")


def active_counts_by_queue(conn: Connection) -> dict[tuple[str, str], int]:
    """(queue, state) -> jobs, for the states of jobs not yet finished (an index range each)."""
    active = [s.value for s in ACTIVE_STATES]
    rows = conn.execute(
        select(jobs.c.queue, jobs.c.state, func.count())
        .where(jobs.c.state.in_(active))
        .group_by(jobs.c.queue, jobs.c.state)
    ).all()
    return {(queue, state): n for queue, state, n in rows}


def cancel_waiting(conn: Connection, *where: ColumnElement[bool]) -> list[str]:
    """Cancel the waiting jobs (queued, scheduled, retrying) that ``where`` selects and drop
    their outbox rows; their ids. Running and finished jobs are left alone."""
    rows = conn.execute(
        update(jobs)
        .where(*where, jobs.c.state.in_(WAITING_STATES))
        .values(
            state=JobState.CANCELLED.value,
            cancel_requested_at=func.now(),
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(jobs.c.id)
    ).all()
    ids = [str(r[0]) for r in rows]
    if ids:
        conn.execute(delete(outbox).where(outbox.c.job_id.in_(ids)))
    return ids


def oldest_queued(conn: Connection) -> dict[str, datetime]:
    """Per queue, when its oldest still-waiting job was queued."""
    rows = conn.execute(
        select(jobs.c.queue, func.min(jobs.c.queued_at))
        .where(jobs.c.state == JobState.QUEUED.value)
        .group_by(jobs.c.queue)
    ).all()
    return {queue: at for queue, at in rows if at is not None}


def request_cancel(conn: Connection, job_id: str) -> dict[str, Any]:
    """Mark a job cancelled (waiting) or cancel-requested (running); idempotent on terminal."""
    row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id).with_for_update()).first()
    if row is None:
        raise JobNotFound(job_id)
    state = JobState(row.state)
    if state.terminal:
        if state is JobState.CANCELLED:
            return get_job(conn, job_id)
        raise InvalidTransition(f"job {job_id} already ended as {state.value}; nothing to cancel")
    waiting = state in (JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)
    values: dict[str, Any] = {"cancel_requested_at": func.now(), "updated_at": func.now()}
    if waiting:
        values.update(state=JobState.CANCELLED.value, finished_at=func.now())
        conn.execute(delete(outbox).where(outbox.c.job_id == job_id))
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
    return get_job(conn, job_id)


def cancel_waiting_in_queue(conn: Connection, queue: str) -> list[str]:
    """Cancel every job waiting in ``queue`` (a purge); their ids."""
    return cancel_waiting(conn, jobs.c.queue == queue)


def request_cancel_many(conn: Connection, job_ids: list[str]) -> tuple[int, int]:
    """Cancel the waiting jobs among ``job_ids`` and ask the running ones to stop; (cancelled,
    asked). Finished jobs are left as they are."""
    if not job_ids:
        return 0, 0
    waiting = cancel_waiting(conn, jobs.c.id.in_(job_ids))
    running = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.state == JobState.RUNNING.value)
        .values(
            cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, func.now()),
            updated_at=func.now(),
        )
        .returning(jobs.c.id)
    ).all()
    return len(waiting), len(running)


def due_outbox(conn: Connection, *, limit: int) -> list[dict[str, Any]]:
    """Lock the outbox rows whose time has come, oldest first, skipping rows another relay
    holds."""
    rows = conn.execute(
        select(outbox)
        .where(outbox.c.available_at <= func.now())
        .order_by(outbox.c.available_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).mappings()
    return [dict(r) for r in rows]


def outbox_failed(conn: Connection, row: dict[str, Any], error: str, *, max_attempts: int) -> None:
    """A row that failed to publish for a reason of its own: try again later with backoff,
    and after ``max_attempts`` end its job dead with the error."""
    attempts_so_far = int(row["attempts"]) + 1
    if attempts_so_far >= max_attempts:
        conn.execute(delete(outbox).where(outbox.c.id == row["id"]))
        mark_dead(
            conn,
            str(row["job_id"]),
            "PublishFailed",
            f"could not be published after {attempts_so_far} tries: {error}",
        )
        return
    conn.execute(
        update(outbox)
        .where(outbox.c.id == row["id"])
        .values(
            attempts=attempts_so_far,
            last_error=error[:2000],
            available_at=func.now() + timedelta(seconds=min(300, 2**attempts_so_far)),
        )
    )


def mark_published(conn: Connection, outbox_ids: list[int], job_ids: list[str]) -> None:
    conn.execute(delete(outbox).where(outbox.c.id.in_(outbox_ids)))
    conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.state == JobState.SCHEDULED.value)
        .values(state=JobState.QUEUED.value, queued_at=func.now(), updated_at=func.now())
    )


def run_now(conn: Connection, job_ids: list[str]) -> list[str]:
    """Make scheduled jobs due now: the outbox relay publishes them at its next poll. The ids
    of those that were scheduled; others (already queued, running, finished) are left alone."""
    if not job_ids:
        return []
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.state == JobState.SCHEDULED.value)
        .values(eta=func.now(), updated_at=func.now())
        .returning(jobs.c.id)
    ).all()
    due = [str(r[0]) for r in rows]
    if due:
        conn.execute(update(outbox).where(outbox.c.job_id.in_(due)).values(available_at=func.now()))
    return due


def requeue(conn: Connection, job_id: str, *, publish: bool = True) -> bool:
    """Put a running job whose worker is gone back in line: state `queued` and an outbox row
    the relay publishes now (``publish=False``: none, the broker already gave the message back).
    False if the job is no longer running."""
    row = (
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value)
            .values(state=JobState.QUEUED.value, queued_at=func.now(), updated_at=func.now())
            .returning(*_MESSAGE)
        )
        .mappings()
        .first()
    )
    if row is None:
        return False
    if publish:
        conn.execute(insert(outbox).values(job_id=job_id, message=_resend(conn, job_id, row)))
    return True


def mark_dead(conn: Connection, job_id: str, error_type: str, message: str) -> bool:
    """End an active job as `dead` with a reason; False if it had already ended."""
    done = _end(conn, job_id, ACTIVE_STATES, JobState.DEAD, error_type, message)
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.outcome.is_(None))
        .values(outcome="lost", finished_at=func.now())
    )
    return done


def _end(
    conn: Connection,
    job_id: str,
    from_states: Iterable[JobState],
    state: JobState,
    error_type: str,
    message: str,
) -> bool:
    """Move a job in one of ``from_states`` to the end ``state``, with a reason; False if it
    was in none of them."""
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_([s.value for s in from_states]))
        .values(
            state=state.value,
            finished_at=func.now(),
            updated_at=func.now(),
            error_type=error_type,
            error_message=message,
        )
        .returning(jobs.c.id)
    ).first()
    return done is not None


def delete_outbox(conn: Connection, job_id: str) -> None:
    conn.execute(delete(outbox).where(outbox.c.job_id == job_id))


__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "JobFilter",
    "NewJob",
    "get_attempts",
    "get_blob",
    "get_children",
    "get_job",
    "insert_job",
    "job_by_idempotency_key",
    "list_jobs",
    "request_cancel",
    "state_counts",
]


def running_jobs(conn: Connection, limit: int = 10_000) -> list[dict[str, Any]]:
    """Jobs the ledger believes are running (bounded by the fleet's total concurrency)."""
    rows = conn.execute(
        select(
            jobs.c.id,
            jobs.c.external_id,
            jobs.c.worker,
            jobs.c.attempt,
            jobs.c.max_attempts,
            jobs.c.started_at,
            jobs.c.cancel_requested_at,
        )
        .where(jobs.c.state == JobState.RUNNING.value)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class StaleJob:
    id: str
    queue: str
    queued_at: datetime
    expires_at: datetime | None


def stale_queued(
    conn: Connection, *, older_than: float, queues: list[str], limit: int = 500
) -> list[StaleJob]:
    """Jobs queued longer than ``older_than`` seconds in one of ``queues`` (which the broker
    reports empty) with nothing left in the outbox to publish them."""
    if not queues:
        return []
    rows = conn.execute(
        select(jobs.c.id, jobs.c.queue, jobs.c.queued_at, jobs.c.expires_at)
        .where(
            jobs.c.state == JobState.QUEUED.value,
            jobs.c.queue.in_(queues),
            jobs.c.queued_at < func.now() - timedelta(seconds=older_than),
            ~select(outbox.c.id).where(outbox.c.job_id == jobs.c.id).exists(),
        )
        .limit(limit)
    ).all()
    return [StaleJob(str(r[0]), r[1], r[2], r[3]) for r in rows]


def end_unsent(conn: Connection, job_id: str, error_type: str, message: str) -> bool:
    """End a job still waiting for a worker as `cancelled`, with why it will never run
    (its message expired or was purged); False if it is no longer waiting."""
    waiting = (JobState.QUEUED, JobState.SCHEDULED)
    return _end(conn, job_id, waiting, JobState.CANCELLED, error_type, message)


def republish(conn: Connection, job_id: str) -> None:
    """Queue another outbox row for a job that is waiting but whose message went missing."""
    row = conn.execute(select(*_MESSAGE).where(jobs.c.id == job_id)).mappings().first()
    if row is not None:
        conn.execute(insert(outbox).values(job_id=job_id, message=_resend(conn, job_id, row)))


_MESSAGE = (
    jobs.c.task,
    jobs.c.args,
    jobs.c.kwargs,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.expires_at,
)


def _resend(conn: Connection, job_id: str, row: Any) -> dict[str, Any]:
    """An outbox message for a job already sent once: marked so that a worker drops it if the
    first message turns up after all and the job already ran, with its ``expires`` kept, and
    with what it carried for its canvas (a chain's next steps, a chord's callback)."""
    message = dict(row)
    expires = message.pop("expires_at", None)
    if expires is not None:
        message["expires"] = expires.isoformat()
    canvas = conn.execute(
        select(workflow_nodes.c.message)
        .where(workflow_nodes.c.job_id == job_id, workflow_nodes.c.message.is_not(None))
        .limit(1)
    ).scalar()
    if canvas:
        message["canvas"] = canvas
    return {**message, "resend": True}


def prune_finished(
    conn: Connection, states: tuple[str, ...], finished_before: datetime, limit: int
) -> int:
    """Delete up to ``limit`` jobs in ``states`` that finished before ``finished_before``
    (their attempts, outbox rows and stored results with them); how many went. The
    ``created_at`` bound is implied (a job finishes after it is created) and lets the
    (state, created_at) index find them."""
    oldest = (
        select(jobs.c.id)
        .where(
            jobs.c.state.in_(states),
            jobs.c.created_at < finished_before,
            jobs.c.finished_at < finished_before,
        )
        .limit(limit)
    )
    rows = conn.execute(delete(jobs).where(jobs.c.id.in_(oldest)).returning(jobs.c.id)).all()
    if rows:
        conn.execute(delete(blobs).where(blobs.c.id.in_([f"blob:{r[0]}" for r in rows])))
    return len(rows)


def never_started_cancelled(conn: Connection, days: int = 7, limit: int = 50_000) -> list[str]:
    """Cancelled jobs that never ran: their Redis cancel flags must exist."""
    rows = conn.execute(
        select(jobs.c.id)
        .where(
            jobs.c.state == JobState.CANCELLED.value,
            jobs.c.attempt == 0,
            jobs.c.finished_at > func.now() - timedelta(days=days),
        )
        .limit(limit)
    ).all()
    return [str(r[0]) for r in rows]
