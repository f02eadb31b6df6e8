"""Group commit for submissions: many submits, one transaction, one pipelined publish.

A submission is durable once its job row and outbox row are committed; that is when the API
answers 202. Paying a transaction (and its WAL flush) and a broker round trip per submission
caps a process at a few hundred submits a second, so submissions are handed to one committer
thread per process instead: it takes everything that arrived while the previous transaction
ran and writes it in one statement and one commit. Under no load a batch is a single job and
costs what a direct insert costs; under load the cost per job falls as batches grow.

A second thread publishes what was committed — in one kombu publish batch (a single Redis
pipeline) per round — then deletes the published jobs' outbox rows in one statement. Whatever
it does not manage to publish (broker down, process killed) stays in the outbox, and the relay
publishes it after ``outbox_publish_grace`` seconds: no accepted job is lost on the way.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from conveyor.errors import ConveyorError, IdempotencyConflict, LedgerUnavailable
from conveyor.ledger import repository as repo

log = logging.getLogger(__name__)

MAX_BATCH = 500
Submitted = tuple[dict[str, Any], bool]  # (job row, created)


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
        publish: Callable[[Celery, str, dict[str, Any], Any], None],
        publish_grace: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.app = app
        self.engine = engine
        self.publish = publish
        self.publish_grace = publish_grace
        self.max_batch = max_batch
        self._pid: int | None = None
        self.batches = 0  # transactions written, and the most jobs one of them held
        self.largest_batch = 0
        self._lock = threading.Lock()
        self._incoming: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self._committed: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()

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

    # --- threads -----------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # First use in this process (or first after a fork, which keeps no threads).
            self._incoming = queue.SimpleQueue()
            self._committed = queue.SimpleQueue()
            self._threads = [
                threading.Thread(target=self._commit_loop, name="conveyor-commit", daemon=True),
                threading.Thread(target=self._publish_loop, name="conveyor-publish", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    @staticmethod
    def _drain(
        source: queue.SimpleQueue[Submission | None], limit: int
    ) -> tuple[list[Submission], bool]:
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

    def _commit_loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._drain(self._incoming, self.max_batch)
            if batch:
                self.commit(batch)
        self._committed.put(None)

    def commit(self, batch: list[Submission]) -> None:
        """Write a batch in one transaction and settle each submission's ``committed``
        future; committed immediate jobs go on to the publisher. The committer thread's step,
        callable directly (tests drive batches of their own making with it)."""
        self._ensure_running()
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            outcomes = self._write(batch)
        except OperationalError as exc:
            error = LedgerUnavailable(f"PostgreSQL is unreachable: {exc.orig}")
            for item in batch:
                self._fail(item, error)
            return
        except Exception as exc:
            if len(batch) > 1:
                # One bad row must not sink the others: write each on its own.
                for item in batch:
                    self.commit([item])
                return
            self._fail(batch[0], exc)
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._fail(item, outcome)
                continue
            item.committed.set_result(outcome)
            if outcome[1] and item.job.eta is None:
                self._committed.put(item)
            else:
                item.handed_on.set()  # nothing to publish now

    def _write(self, batch: list[Submission]) -> list[Submitted | BaseException]:
        jobs = [item.job for item in batch]
        with self.engine.begin() as conn:
            rows = repo.insert_jobs(conn, jobs, publish_grace=self.publish_grace)
            keys = [
                j.idempotency_key
                for j, r in zip(jobs, rows, strict=True)
                if r is None and j.idempotency_key is not None
            ]
            existing = repo.jobs_by_idempotency_key(conn, keys) if keys else {}
        outcomes: list[Submitted | BaseException] = []
        for job, row in zip(jobs, rows, strict=True):
            if row is not None:
                outcomes.append((row, True))
                continue
            assert job.idempotency_key is not None
            found = existing.get(job.idempotency_key)
            if found is None:  # pragma: no cover - the key's row cannot vanish in between
                outcomes.append(LedgerUnavailable("idempotency key row disappeared; try again"))
            elif found["payload_hash"] != job.payload_hash:
                outcomes.append(IdempotencyConflict(job.idempotency_key, str(found["id"])))
            else:
                outcomes.append((found, False))
        return outcomes

    @staticmethod
    def _fail(item: Submission, exc: BaseException) -> None:
        if not isinstance(exc, ConveyorError | DBAPIError):
            log.exception("submit of job %s failed", item.job.id, exc_info=exc)
        item.committed.set_exception(exc)
        item.handed_on.set()

    def _publish_loop(self) -> None:
        from conveyor.runtime.context import publishing_recorded_job

        publishing_recorded_job.set(True)  # this thread only publishes jobs already recorded
        stop = False
        while not stop:
            batch, stop = self._drain(self._committed, self.max_batch)
            if not batch:
                continue
            try:
                self._publish(batch)
            finally:
                for item in batch:
                    item.handed_on.set()

    def _publish(self, batch: list[Submission]) -> None:
        try:
            with self.app.producer_or_acquire() as producer, producer.batch():
                for item in batch:
                    self.publish(self.app, item.job.id, item.job.message, producer)
        except Exception as exc:  # the outbox relay publishes them once the broker is back
            log.warning("publish of %d job(s) deferred to the outbox: %s", len(batch), exc)
            return
        try:
            with self.engine.begin() as conn:
                repo.delete_outbox_of(conn, [item.job.id for item in batch])
        except OperationalError:
            log.warning(
                "outbox rows of %d published job(s) kept; the relay may publish them again",
                len(batch),
            )
