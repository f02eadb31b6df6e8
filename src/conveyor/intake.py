"""Group commit for submissions: many submits, one statement, one pipelined publish.

A submission is durable once its job row and outbox row are committed; that is when the API
answers 202. Paying a transaction (and its WAL flush) and a broker round trip per submission
caps a process at a few hundred submits a second, so submissions are handed to one committer
thread per process instead. It takes everything that arrived while it was busy, writes it with
one statement (atomic on its own: no BEGIN/COMMIT round trips) on a connection it keeps, then
publishes the batch's immediate jobs in one kombu publish batch (a single Redis pipeline).
Under no load a batch is one job and costs what a direct insert and publish cost; under load
batches grow and the cost per job falls.

A second thread deletes the published jobs' outbox rows (and counts submissions for the
metrics), off the submitters' path. Whatever is
not published (broker down, process killed between commit and publish) stays in the outbox,
and the relay publishes it after ``outbox_publish_grace`` seconds: no accepted job is lost.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from celery import Celery
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from conveyor.errors import (
    ConveyorError,
    IdempotencyConflict,
    LedgerError,
    LedgerUnavailable,
)
from conveyor.ledger import repository as repo
from conveyor.ledger.db import Link

log = logging.getLogger(__name__)

MAX_BATCH = 500
Submitted = tuple[dict[str, Any], bool]  # (job row, created)
Publish = Callable[[Celery, str, dict[str, Any], Any], None]
T = TypeVar("T")


@dataclass
class Submission:
    job: repo.NewJob
    committed: Future[Submitted] = field(default_factory=Future)
    # Set once the job's publish was attempted (published, or left to the outbox relay).
    handed_on: threading.Event = field(default_factory=threading.Event)


class Intake:
    """Accepts jobs for one process; ``submit`` is safe to call from any thread."""

    def __init__(
        self,
        app: Celery,
        engine: Engine,
        *,
        publish: Publish,
        publish_grace: float,
        max_batch: int = MAX_BATCH,
        on_created: Callable[[list[repo.NewJob]], None] | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.publish = publish
        self.on_created = on_created
        self.publish_grace = publish_grace
        self.max_batch = max_batch
        self.batches = 0  # statements written, and the most jobs one of them held
        self.largest_batch = 0
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._incoming: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        # Work after the fact, for the second thread: ("published", job ids) to drop outbox rows
        # of, ("created", jobs) to count.
        self._chores: queue.SimpleQueue[tuple[str, list[Any]] | None] = queue.SimpleQueue()
        self._writer = Link(engine)
        # Deleting published jobs' outbox rows need not wait for a WAL flush: a row a crash
        # brings back only publishes its job once more, which delivery absorbs anyway.
        self._cleaner = Link(engine, setup="SET synchronous_commit = off")

    def submit(self, job: repo.NewJob) -> Submission:
        """Queue a job for the next commit; wait on ``.committed`` for (row, created)."""
        self._ensure_running()
        item = Submission(job)
        self._incoming.put(item)
        return item

    def close(self, timeout: float = 5.0) -> None:
        """Finish what was handed in (commit and publish it), then stop the threads."""
        with self._lock:
            if self._pid != os.getpid():
                return
            self._pid = None
            threads = self._threads
        self._incoming.put(None)
        for thread in threads:
            thread.join(timeout)

    def _ensure_running(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # First use in this process (or first after a fork, which keeps no threads).
            self._incoming = queue.SimpleQueue()
            self._chores = queue.SimpleQueue()
            self._threads = [
                threading.Thread(target=self._commit_loop, name="conveyor-intake", daemon=True),
                threading.Thread(target=self._clean_loop, name="conveyor-outbox-gc", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    # --- the committer -----------------------------------------------------------------------
    def _commit_loop(self) -> None:
        from conveyor.runtime.context import publishing_recorded_job

        publishing_recorded_job.set(True)  # this thread only publishes jobs already recorded
        stop = False
        while not stop:
            batch, stop = _drain(self._incoming, self.max_batch)
            if batch:
                self.commit(batch)
        self._writer.close()
        self._chores.put(None)

    def commit(self, batch: list[Submission]) -> None:
        """Write a batch in one statement, settle each submission's ``committed`` future, and
        publish the immediate jobs among them. The committer thread's step, callable directly
        (tests drive batches of their own making with it)."""
        self._ensure_running()
        to_publish = self._write_settled(batch)
        if not to_publish:
            return
        try:
            self._publish(to_publish)
        finally:
            for item in to_publish:
                item.handed_on.set()

    def _write_settled(self, batch: list[Submission]) -> list[Submission]:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            outcomes = self._write(batch)
        except OperationalError as exc:
            error = LedgerUnavailable(f"PostgreSQL is unreachable: {exc.orig}")
            for item in batch:
                _fail(item, error)
            return []
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return []
            # One bad row must not sink the others: write each on its own.
            return [ok for item in batch for ok in self._write_settled([item])]
        to_publish, created = [], []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _fail(item, outcome)
                continue
            item.committed.set_result(outcome)
            if outcome[1]:
                created.append(item.job)
            if outcome[1] and item.job.eta is None:
                to_publish.append(item)
            else:
                item.handed_on.set()  # nothing to publish now
        if created and self.on_created is not None:
            self._chores.put(("created", created))  # counted off the submitters' path
        return to_publish

    def _write(self, batch: list[Submission]) -> list[Submitted | BaseException]:
        jobs = [item.job for item in batch]

        def write(conn: Connection) -> tuple[list[dict[str, Any] | None], dict[str, Any], Any]:
            rows = repo.insert_jobs(conn, jobs, publish_grace=self.publish_grace)
            missing = [j for j, r in zip(jobs, rows, strict=True) if r is None]
            if not missing:
                return rows, {}, {}
            # Ours already (written before a broken connection was retried), or another key's.
            found = repo.get_jobs(conn, [j.id for j in missing], full=True)
            mine = {str(r["id"]): r for r in found}
            keys = [j.idempotency_key for j in missing if j.idempotency_key and j.id not in mine]
            return rows, mine, repo.jobs_by_idempotency_key(conn, keys) if keys else {}

        rows, mine, existing = self._writer.run(write)
        outcomes: list[Submitted | BaseException] = []
        for job, row in zip(jobs, rows, strict=True):
            if row is not None or job.id in mine:
                outcomes.append((row or mine[job.id], True))
                continue
            found = existing.get(job.idempotency_key or "")
            if found is None:  # pragma: no cover - neither its id nor its key: cannot happen
                outcomes.append(LedgerUnavailable(f"job {job.id} was not recorded; try again"))
            elif found["payload_hash"] != job.payload_hash:
                outcomes.append(IdempotencyConflict(job.idempotency_key or "", str(found["id"])))
            else:
                outcomes.append((found, False))
        return outcomes

    def _publish(self, batch: list[Submission]) -> None:
        try:
            with self.app.producer_or_acquire() as producer, producer.batch():
                for item in batch:
                    self.publish(self.app, item.job.id, item.job.message, producer)
        except Exception as exc:  # the outbox relay publishes them once the broker is back
            log.warning("publish of %d job(s) deferred to the outbox: %s", len(batch), exc)
            return
        self._chores.put(("published", [item.job.id for item in batch]))

    # --- after the fact: outbox rows of published jobs, counters ------------------------------
    def _clean_loop(self) -> None:
        stop = False
        while not stop:
            chores, stop = _drain(self._chores, 50)
            created = [job for kind, items in chores if kind == "created" for job in items]
            if created and self.on_created is not None:
                try:
                    self.on_created(created)
                except Exception as exc:  # bookkeeping must not fail anything
                    log.warning("could not count %d submitted job(s): %s", len(created), exc)
            ids = [job_id for kind, items in chores if kind == "published" for job_id in items]
            if not ids:
                continue
            try:
                self._cleaner.run(partial(repo.delete_outbox_of, job_ids=ids))
            except Exception as exc:
                log.warning(
                    "outbox rows of %d published job(s) kept; the relay will publish them "
                    "again: %s",
                    len(ids),
                    exc,
                )
        self._cleaner.close()


def _drain(source: queue.SimpleQueue[T | None], limit: int) -> tuple[list[T], bool]:
    """Block for one item, then take what else is already waiting; (items, stop seen)."""
    first = source.get()
    if first is None:
        return [], True
    items = [first]
    while len(items) < limit:
        try:
            item = source.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return items, True
        items.append(item)
    return items, False


def _fail(item: Submission, exc: BaseException) -> None:
    if isinstance(exc, DBAPIError):
        # PostgreSQL refused this row (validation should have caught it): say so, as a
        # Conveyor error the API answers with 4xx, not a driver error that would be a 500.
        log.warning("the ledger refused job %s: %s", item.job.id, exc.orig)
        exc = LedgerError(f"the ledger refused this job: {exc.orig}")
    elif not isinstance(exc, ConveyorError):
        log.error("submit of job %s failed", item.job.id, exc_info=exc)
    item.committed.set_exception(exc)
    item.handed_on.set()
