"""Control-plane operations shared by the REST API and the CLI: submit, cancel, retry.

Submitting writes the job row and its outbox row in one transaction, then publishes after
commit; if publishing fails the job stays accepted and the outbox relay publishes it later.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack

import redis
from celery import Celery
from sqlalchemy import Engine

from conveyor.core.ids import new_job_id
from conveyor.core.schema import TaskSignature
from conveyor.core.states import JobState
from conveyor.errors import (
    InvalidArguments,
    InvalidSubmission,
    InvalidTransition,
    PayloadTooLarge,
    QueueNotFound,
    SubmitError,
    UnknownTask,
)
from conveyor.intake import Intake
from conveyor.ledger import repository as repo
from conveyor.ledger.events import (
    CANCEL_KEY,
    CANCEL_TTL,
    METRICS_JOBS,
    PAUSED_QUEUES,
    RESEND,
    SCHEDULE_HEADER,
    count_field,
    paused_queues,
)
from conveyor.runtime.context import publishing_recorded_job, runtime_of

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255
MAX_DELAY_SECONDS = 365 * 24 * 3600  # the furthest ahead a job may be scheduled (countdown or eta)
# An escaped NUL in JSON text: `\u0000` after an even number of backslashes. PostgreSQL's jsonb
# refuses it, so a submission holding one is refused up front.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _ledger_json(task: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """The arguments as the ledger stores them (UTF-8 JSON), or InvalidArguments naming what
    PostgreSQL's jsonb would refuse: NaN and infinities (not JSON), lone surrogates (not
    Unicode) and NUL characters."""

    def refuse(msg: str) -> InvalidArguments:
        return InvalidArguments(task, [{"loc": ("args",), "msg": msg}])

    try:
        text = json.dumps([args, kwargs], allow_nan=False, ensure_ascii=False)
    except ValueError:
        raise refuse(
            "a number is NaN or infinite (or too large, like 1e999); JSON has no such value"
        ) from None
    except TypeError as exc:
        raise refuse(f"a value is not JSON: {exc}") from None
    if _NUL.search(text):
        raise refuse("a string holds a NUL character (\\u0000); the ledger cannot store it")
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise refuse(
            "a string holds a lone surrogate (half of a UTF-16 pair, like \\ud800); it is not text"
        ) from None


def task_signature(app: Celery, name: str) -> TaskSignature:
    task = app.tasks.get(name)
    if task is None or name.startswith("celery."):
        raise UnknownTask(name)
    cached = getattr(task, "_conveyor_signature", None)
    if cached is None:
        # For bind=True tasks `task.run` is a bound method, so `self` is already left out.
        cached = TaskSignature(name, task.run)
        task._conveyor_signature = cached
    return cached


def task_queue(app: Celery, name: str) -> str:
    """The queue a task goes to unless a submission says otherwise."""
    route = app.amqp.router.route({}, name, (), {}) if app.amqp.router else {}
    queue = route.get("queue")
    return getattr(queue, "name", None) or queue or app.conf.task_default_queue or "default"


def payload_hash(
    task: str, args: list[Any], kwargs: dict[str, Any], queue: str | None, priority: int | None
) -> str:
    body = json.dumps([task, args, kwargs, queue, priority], sort_keys=True, default=repr)
    return hashlib.sha256(body.encode()).hexdigest()


class SubmitOptions(TypedDict, total=False):
    queue: str | None
    priority: int | None
    countdown: float | None
    eta: datetime | None
    idempotency_key: str | None
    retry_of: str | None
    schedule_id: str | None


@dataclass
class BulkReplay:
    job_ids: list[str] = field(default_factory=list)  # the new jobs
    refused: list[dict[str, str]] = field(default_factory=list)  # dead ids that could not be


class Control:
    def __init__(self, app: Celery, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.settings = runtime_of(app).settings
        self.intake = Intake(
            app,
            engine,
            publish=publish,
            publish_grace=self.settings.outbox_publish_grace,
            on_created=self._count_submitted,
        )

    def close(self) -> None:
        """Commit and publish what was submitted, then stop the intake's threads."""
        self.intake.close()

    def _count_submitted(self, jobs: list[repo.NewJob]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.hincrby(METRICS_JOBS, count_field("submitted", job.task, job.queue), 1)
        pipe.execute()

    @property
    def redis(self) -> redis.Redis:
        return runtime_of(self.app).redis

    # --- submit --------------------------------------------------------------------------
    def submit(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        publish_wait: float = 2.0,
        **options: Unpack[SubmitOptions],
    ) -> tuple[dict[str, Any], bool]:
        """Validate, record and publish a job (see :meth:`prepare` for the options).
        Returns (job, created).

        Returns once the job is committed and its publish was attempted (at most
        ``publish_wait`` seconds after the commit): a short-lived caller such as the CLI may
        exit then without leaving its job to the outbox relay's grace period.
        """
        item = self.intake.submit(self.prepare(task, args, kwargs, **options))
        outcome = item.committed.result()
        item.handed_on.wait(publish_wait)
        return outcome

    def prepare(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
        retry_of: str | None = None,
        schedule_id: str | None = None,
        injected: int = 0,
    ) -> repo.NewJob:
        """Check a submission against the task's signature and limits: the job to record, or
        a SubmitError that says what is wrong (nothing recorded, nothing published).
        ``injected``: leading arguments only known at run time (``TaskSignature.validate``)."""
        args = list(args or [])
        kwargs = dict(kwargs or {})
        task_signature(self.app, task).validate(args, kwargs, injected=injected)

        def refuse(field: str, msg: str) -> InvalidSubmission:
            return InvalidSubmission(field, msg)

        if queue is not None and queue not in self.known_queues():
            known = ", ".join(sorted(self.known_queues()))
            raise refuse("queue", f"unknown queue {queue!r}; known queues: {known}")
        if priority is not None and not 0 <= priority <= 9:
            raise refuse("priority", "must be 0..9")
        if countdown is not None and eta is not None:
            raise refuse("countdown", "give countdown or eta, not both")
        now = datetime.now(UTC)
        if countdown is not None:
            if not 0 <= countdown <= MAX_DELAY_SECONDS:  # (NaN fails both)
                raise refuse("countdown", f"must be 0..{MAX_DELAY_SECONDS} seconds (one year)")
            eta = now + timedelta(seconds=countdown)
        if eta is not None and eta.tzinfo is None:
            eta = eta.replace(tzinfo=UTC)
        if eta is not None and eta > now + timedelta(seconds=MAX_DELAY_SECONDS):
            raise refuse("eta", "must be at most one year from now")
        if eta is not None and eta <= now:
            eta = None
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise refuse("Idempotency-Key", f"must be 1..{MAX_IDEMPOTENCY_KEY} characters")
        encoded = _ledger_json(task, args, kwargs)
        if len(encoded) > self.settings.payload_max_bytes:
            raise PayloadTooLarge(
                f"arguments are {len(encoded)} bytes encoded; the limit is "
                f"{self.settings.payload_max_bytes} (CONVEYOR_PAYLOAD_MAX_BYTES)"
            )
        return repo.NewJob(
            id=new_job_id(),
            task=task,
            args=args,
            kwargs=kwargs,
            queue=queue or task_queue(self.app, task),
            priority=priority,
            eta=eta,
            idempotency_key=idempotency_key,
            payload_hash=(
                payload_hash(task, args, kwargs, queue, priority) if idempotency_key else None
            ),
            retry_of=retry_of,
            schedule_id=schedule_id,
        )

    # --- cancel / retry -------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: waiting jobs never run; a running one stops at its next check."""
        with self.engine.begin() as conn:
            repo.get_job(conn, job_id)  # 404 before touching Redis
        # The flag goes first: a worker that picks the job up from here on skips it.
        self.redis.set(CANCEL_KEY + job_id, "1", ex=CANCEL_TTL)
        with self.engine.begin() as conn:
            return repo.request_cancel(conn, job_id)

    def cancel_many(self, job_ids: list[str]) -> tuple[int, int]:
        """Cancel several jobs at once: (waiting jobs cancelled, running jobs asked to stop)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:  # the flags first, as for one job
            pipe.set(CANCEL_KEY + job_id, "1", ex=CANCEL_TTL)
        pipe.execute()
        with self.engine.begin() as conn:
            return repo.request_cancel_many(conn, job_ids)

    def purge_queue(self, queue: str) -> int:
        """Cancel every job waiting in ``queue`` and empty the queue in the broker; how many
        jobs were cancelled.

        The ledger goes first, so neither the reconciler nor the outbox relay republishes a
        purged job; then the cancel flags, so a message the purge misses (unacknowledged, in
        flight) is skipped by the worker that gets it; then the broker's queue.
        """
        with self.engine.begin() as conn:
            ids = repo.cancel_waiting_in_queue(conn, queue)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.set(CANCEL_KEY + job_id, "1", ex=CANCEL_TTL)
        pipe.execute()
        # (a RabbitMQ queue that was never declared has nothing to purge)
        with (
            self.app.connection_for_write() as conn,
            contextlib.suppress(*conn.channel_errors),
        ):
            conn.default_channel.queue_purge(queue)
        return len(ids)

    def run_now(self, job_id: str) -> dict[str, Any]:
        """Run a scheduled job now instead of at its time (the relay publishes it)."""
        with self.engine.begin() as conn:
            row = repo.get_job(conn, job_id)
            if row["state"] != JobState.SCHEDULED.value:
                raise InvalidTransition(
                    f"job {job_id} is {row['state']}; only scheduled jobs can be run now"
                )
            repo.run_now(conn, [job_id])
            return repo.get_job(conn, job_id)

    def run_now_many(self, job_ids: list[str]) -> int:
        """Make the scheduled ones among ``job_ids`` due now; how many were."""
        with self.engine.begin() as conn:
            return len(repo.run_now(conn, job_ids))

    # --- pause / resume ----------------------------------------------------------------------
    def known_queues(self) -> list[str]:
        """Every queue Conveyor offers (see ``Runtime.queues``) or the app declares, in that
        order."""
        offered = runtime_of(self.app).queues
        return list(dict.fromkeys([*offered, *self.app.amqp.queues.keys()]))

    def paused_queues(self) -> set[str]:
        """Queues whose consumers the workers cancel until they are resumed."""
        return paused_queues(self.redis)

    def pause_queue(self, queue: str) -> bool:
        """Stop every worker taking jobs from ``queue`` (within one heartbeat interval, and
        for workers started later too); jobs keep arriving and wait. False if already paused."""
        self._require_queue(queue)
        return bool(self.redis.sadd(PAUSED_QUEUES, queue))

    def resume_queue(self, queue: str) -> bool:
        """Let workers take jobs from ``queue`` again; False if it was not paused."""
        self._require_queue(queue)
        return bool(self.redis.srem(PAUSED_QUEUES, queue))

    def _require_queue(self, queue: str) -> None:
        known = self.known_queues()
        if queue not in known:
            raise QueueNotFound(queue, known)

    def retry(self, job_id: str) -> dict[str, Any]:
        """A new job with the same task and arguments, linked to the original."""
        with self.engine.begin() as conn:
            old = repo.get_job(conn, job_id)
        if not JobState(old["state"]).terminal:
            raise InvalidTransition(
                f"job {job_id} is {old['state']}; only finished jobs can be retried"
            )
        return self._resubmit(old, old["args"], old["kwargs"])

    def replay(
        self,
        job_id: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replay a dead job as a new linked job, optionally with edited arguments (validated
        against the task's signature like any submission)."""
        with self.engine.begin() as conn:
            old = repo.get_job(conn, job_id)
        if old["state"] != JobState.DEAD.value:
            raise InvalidTransition(
                f"job {job_id} is {old['state']}, not dead; the dead-letter queue only replays "
                "dead jobs (use retry for other finished jobs)"
            )
        return self._resubmit(
            old,
            old["args"] if args is None else args,
            old["kwargs"] if kwargs is None else kwargs,
        )

    def replay_matching(self, flt: repo.JobFilter, limit: int) -> BulkReplay:
        """Replay every dead, not yet replayed job the filter selects (at most ``limit``).

        A job that cannot be replayed as it is (its task is gone, its arguments no longer fit
        the signature — a poison message, say) is reported, not allowed to stop the rest.
        """
        with self.engine.begin() as conn:
            ids = repo.matching_ids(conn, repo.dead_letters(flt), limit)
        outcome = BulkReplay()
        for job_id in ids:
            try:
                outcome.job_ids.append(str(self.replay(job_id)["id"]))
            except SubmitError as exc:
                outcome.refused.append({"id": job_id, "error": str(exc)})
        return outcome

    def purge_matching(self, flt: repo.JobFilter, limit: int) -> int:
        """Delete the dead letters the filter selects (at most ``limit``) from the ledger:
        dead jobs not replayed (a replayed original stays, so its replay's ``retry_of`` never
        points at nothing)."""
        with self.engine.begin() as conn:
            ids = repo.matching_ids(conn, repo.dead_letters(flt), limit)
            return repo.delete_dead_letters(conn, ids)

    def _resubmit(
        self, old: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        row, _ = self.submit(
            old["task"],
            args,
            kwargs,
            queue=old["queue"],
            priority=old["priority"],
            retry_of=str(old["id"]),
        )
        return row


def publish(app: Celery, job_id: str, message: dict[str, Any], producer: Any = None) -> None:
    """Publish a job whose ledger row exists, with the id the ledger gave it."""
    task = app.tasks.get(message["task"])
    # Celery subscribes to the result channel of every task it sends unless told the result is
    # ignored — a pub/sub round trip per publish, for an AsyncResult nobody here waits on. Tell
    # it what the task itself would do (the header carries it to the worker unchanged).
    ignore_result = task.ignore_result if task is not None else app.conf.task_ignore_result
    token = publishing_recorded_job.set(True)
    try:
        app.send_task(
            message["task"],
            ignore_result=ignore_result,
            args=message.get("args") or [],
            kwargs=message.get("kwargs") or {},
            task_id=job_id,
            queue=message.get("queue"),
            routing_key=message.get("queue"),
            priority=message.get("priority"),
            expires=message.get("expires"),
            headers=_headers(message),
            producer=producer,
            # A canvas step sent again keeps its chain, chord callback, links and group.
            **(message.get("canvas") or {}),
            retry=True,
            retry_policy={
                # One try: if the broker does not take it now, the outbox relay will.
                "max_retries": 0,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
        )
    finally:
        publishing_recorded_job.reset(token)


def _headers(message: dict[str, Any]) -> dict[str, Any] | None:
    headers: dict[str, Any] = {}
    if message.get("resend"):
        headers[RESEND] = True
    if message.get("schedule_id"):
        headers[SCHEDULE_HEADER] = message["schedule_id"]
    return headers or None
