"""The outbox relay: publishes jobs the API could not (broker down) and delayed jobs when due.

Delays are held here, in PostgreSQL, rather than as broker ETAs: a Redis broker redelivers an
ETA message whose delay exceeds its visibility timeout, so the job would run twice.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from conveyor.ledger import repository as repo

log = logging.getLogger(__name__)

# Errors that mean "the broker is not there right now", as opposed to a bad message.
BROKER_DOWN = (KombuOperationalError, ConnectionError, TimeoutError, OSError, RedisError)
MAX_PUBLISH_ATTEMPTS = 10


class OutboxRelay:
    def __init__(
        self,
        app: Celery,
        engine: Engine,
        *,
        poll_interval: float = 0.25,
        batch: int = 200,
    ) -> None:
        self.app = app
        self.engine = engine
        self.poll = poll_interval
        self.batch = batch
        self.published = 0

    def step(self) -> int:
        """Publish one batch of due outbox rows; returns how many were published."""
        from conveyor.control import publish

        with self.engine.begin() as conn:
            rows = repo.due_outbox(conn, limit=self.batch)
            done_ids: list[int] = []
            done_jobs: list[str] = []
            for row in rows:
                job_id = str(row["job_id"])
                try:
                    publish(self.app, job_id, row["message"])
                except BROKER_DOWN as exc:
                    log.warning("outbox: broker unreachable publishing job %s: %s", job_id, exc)
                    break  # keep the rest for the next round
                except Exception as exc:
                    # Something wrong with this row, not the broker: set it aside (and in the
                    # end dead-letter its job) so it cannot block the rows behind it.
                    log.exception("outbox: could not publish job %s", job_id)
                    repo.outbox_failed(
                        conn, row, f"{type(exc).__name__}: {exc}", max_attempts=MAX_PUBLISH_ATTEMPTS
                    )
                    continue
                done_ids.append(row["id"])
                done_jobs.append(job_id)
            if done_ids:
                repo.mark_published(conn, done_ids, done_jobs)
        self.published += len(done_ids)
        return len(done_ids)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                n = self.step()
            except OperationalError as exc:
                log.warning("outbox relay waiting for PostgreSQL: %s", exc)
                n = 0
                stop.wait(1.0)
            if n < self.batch:
                stop.wait(self.poll)
