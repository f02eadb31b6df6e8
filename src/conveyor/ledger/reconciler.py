"""The reconciler: repairs what no single process can see go wrong.

Every few seconds (one instance at a time, under a Redis lock):

- a job `running` on a worker whose heartbeat expired is put back in line (or ends `dead` once
  it used all its attempts): its worker died with it;
- a job whose cancel was requested but which is still running after the grace period is
  terminated through Celery's remote control (SIGTERM, then SIGKILL);
- a job `queued` for long while its queue is empty in the broker lost its message: republished,
  unless it expired or its queue was purged through Celery since (then it ends `cancelled`);
- cancel flags in Redis are re-seeded from the ledger (Redis may have lost them in a restart),
  so a cancelled job never runs;
- once an hour, finished jobs past their retention (``CONVEYOR_RETENTION_DAYS``,
  ``CONVEYOR_FAILURE_RETENTION_DAYS``) are deleted, in batches, and so are job statistics older
  than the overview's longest range.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from conveyor.config import Settings
from conveyor.ledger import events as ev
from conveyor.ledger import repository as repo
from conveyor.ledger import stats
from conveyor.ledger.workflows import prune_workflows

log = logging.getLogger(__name__)

LOCK_KEY = "conveyor:reconciler"
PRUNE_INTERVAL = 3600.0
PRUNE_BATCH = 5000
PRUNE_MAX_BATCHES = 10


def _never_to_run(
    job: repo.StaleJob, now: datetime, purged_at: float | None
) -> tuple[str, str] | None:
    """(error type, message) if a job whose message is missing must not be re-sent."""
    if job.expires_at is not None and job.expires_at <= now:
        return "Expired", (
            f"its message left the broker unrun and its `expires` ({job.expires_at.isoformat()}) "
            "has passed: not re-sent"
        )
    if purged_at is not None and job.queued_at.timestamp() <= purged_at:
        when = datetime.fromtimestamp(purged_at, UTC).isoformat()
        return "Purged", f"queue {job.queue!r} was purged at {when}, with this job's message in it"
    return None


class Reconciler:
    def __init__(
        self, app: Celery, engine: Engine, client: redis.Redis, settings: Settings
    ) -> None:
        self.app = app
        self.engine = engine
        self.redis = client
        self.settings = settings
        self.requeued = 0
        self.dead = 0
        self.terminated = 0
        self.republished = 0
        self._last_reseed = 0.0
        self._last_prune = 0.0
        self._prune_backlog = False
        self._signalled: dict[str, str] = {}  # job id -> last signal sent

    def alive_workers(self) -> dict[str, float]:
        """Each worker name with a fresh heartbeat, and when its current incarnation began."""
        now = time.time()
        alive: dict[str, float] = {}
        for name, raw in self.redis.hgetall(ev.WORKERS_KEY).items():
            try:
                beat = json.loads(raw)
                if ev.heartbeat_alive(beat, now):
                    key = name.decode() if isinstance(name, bytes) else name
                    alive[key] = float(beat.get("started_at") or 0)
            except (ValueError, LookupError, TypeError):
                continue
        return alive

    def step(self) -> None:
        lock = self.redis.lock(LOCK_KEY, timeout=max(30, 3 * self.settings.reconcile_interval))
        if not lock.acquire(blocking=False):
            return  # another reconciler has this round
        try:
            self._lost_workers_and_cancels()
            self._stale_queued()
            if time.monotonic() - self._last_reseed > self.settings.cancel_reseed_interval:
                self._reseed_cancel_flags()
                self._last_reseed = time.monotonic()
            if self._prune_backlog or time.monotonic() - self._last_prune > PRUNE_INTERVAL:
                self._prune_backlog = self.prune(datetime.now(UTC))
                self._last_prune = time.monotonic()
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def prune(self, now: datetime) -> bool:
        """Delete finished jobs past their retention, and old statistics. True when more are
        due than one round deletes: the next round goes on (a round is kept short so that
        recovering lost jobs never waits long behind it)."""
        deleted, backlog = 0, False
        s = self.settings
        for states, days in (
            (("succeeded", "cancelled"), s.retention_days),
            (("failed", "dead"), s.failure_retention_days),
        ):
            if not days:
                continue
            cutoff = now - timedelta(days=days)
            for _ in range(PRUNE_MAX_BATCHES):
                with self.engine.begin() as conn:
                    n = repo.prune_finished(conn, states, cutoff, PRUNE_BATCH)
                deleted += n
                if n < PRUNE_BATCH:
                    break
            else:
                backlog = True
        with self.engine.begin() as conn:
            rows = stats.prune(conn, now)
        flows = 0
        if s.retention_days and s.failure_retention_days:
            # A workflow goes once none of its jobs is left, at the earliest when the longer
            # of the two retentions has passed since it began.
            longest = max(s.retention_days, s.failure_retention_days)
            with self.engine.begin() as conn:
                flows = prune_workflows(conn, now - timedelta(days=longest), PRUNE_BATCH)
        if deleted or rows or flows:
            log.info(
                "retention: deleted %d finished jobs, %d workflows and %d statistics rows",
                deleted,
                flows,
                rows,
            )
        return backlog

    def _lost_workers_and_cancels(self) -> None:
        alive = self.alive_workers()
        now = datetime.now(UTC)
        lost_after = timedelta(seconds=ev.SILENT_BEATS * self.settings.heartbeat_interval)
        with self.engine.connect() as conn:
            running = repo.running_jobs(conn)
        lost = []
        for job in running:
            started = job["started_at"] or now
            born = alive.get(job["worker"])
            # No fresh heartbeat under that name (for longer than a new worker's first takes);
            # or a worker beats under it that was born after the job started: the job ran in a
            # predecessor that died (a crash and a same-name restart).
            gone = now - started > lost_after if born is None else started.timestamp() < born
            if gone:
                lost.append({**job, "restarted": born is not None})
            elif job["cancel_requested_at"] is not None:
                job_id = str(job["id"])
                task_id = job["external_id"] or job_id
                self._enforce_cancel(job_id, job["cancel_requested_at"], now, task_id)
        if lost:
            self._recover(self._not_moved_on(lost))

    def _not_moved_on(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Leave out jobs the ledger has not caught up with: finished, or delivered again and
        started (a broker that requeued the message itself), per Redis."""
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.exists(ev.DONE_KEY + str(job["id"]))
            pipe.get(ev.ATTEMPTS_KEY + str(job["id"]))
        answers = pipe.execute()
        out = []
        for i, job in enumerate(jobs):
            done, attempts = answers[2 * i], answers[2 * i + 1]
            if not done and int(attempts or 0) <= job["attempt"]:
                out.append(job)
        return out

    def _recover(self, jobs: list[dict[str, Any]]) -> None:
        from conveyor.runtime.queues import broker_redelivers_at_once, drop_unacked

        # Before the job is put back in line: its lost delivery must not come back later too.
        # Messages carry Celery's task id: the external id where the ledger id was derived.
        started = {
            str(j.get("external_id") or j["id"]): j["started_at"].timestamp()
            for j in jobs
            if j["started_at"]
        }
        try:
            dropped = drop_unacked(self.app, started)
        except Exception as exc:  # broker down: recover anyway; a late copy is absorbed
            log.warning("could not drop lost jobs' unacknowledged messages: %s", exc)
        else:
            if dropped:
                log.info("dropped %d unacknowledged messages of lost jobs", dropped)
        # A worker restarted under the same name means the one that ran the job exited, and
        # with it its broker connection: RabbitMQ has already put the message back, and a
        # second copy could run beside it. A worker that merely went silent may still hold its
        # connection (a partition, a host gone dark), so its jobs are always republished.
        redelivered = broker_redelivers_at_once(self.app)
        for job in jobs:
            self._recover_one(job, publish=not (redelivered and job["restarted"]))

    def _recover_one(self, job: dict[str, Any], *, publish: bool) -> None:
        job_id = str(job["id"])
        cap = job["max_attempts"]
        with self.engine.begin() as conn:
            if cap is not None and job["attempt"] >= cap:
                if repo.mark_dead(
                    conn,
                    job_id,
                    "WorkerLost",
                    f"worker {job['worker']} stopped heartbeating during attempt "
                    f"{job['attempt']} of {cap}; no attempts left",
                ):
                    self.dead += 1
                    self.redis.set(
                        ev.DONE_KEY + job_id, job["attempt"] or 0, ex=self.settings.dedupe_ttl
                    )
                return
            if repo.requeue(conn, job_id, publish=publish):
                self.requeued += 1
                log.warning("job %s was running on lost worker %s; requeued", job_id, job["worker"])

    def _enforce_cancel(
        self, job_id: str, requested: datetime, now: datetime, task_id: str
    ) -> None:
        """Terminate a job that ignores its cancel; Celery knows it by ``task_id`` (its
        ``external_id`` when the ledger id was derived from it)."""
        grace = self.settings.cancel_grace
        waited = (now - requested).total_seconds()
        if waited < grace:
            return
        # SIGTERM once at the grace period, SIGKILL if it is still running after another one.
        sent = self._signalled.get(job_id)
        if sent is None:
            signal_name = "SIGTERM"
        elif sent == "SIGTERM" and waited >= 2 * grace:
            signal_name = "SIGKILL"
        else:
            return
        self.app.control.revoke(task_id, terminate=True, signal=signal_name)
        self._signalled[job_id] = signal_name
        self.terminated += 1
        log.warning("job %s ignored its cancel for %.0fs; sent %s", job_id, waited, signal_name)

    def _stale_queued(self) -> None:
        """Jobs `queued` for long whose queue the broker reports empty: their message is gone.
        One that expired meanwhile, or that was queued before its queue was purged through
        Celery (``app.control.purge()``), ends `cancelled` with that reason and is never
        re-sent; any other was lost (a broker restarted without its data) and is re-sent."""
        from conveyor.runtime.queues import broker_queue_stats

        names = list(self.app.amqp.queues.keys())
        try:
            empty = [s.name for s in broker_queue_stats(self.app, names) if s.depth == 0]
        except Exception as exc:  # broker down: nothing can be judged missing from it now
            log.info("reconciler skips stale-queued check: broker unreachable (%s)", exc)
            return
        purged = {
            key.decode() if isinstance(key, bytes) else key: float(value)
            for key, value in self.redis.hgetall(ev.PURGED_QUEUES).items()
        }
        now = datetime.now(UTC)
        ended: list[str] = []
        resent = 0
        with self.engine.begin() as conn:
            for job in repo.stale_queued(
                conn, older_than=self.settings.stale_queued_after, queues=empty
            ):
                reason = _never_to_run(job, now, purged.get(job.queue))
                if reason is None:
                    repo.republish(conn, job.id)
                    resent += 1
                elif repo.end_unsent(conn, job.id, *reason):
                    ended.append(job.id)
        if ended:
            # A copy that still turns up somewhere (a worker held it) is skipped, not run.
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ended:
                pipe.set(ev.CANCEL_KEY + job_id, "1", ex=ev.CANCEL_TTL)
            pipe.execute()
            log.warning("ended %d queued jobs whose message expired or was purged", len(ended))
        if resent:
            self.republished += resent
            log.warning("republished %d queued jobs missing from the broker", resent)

    def _reseed_cancel_flags(self) -> None:
        with self.engine.connect() as conn:
            ids = repo.never_started_cancelled(conn)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.set(ev.CANCEL_KEY + job_id, "1", ex=ev.CANCEL_TTL, nx=True)
        pipe.execute()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except (OperationalError, redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("reconciler waiting for its stores: %s", exc)
            except Exception:
                log.exception("reconciler round failed; trying again next interval")
            stop.wait(self.settings.reconcile_interval)
