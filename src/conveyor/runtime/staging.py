"""Fires staged ahead of their minute, so that a burst costs one update and one pipeline at it.

Submitting a fire's job costs a ledger insert (job row, idempotency key, outbox row) and a
publish through Celery (100 to 150 µs a message, holding the GIL); 10,000 fires due in one minute
took 2 to 3 s of one process. All of that depends only on the schedule, not on the minute, so the
leader does it before: when its look-ahead sees a burst coming (``Scheduler.stage_threshold``
fires within ``STAGE_AHEAD`` seconds), it writes each of those schedules' next fire as a
*staged* job —

- a job row in state ``scheduled`` with the fire time as its eta and the fire's idempotency key
  ``schedule:{id}:{fire time}``, and an outbox row due at ``infinity``: the outbox relay never
  publishes it, and nothing runs early (it shows in the jobs list as a scheduled job of its
  schedule, due at its fire time);
- and, on a Redis broker, the broker's writes its publish would make, rehearsed through the same
  publish path (``control.publish`` in a kombu publish batch that is never flushed): the exact
  queue entries, kept in the leader's memory.

At the minute the scheduler still decides every fire as before (catch-up, overlap evaluated at
fire time, max runs, end); for the fires it submits, :meth:`Stager.release` flips the staged
rows to ``queued`` in one statement (their outbox rows then due after the publish grace, the
relay's safety net as for any submission) and pushes the rehearsed entries in one Redis
pipeline. A fire that is not submitted (skipped, buffered, missed) has its staged row deleted.

What keeps it correct:

- an edit, pause, delete or reset-to-code of a schedule drops its staged rows in the same
  transaction (``schedule_store.update_schedule``/``delete_schedule``), and staging writes only
  while the schedule is as it was read (its ``updated_at``, row locked ``FOR SHARE``): the fire
  then goes through the normal path with the new definition, or not at all;
- staging and release are fenced by the leader's lease token, and the release only flips rows
  still ``scheduled`` — a job cancelled or run now in between is not published again;
- a new leader has none of the old one's memory: at the minute it finds the staged rows by
  their idempotency keys, releases them and publishes them from their outbox messages; a fire
  whose staged row is gone is submitted as usual, its key making it one job either way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Connection, Engine

from conveyor.control import Control, publish
from conveyor.core import schedules as triggers
from conveyor.errors import ConveyorError
from conveyor.ledger import repository as repo
from conveyor.ledger import schedule_store as store
from conveyor.runtime.context import runtime_of
from conveyor.schedules import ScheduleService, fire_key, trigger_of

log = logging.getLogger(__name__)

STAGE_AHEAD = 30.0  # seconds: fires due this soon are staged once a burst is in sight
CHUNK = 1000  # staged rows written per statement
Command = tuple[Any, ...]  # one Redis command, e.g. ("LPUSH", queue key, entry)


@dataclass
class Staged:
    job_id: str
    fire: datetime
    commands: list[Command] | None  # the rehearsed broker writes (Redis), None: publish anew
    schedule_id: str = ""
    seen: datetime | None = None  # the schedule's updated_at it was staged from
    following: datetime | None = None  # the schedule's fire after this one
    overlap: str = "skip"
    catchup_window: float = 0.0


class _Rehearsed(Exception):
    """Raised inside the publish batch so that kombu discards what it buffered."""


class Stager:
    """The leader's staged fires (by idempotency key): stage before the minute, release at it."""

    def __init__(
        self,
        app: Celery,
        engine: Engine,
        control: Control,
        service: ScheduleService,
        quiet: float = 2.0,
    ) -> None:
        self.app = app
        self.quiet = quiet  # seconds: no staging closer than this to a fire
        self.engine = engine
        self.control = control
        self.service = service
        self.fires: dict[str, Staged] = {}
        self.published: list[str] = []  # released and published; their outbox rows to drop
        self.released: dict[str, str] = {}  # key → job id, released ahead of the tick
        self.staged_total = 0
        self.released_total = 0
        self.ready_total = 0  # of those, released before the tick planned them
        self.release_ledger_seconds = 0.0  # over all releases: the update's transaction,
        self.release_publish_seconds = 0.0  # and the publishing after it

    # --- before the minute --------------------------------------------------------------------
    def stage(
        self, rows: Iterable[dict[str, Any]], holder: str, lease: Callable[[], int | None]
    ) -> int:
        """Stage the next fire of each of ``rows`` (due schedules read just now) not staged yet;
        how many were. Jittered schedules are left to the minute (their job waits anyway).
        ``lease()`` renews the leader's lease between chunks (a large staging outlasts it) and
        gives its token, None once lost."""
        todo: list[tuple[repo.NewJob, datetime]] = []
        rows_by_job: dict[str, dict[str, Any]] = {}
        for row in rows:
            fire: datetime | None = row["next_fire_at"]
            if fire is None or row["jitter"] or fire_key(str(row["id"]), fire) in self.fires:
                continue
            try:
                job = self.service.prepare_fire(row, fire)
            except ConveyorError:
                continue  # the minute reports it (the task is gone, or its signature changed)
            todo.append((dataclasses.replace(job, eta=fire), row["updated_at"]))
            rows_by_job[job.id] = row
        staged = 0
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            soonest = min(job.eta for job, _ in chunk if job.eta is not None)
            if soonest - datetime.now(UTC) < timedelta(seconds=self.quiet):
                # A staging that ran late (a loaded machine) must not delay the fire itself:
                # the rest goes through the normal path at its minute.
                log.warning("staging stopped %g s before the fires it was for", self.quiet)
                break
            token = lease()
            if token is None:
                break
            with self.engine.begin() as conn:
                if not store.hold_lease(conn, store.SCHEDULER_LEASE, holder, token):
                    break  # no longer leading
                written = store.stage_jobs(conn, chunk)
            jobs = [job for job, _ in chunk if job.id in written]
            rehearsed = self.rehearse(jobs)
            for job in jobs:
                assert job.eta is not None and job.idempotency_key is not None
                row = rows_by_job[job.id]
                self.fires[job.idempotency_key] = Staged(
                    job.id,
                    job.eta,
                    rehearsed.get(job.id),
                    schedule_id=str(row["id"]),
                    seen=row["updated_at"],
                    following=next(
                        iter(triggers.iter_fires(trigger_of(row), row["timezone"], job.eta)), None
                    ),
                    overlap=row["overlap"],
                    catchup_window=row["catchup_window"],
                )
            if jobs and self.control.intake.on_created is not None:
                try:
                    self.control.intake.on_created(jobs)  # (submitted: counted as created)
                except Exception as exc:
                    log.warning("could not count %d staged job(s): %s", len(jobs), exc)
            staged += len(jobs)
        self.staged_total += staged
        if staged:
            log.info("staged %d fire(s) ahead of their minute", staged)
        return staged

    def rehearse(self, jobs: Sequence[repo.NewJob]) -> dict[str, list[Command]]:
        """The Redis commands publishing ``jobs`` would send, by job id, without sending them
        (Conveyor's publish in a kombu publish batch that is then discarded). Empty on another
        broker: those are published anew at the minute."""
        if not jobs or not runtime_of(self.app).redis_broker:
            return {}
        out: dict[str, list[Command]] = {}
        try:
            with self.app.producer_or_acquire() as producer:
                try:
                    with producer.batch(max_size=2**31 - 1) as batch:
                        done = 0
                        for job in jobs:
                            publish(self.app, job.id, job.message, producer)
                            session = batch.state.session if batch.state else None
                            stack = session.pipeline.command_stack if session else []
                            out[job.id] = [tuple(args) for args, _ in stack[done:]]
                            done = len(stack)
                        raise _Rehearsed
                except _Rehearsed:
                    pass
        except Exception as exc:  # kombu changed underneath, or the broker is away
            log.warning("could not rehearse the publish of %d staged job(s): %s", len(jobs), exc)
            return {}
        return out

    # --- at the minute ------------------------------------------------------------------------
    def release_ready(self, now: datetime, holder: str, token: int) -> int:
        """Release, before the tick reads and plans anything, the staged fires due at ``now``
        whose outcome is already certain — this the schedule's only fire due, within its
        catch-up window, still its next fire, no buffered fire waiting, no run of it active
        (or overlap ``allow_all``): what the tick would decide. The tick then records them
        (``self.released``); any other staged fire waits for the tick's decision."""
        ready = [
            k
            for k, s in self.fires.items()
            if s.fire <= now
            and s.following is not None
            and s.following > now
            and s.fire >= now - timedelta(seconds=s.catchup_window)
        ]
        released = self.release(ready, holder, token, if_free=True)
        self.released.update(released)
        self.ready_total += len(released)
        return len(released)

    def release(
        self, keys: list[str], holder: str, token: int, *, if_free: bool = False
    ) -> dict[str, str]:
        """Release the staged jobs of these fires (by key) and publish them; key → job id of
        those released. Fires not among them go through the normal path. ``if_free``: only
        those the tick would submit anyway (``schedule_store.release_staged``)."""
        if not keys:
            return {}
        known = {k: self.fires[k] for k in keys if k in self.fires}
        others = [k for k in keys if k not in known]
        ids = {s.job_id: k for k, s in known.items()}
        t0 = time.perf_counter()
        publish_seconds = 0.0
        with self.engine.begin() as conn:
            if not store.hold_lease(conn, store.SCHEDULER_LEASE, holder, token):
                return {}
            # Staged by a leader before this one, or before this one's restart.
            ids.update({i: k for k, i in store.staged_by_key(conn, others).items()})
            if not ids:
                return {}
            released = store.lock_staged(conn, list(ids), if_free=if_free)
            # Published while locked, before the update that makes them queued: the update of
            # thousands of rows (every index of the jobs table) would delay the burst, and
            # nothing can edit or cancel them in between. Should this transaction not commit,
            # they stay staged and the next release publishes them again — the window a
            # submitter has between its publish and its outbox clean-up.
            published: list[str] = []
            if released:
                p0 = time.perf_counter()
                published = self._publish(conn, released, {s.job_id: s for s in known.values()})
                publish_seconds = time.perf_counter() - p0
            store.release_staged(conn, released, self.control.settings.outbox_publish_grace)
        self.published += published  # (their outbox rows dropped once the tick is recorded)
        for key in keys if not if_free else [ids[i] for i in released]:
            self.fires.pop(key, None)
        self.released_total += len(released)
        self.release_publish_seconds += publish_seconds
        self.release_ledger_seconds += time.perf_counter() - t0 - publish_seconds
        return {ids[i]: i for i in released}

    def _publish(
        self, conn: Connection, released: list[str], known: dict[str, Staged]
    ) -> list[str]:
        """Push the rehearsed queue entries in one pipeline; publish the others (staged by
        another leader, or on another broker) anew from their outbox messages."""
        commands: list[Command] = []
        rehearsed: list[str] = []
        done: list[str] = []  # published
        anew: list[str] = []
        for job_id in released:
            staged = known.get(job_id)
            if staged is not None and staged.commands:
                commands += staged.commands
                rehearsed.append(job_id)
            else:
                anew.append(job_id)
        try:
            with self.app.producer_or_acquire() as producer:
                if commands:
                    with producer.channel.conn_or_acquire() as client:
                        pipe = client.pipeline(transaction=False)
                        for command in commands:
                            pipe.execute_command(*command)
                        pipe.execute()
                    done += rehearsed
                if anew:
                    messages = store.outbox_messages(conn, anew)
                    with producer.batch():
                        for job_id, message in messages.items():
                            publish(self.app, job_id, message, producer)
                    done += list(messages)
        except Exception as exc:  # the relay publishes them after the grace
            log.warning("publish of released fires deferred to the outbox: %s", exc)
        return done

    def tidy(self, now: datetime) -> None:
        """After the minute: drop the outbox rows of what was published, forget staged fires
        long past (their schedule moved on: an edit dropped them, or they were released by
        another leader)."""
        done, self.published = self.published, []
        if done:
            try:
                with self.engine.begin() as conn:
                    for start in range(0, len(done), CHUNK):
                        repo.delete_outbox_of(conn, done[start : start + CHUNK])
            except Exception as exc:  # the relay publishes them again, which delivery absorbs
                log.warning("outbox rows of %d released fire(s) kept: %s", len(done), exc)
        horizon = now - timedelta(seconds=STAGE_AHEAD)
        for key in [k for k, s in self.fires.items() if s.fire < horizon]:
            del self.fires[key]
        if len(self.released) > 0:  # (recorded by the tick that followed their release)
            self.released.clear()

    def forget(self) -> None:
        """Not leading any more: what this process staged is the next leader's to find (and
        what it released, the next leader's to record: it finds their jobs by key)."""
        self.fires.clear()
        self.released.clear()
