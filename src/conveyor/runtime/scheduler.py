"""The scheduler run by ``conveyor beat``: one leader fires the schedules stored in PostgreSQL.

Any number of replicas may run. Each tries to take the lease row ``scheduler`` in
``conveyor_leases`` (a few seconds long, renewed about every second by its holder); the one
that holds it fires, the others wait and take over once it expires — a leader killed with -9
is replaced within the lease time plus one poll. Every take-over increases the lease's fencing
token, and the leader writes fires only in a transaction that holds its token
(``schedule_store.hold_lease``), so a leader that lost the lease without noticing writes
nothing. The jobs themselves go through Conveyor's normal submit path with the idempotency key
``schedule:{id}:{fire time}``: even two leaders for a moment submit one job per fire.

What is due is one indexed query (``next_fire_at <= now``). The leader wakes at the earliest
next fire, at a NOTIFY on ``conveyor_schedules`` (every change through the service sends one),
and at least every ``poll`` seconds, so edits apply at once without a restart.

A burst seen coming is staged ahead of its minute (``runtime/staging.py``): once at least
``stage_threshold`` fires are due within ``STAGE_AHEAD`` seconds, their job rows are written and
their publishes rehearsed, and at the minute they are released in bulk — first the fires whose
outcome is certain (``Stager.release_ready``), before the tick reads and plans anything, then
those the tick decides to submit.

Bursts that are not staged can go through submitter processes (``runtime/submitters.py``).
With ``submitters="auto"`` and staging off, the leader looks ahead every ``AUTO_CHECK``
seconds — one count on the ``next_fire_at`` index, stopping at the threshold — and starts a
pool of ``AUTO_POOL`` processes when at least ``AUTO_THRESHOLD`` fires are due within
``AUTO_LOOKAHEAD`` seconds, so their start-up (a couple of seconds of imports) is over before
the burst; a burst finds the pool ready or goes through this process as without one. The pool
is closed once no burst has been seen for ``AUTO_IDLE`` seconds, or when the lease is lost. A
whole number instead is a fixed pool started with the scheduler (0: none).

Per fire, the schedule's policies apply (see docs/schedules.md): catch-up window after
downtime (older fires are recorded as missed; within the window the latest ``catchup_max`` run),
overlap (``skip``, ``buffer_one``, ``allow_all``, ``cancel_previous``), jitter (a job ``eta``),
end time, maximum runs, one-off.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from celery import Celery
from sqlalchemy import Engine

from conveyor.control import Control
from conveyor.core import schedules as triggers
from conveyor.errors import ConveyorError
from conveyor.intake import MAX_BATCH
from conveyor.ledger import schedule_store as store
from conveyor.ledger.events import METRICS_SCHEDULES
from conveyor.runtime.context import runtime_of
from conveyor.runtime.staging import STAGE_AHEAD, Stager
from conveyor.runtime.submitters import Submitters
from conveyor.schedules import ScheduleService, fire_job, fire_key, trigger_of

log = logging.getLogger(__name__)

LEASE_TTL = 5.0
MAX_CATCHUP = 1000  # fires looked at per schedule and tick after downtime

# ``submitters="auto"``: when to start and stop the pool, and its size. Two processes met the
# 10,000-in-2-s target on a 2-core machine (docs/benchmarks.md); more would compete with the
# leader, PostgreSQL and Redis for the same cores. One alone would only move the submitting
# from the leader to another process, so a single-core machine never starts one.
AUTO_THRESHOLD = 1000  # fires due within the look-ahead
AUTO_LOOKAHEAD = 30.0  # seconds
AUTO_CHECK = 5.0  # seconds between look-aheads
AUTO_IDLE = 180.0  # seconds without a burst before the pool is closed
AUTO_POOL = min(2, os.cpu_count() or 1)
BIG_TICK = 1000  # a tick firing at least this many logs where its time went
RELEASE_BATCH = 5000  # staged fires released per statement and pipeline
STAGE_QUIET = 2.0  # seconds: no staging this close to a fire (it would delay the fire)


class LeaseLost(ConveyorError):
    """The leader lost its lease in the middle of a tick."""


@dataclass
class Plan:
    """What one tick does: fires to record, jobs to submit, schedules to move on."""

    fires: list[dict[str, Any]] = field(default_factory=list)
    submit: list[tuple[dict[str, Any], datetime, dict[str, Any]]] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    settle: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    pooled: bool = False  # submitted by the submitter processes
    handed: int = 0  # how many of ``submit`` went to the intake
    cancelled: int = 0  # how many of ``cancel`` were cancelled
    pending: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    staged: list[tuple[dict[str, Any], datetime, dict[str, Any]]] = field(default_factory=list)


class Scheduler:
    """Fires due schedules while it holds the lease; ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        app: Celery,
        engine: Engine,
        *,
        holder: str | None = None,
        lease_ttl: float = LEASE_TTL,
        poll: float = 1.0,
        batch: int = 20_000,
        import_code: bool = True,
        submitters: int | Literal["auto"] = "auto",
        auto_threshold: int = AUTO_THRESHOLD,
        auto_idle: float = AUTO_IDLE,
        auto_check: float = AUTO_CHECK,
        stage_threshold: int = AUTO_THRESHOLD,
        stage_quiet: float = STAGE_QUIET,
    ) -> None:
        self.app = app
        self.engine = engine
        self.control = Control(app, engine)
        self.service = ScheduleService(self.control, engine)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.batch = batch
        self.import_code = import_code
        self.submitters = submitters
        self.auto_threshold = auto_threshold
        self.auto_idle = auto_idle
        self.auto_check = auto_check
        self.stage_threshold = stage_threshold
        self.stage_quiet = stage_quiet
        self.stager = Stager(app, engine, self.control, self.service, quiet=stage_quiet)
        self._staged_look = -float("inf")  # (monotonic) last look for fires to stage
        self.pool: Submitters | None = None
        self.pools_started = 0
        self.pooled_fires = 0  # fires submitted by submitter processes
        self._looked = -float("inf")  # (monotonic) last look-ahead
        self._burst_seen = -float("inf")  # (monotonic) last look-ahead that found a burst
        self.token: int | None = None
        self._renewed = 0.0
        self.ticks = 0

    @property
    def leader(self) -> bool:
        return self.token is not None

    # --- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        if self.import_code:
            self.sync_code()
        if self.submitters != "auto" and self.submitters > 0:
            self._start_pool(self.submitters)
        listener = self._listen()
        try:
            while not stop.is_set():
                wait = self.poll
                try:
                    self.keep_lease()
                    if self.submitters == "auto":
                        self.size_pool()
                    if self.leader:
                        until_next = self.tick()
                        wait = min(wait, until_next)
                        if until_next >= self.stage_quiet:
                            self.stage_ahead()
                    else:
                        self.stager.forget()
                except LeaseLost as exc:
                    log.warning("%s; its fires are left to the new leader", exc)
                    wait = self.poll
                except Exception:
                    log.exception("scheduler tick failed; trying again")
                    self.token = None
                    wait = self.poll
                if not self.leader:
                    wait = min(wait, self.lease_ttl / 5)
                listener = self._wait(listener, max(0.01, wait), stop)
        finally:
            if listener is not None:
                listener.close()
            self.release()
            if self.pool is not None:
                self.pool.close()
            self.control.close()

    def sync_code(self) -> None:
        """Import the app's ``beat_schedule`` as code-declared schedules (logged, never fatal)."""
        from conveyor.runtime.code_schedules import code_schedules

        try:
            done = self.service.import_code(code_schedules(self.app))
        except Exception:
            log.exception("could not import the app's beat_schedule as schedules")
            return
        log.info(
            "code schedules: %s",
            ", ".join(f"{k} {len(v)}" for k, v in done.items()) or "none",
        )

    def keep_lease(self) -> None:
        """Take the lease, or renew it (about every ttl/5 seconds while leader)."""
        now = time.monotonic()
        if self.leader and now - self._renewed < self.lease_ttl / 5:
            return
        with self.engine.begin() as conn:
            token = store.take_lease(conn, store.SCHEDULER_LEASE, self.holder, self.lease_ttl)
        if token is not None and token != self.token:
            log.info("scheduler %s leads (fencing token %d)", self.holder, token)
        elif token is None and self.token is not None:
            log.warning("scheduler %s lost the lease", self.holder)
        self.token = token
        self._renewed = now

    # --- submitter processes -------------------------------------------------------------------
    def _start_pool(self, n: int) -> None:
        log.info("starting %d submitter process(es)", n)
        self.pool = Submitters(runtime_of(self.app).settings, n)
        self.pools_started += 1

    def _close_pool(self, why: str) -> None:
        if self.pool is None:
            return
        log.info("closing the submitter processes (%s)", why)
        self.pool.close()
        self.pool = None

    def size_pool(self) -> None:
        """``submitters="auto"``: start the pool ahead of a burst (leader only), close it after
        ``auto_idle`` seconds without one, or at once when not leading."""
        if not self.leader:
            self._close_pool("not leading")
            return
        now = time.monotonic()
        # With staging, a burst in sight is staged before its minute and costs one release at
        # it, which a pool would not speed up: the pool is for bursts without staging.
        if AUTO_POOL < 2 or self.stage_threshold or now - self._looked < self.auto_check:
            return
        self._looked = now
        until = datetime.now(UTC) + timedelta(seconds=AUTO_LOOKAHEAD)
        with self.engine.connect() as conn:
            coming = store.due_count(conn, until, self.auto_threshold)
        if coming >= self.auto_threshold:
            self._burst_seen = now
            if self.pool is None:
                self._start_pool(AUTO_POOL)
        elif now - self._burst_seen >= self.auto_idle:
            self._close_pool(f"no burst for {self.auto_idle:g} s")

    def stage_ahead(self) -> None:
        """Stage the fires due within ``STAGE_AHEAD`` seconds once at least
        ``stage_threshold`` are (looked at every ``auto_check`` seconds; 0: never)."""
        now = time.monotonic()
        if not self.stage_threshold or now - self._staged_look < self.auto_check:
            return
        self._staged_look = now
        wall = datetime.now(UTC)
        until = wall + timedelta(seconds=STAGE_AHEAD)
        with self.engine.connect() as conn:
            if store.due_count(conn, until, self.stage_threshold) < self.stage_threshold:
                return
            rows = [r for r in store.due(conn, until, self.batch) if r["next_fire_at"] > wall]
        self.stager.stage(rows, self.holder, self._renewed_token)

    def _renewed_token(self) -> int | None:
        self.keep_lease()
        return self.token

    def release(self) -> None:
        if self.token is None:
            return
        try:
            with self.engine.begin() as conn:
                store.release_lease(conn, store.SCHEDULER_LEASE, self.holder)
        except Exception as exc:  # the lease expires by itself
            log.warning("could not release the scheduler lease: %s", exc)
        self.token = None

    def _listen(self) -> psycopg.Connection[Any] | None:
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
            conn.execute(f"LISTEN {store.CHANNEL}")
            return conn
        except psycopg.Error as exc:
            log.warning("LISTEN failed (polling every %g s instead): %s", self.poll, exc)
            return None

    def _wait(
        self, listener: psycopg.Connection[Any] | None, seconds: float, stop: threading.Event
    ) -> psycopg.Connection[Any] | None:
        """Sleep ``seconds``, or less if a schedule changes (NOTIFY) or ``stop`` is set."""
        if listener is None or listener.closed:
            stop.wait(seconds)
            return self._listen()
        try:
            for _ in listener.notifies(timeout=seconds, stop_after=1):
                break
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            listener.close()
            stop.wait(min(seconds, self.poll))
            return None
        return listener

    # --- one tick -----------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> float:
        """Fire what is due at ``now``; seconds until the next fire (or a poll)."""
        self.ticks += 1
        now = now or datetime.now(UTC)
        released_before = self.stager.released_total
        ledger0 = self.stager.release_ledger_seconds
        publish0 = self.stager.release_publish_seconds
        t0 = time.perf_counter()
        if self.stager.fires:
            assert self.token is not None
            self.stager.release_ready(now, self.holder, self.token)
        ready = self.stager.released_total - released_before
        tr = time.perf_counter()
        with self.engine.connect() as conn:
            rows = store.due(conn, now, self.batch)
            waiting = store.buffered(conn)
            ids = [str(r["id"]) for r in rows if r["overlap"] != "allow_all"]
            ids += [str(b["schedule_id"]) for b in waiting]
            active = store.active_jobs(conn, list(dict.fromkeys(ids)))
            by_id = {str(r["id"]): r for r in rows}
            if waiting:
                missing = [
                    str(b["schedule_id"]) for b in waiting if str(b["schedule_id"]) not in by_id
                ]
                for sid in missing:
                    by_id.setdefault(sid, store.get(conn, sid))
        t1 = time.perf_counter()
        plan = Plan(pooled=self._pool_ready())
        self._release_buffered(plan, waiting, by_id, active)
        released = {f["schedule_id"] for f in plan.settle}
        full = {str(b["schedule_id"]) for b in waiting} - released  # buffer_one's buffer
        for row in rows:
            sid = str(row["id"])
            self._plan(plan, row, now, active.get(sid, []), buffer_full=sid in full)
            # Handed in a full intake batch at a time: the committer writes and publishes the
            # first batches while the rest is still being planned.
            if len(plan.submit) - plan.handed >= MAX_BATCH or plan.cancel[plan.cancelled :]:
                self._still_leading()
                self._hand_in(plan)
            if len(plan.staged) >= RELEASE_BATCH:
                self._still_leading()
                self._release_known(plan)
        self._still_leading()
        self._release_known(plan)
        self._hand_in(plan)
        t2 = time.perf_counter()
        jobs = self._collect(plan)
        t3 = time.perf_counter()
        self._still_leading()  # (a first burst through a fixed pool waits for its start-up)
        self._record(plan, jobs)
        if len(rows) >= BIG_TICK:  # where a burst's time went
            log.info(
                "tick: %d due, %d released as staged (%d before planning, in %.2f s), %d "
                "submitted; read %.2f s, planned and handed in %.2f s (releases: ledger %.2f s, "
                "publish %.2f s), committed %.2f s, recorded %.2f s",
                len(rows),
                self.stager.released_total - released_before,
                ready,
                tr - t0,
                jobs,
                t1 - tr,
                t2 - t1,
                self.stager.release_ledger_seconds - ledger0,
                self.stager.release_publish_seconds - publish0,
                t3 - t2,
                time.perf_counter() - t3,
            )
        if len(rows) >= self.batch:
            return 0.0  # more are due
        with self.engine.connect() as conn:
            nxt = store.next_due(conn)
        if nxt is None:
            return self.poll
        return max(0.0, (nxt - datetime.now(UTC)).total_seconds())

    def _still_leading(self) -> None:
        """Renew the lease mid-tick (a large burst on a loaded machine can outlast it); the
        tick is abandoned, and left to the next leader, once it is lost."""
        self.keep_lease()
        if self.token is None:
            raise LeaseLost(f"scheduler {self.holder} lost the lease mid-tick")

    def _plan(
        self,
        plan: Plan,
        row: dict[str, Any],
        now: datetime,
        active: list[tuple[str, str]],
        *,
        buffer_full: bool = False,
    ) -> None:
        sid = str(row["id"])
        trigger = trigger_of(row)
        first: datetime = row["next_fire_at"]
        # The fires due (the stored next one and any after it up to now), and the first one
        # after now, from one walk of the trigger.
        fires = [first]
        upcoming = triggers.iter_fires(trigger, row["timezone"], first)
        following: datetime | None = None
        for fire in upcoming:
            if fire > now or len(fires) >= MAX_CATCHUP:
                following = fire if fire > now else None
                break
            fires.append(fire)
        end = row["end_at"]
        if end is not None:
            fires = [f for f in fires if f <= end]
        horizon = now - timedelta(seconds=row["catchup_window"])
        recent = [f for f in fires if f >= horizon]
        run = recent[-row["catchup_max"] :] if recent else []
        if row["max_runs"] is not None:
            run = run[: max(0, row["max_runs"] - row["run_count"])]
        for fire in fires:
            if fire not in run:
                plan.fires.append({"schedule_id": sid, "fire_time": fire, "outcome": "missed"})
                plan.counts["missed"] += 1
        runs = 0
        keys = {fire_key(sid, f) for f in run}
        # Runs of earlier fires still going (a job of one of these very fires is not one: a
        # leader before this one submitted it and died before recording it).
        busy_ids = [job for job, key in active if key not in keys]
        busy = bool(busy_ids)
        has_buffer = buffer_full
        for fire in run:
            key = fire_key(sid, fire)
            # Released before planning (Stager.release_ready), as this would have decided.
            early = self.stager.released.pop(key, None)
            outcome = "submitted"
            if early is not None:
                pass
            elif busy and row["overlap"] == "skip":
                outcome = "skipped_overlap"
            elif busy and row["overlap"] == "buffer_one":
                outcome = "skipped_overlap" if has_buffer else "buffered"
                has_buffer = True
            elif busy and row["overlap"] == "cancel_previous":
                plan.cancel += busy_ids
                outcome = "cancelled_previous"
            fire_row = {"schedule_id": sid, "fire_time": fire, "outcome": outcome}
            plan.fires.append(fire_row)
            plan.counts[outcome] += 1
            if outcome not in ("submitted", "cancelled_previous"):
                continue
            if early is not None:
                fire_row["job_id"] = early
                plan.pending.append((fire_row, None))
            elif key in self.stager.fires:
                plan.staged.append((row, fire, fire_row))
            else:
                plan.submit.append((row, fire, fire_row))
            runs += 1
            busy = True  # the run just submitted is the one now active
        moved = {**row, "run_count": row["run_count"] + runs}
        if following is None:  # (a long outage: fires skipped past the catch-up cap)
            nxt = self.service.first_fire(moved, max(now, fires[-1] if fires else first))
        else:
            nxt = following
            if (end is not None and nxt > end) or (
                row["max_runs"] is not None and moved["run_count"] >= row["max_runs"]
            ):
                nxt = None
        plan.moves.append(
            {
                "id": sid,
                "next_fire_at": nxt,
                "last_fire_at": fires[-1] if fires else None,
                "runs": runs,
                "seen": row["updated_at"],
            }
        )

    def _release_buffered(
        self,
        plan: Plan,
        waiting: list[dict[str, Any]],
        rows: dict[str, dict[str, Any]],
        active: dict[str, list[tuple[str, str]]],
    ) -> None:
        for b in waiting:  # earliest first
            sid = str(b["schedule_id"])
            row = rows.get(sid)
            if row is None or row["paused"] or row["retired_at"] is not None:
                continue
            if any(f["schedule_id"] == sid for f in plan.settle):
                continue  # one buffered fire per schedule
            key = fire_key(sid, b["fire_time"])
            if any(k != key for _, k in active.get(sid, [])):
                continue  # the previous run is still going
            fire_row = {"schedule_id": sid, "fire_time": b["fire_time"], "outcome": "submitted"}
            plan.settle.append(fire_row)
            plan.submit.append((row, b["fire_time"], fire_row))
            # A due fire of the same schedule in this tick finds this run active.
            active.setdefault(sid, []).append(("buffered", key))

    def _hand_in(self, plan: Plan) -> None:
        """Cancel what ``cancel_previous`` replaces, then give the intake the planned fires
        not handed in yet."""
        if len(plan.cancel) > plan.cancelled:
            self.control.cancel_many(list(dict.fromkeys(plan.cancel[plan.cancelled :])))
            plan.cancelled = len(plan.cancel)
        self._release_staged(plan)
        if plan.pooled:
            return  # the submitter processes take them all at once (_collect)
        for row, fire, fire_row in plan.submit[plan.handed :]:
            try:
                job = self.service.prepare_fire(row, fire)
            except ConveyorError as exc:  # the task is gone, or its signature changed
                log.error("schedule %r: fire at %s not submitted: %s", row["name"], fire, exc)
                fire_row["outcome"] = "missed"
                plan.counts["failed"] += 1
                continue
            plan.pending.append((fire_row, self.control.intake.submit(job)))
        plan.handed = len(plan.submit)

    def _release_known(self, plan: Plan) -> None:
        """Release the fires this leader staged (one update, one publish pipeline); those an
        edit, cancel or "run now" took meanwhile go the normal way."""
        if not plan.staged:
            return
        if len(plan.cancel) > plan.cancelled:  # (cancel_previous: the old run first)
            self.control.cancel_many(list(dict.fromkeys(plan.cancel[plan.cancelled :])))
            plan.cancelled = len(plan.cancel)
        todo, plan.staged = plan.staged, []
        assert self.token is not None
        keys = [fire_key(str(row["id"]), fire) for row, fire, _ in todo]
        released = self.stager.release(keys, self.holder, self.token)
        for item, key in zip(todo, keys, strict=True):
            job_id = released.get(key)
            if job_id is None:
                plan.submit.append(item)
            else:
                item[2]["job_id"] = job_id
                plan.pending.append((item[2], None))

    def _release_staged(self, plan: Plan) -> None:
        """The fires handed in now whose jobs were staged ahead: released (one update, one
        publish pipeline) and moved before ``plan.handed``; the others stay to submit."""
        todo = plan.submit[plan.handed :]
        if not todo:
            return
        assert self.token is not None
        keys = [fire_key(str(row["id"]), fire) for row, fire, _ in todo]
        released = self.stager.release(keys, self.holder, self.token)
        if not released:
            return
        done, rest = [], []
        for item, key in zip(todo, keys, strict=True):
            job_id = released.get(key)
            if job_id is None:
                rest.append(item)
                continue
            item[2]["job_id"] = job_id
            plan.pending.append((item[2], None))
            done.append(item)
        plan.submit[plan.handed :] = done + rest
        plan.handed += len(done)

    def _collect(self, plan: Plan) -> int:
        """Wait for the intake to commit every fire handed in, noting each job's id on its
        fire row; how many jobs were submitted."""
        if plan.pooled and plan.handed < len(plan.submit):
            self._through_pool(plan)
        for fire_row, item in plan.pending:
            if item is not None:  # (None: submitted by a submitter process)
                self._settle(plan, fire_row, *fire_job(item))
        return sum(1 for fire_row, _ in plan.pending if fire_row.get("job_id"))

    def _settle(
        self, plan: Plan, fire_row: dict[str, Any], job_id: str | None, error: str | None
    ) -> None:
        if job_id is not None:
            fire_row["job_id"] = job_id
            return
        log.error(
            "fire %s of schedule %s not submitted: %s",
            fire_row["fire_time"],
            fire_row["schedule_id"],
            error,
        )
        fire_row["outcome"] = "missed"
        plan.counts["failed"] += 1

    def _through_pool(self, plan: Plan) -> None:
        assert self.pool is not None
        todo = plan.submit[plan.handed :]
        try:
            outcomes = self.pool.submit([(row, fire) for row, fire, _ in todo], MAX_BATCH)
        except (OSError, EOFError) as exc:
            log.error("a submitter process failed (%s); submitting in this process from now", exc)
            self._close_pool("failed")
            plan.pooled = False
            self._hand_in(plan)  # every fire again: a fire already submitted keeps its job
            return
        for (_, _, fire_row), (job_id, error) in zip(todo, outcomes, strict=True):
            self._settle(plan, fire_row, job_id, error)
            if job_id is not None:
                plan.pending.append((fire_row, None))
                self.pooled_fires += 1
        plan.handed = len(plan.submit)

    def _pool_ready(self) -> bool:
        """Whether this tick submits through the pool: a fixed pool always (its first burst
        waits for its start-up, as asked for), an automatic one once its processes are up."""
        if self.pool is None:
            return False
        try:
            return self.submitters != "auto" or self.pool.ready()
        except (OSError, EOFError) as exc:
            log.error("a submitter process failed to start (%s)", exc)
            self._close_pool("failed")
            return False

    def _record(self, plan: Plan, jobs: int) -> None:
        if not (plan.fires or plan.moves or plan.settle):
            return
        assert self.token is not None
        with self.engine.begin() as conn:
            if not store.hold_lease(conn, store.SCHEDULER_LEASE, self.holder, self.token):
                log.warning(
                    "scheduler %s lost the lease mid-tick; its fires are left to the new leader",
                    self.holder,
                )
                self.token = None
                return
            store.record_fires(conn, [f for f in plan.fires if f not in plan.settle])
            # Fires not run (skipped, buffered, missed) do not keep a job staged for them.
            store.drop_staged(
                conn,
                keys=[
                    fire_key(f["schedule_id"], f["fire_time"])
                    for f in plan.fires
                    if not f.get("job_id")
                ],
            )
            for f in plan.settle:
                if f.get("job_id"):
                    store.settle_buffered(conn, f["schedule_id"], f["fire_time"], f["job_id"])
            store.advance(conn, plan.moves)
        submitted = [f["fire_time"] for f in plan.fires if f.get("job_id")]
        lag = (datetime.now(UTC) - max(submitted)).total_seconds() if submitted else None
        self._report(plan.counts, jobs, lag)
        self.stager.tidy(datetime.now(UTC))

    # --- metrics ------------------------------------------------------------------------------
    def _report(self, counts: Counter[str], jobs: int, lag: float | None) -> None:
        try:
            pipe = runtime_of(self.app).redis.pipeline(transaction=False)
            if jobs:
                pipe.hincrby(METRICS_SCHEDULES, "fired", jobs)
            for outcome in ("skipped_overlap", "missed", "buffered", "cancelled_previous"):
                if counts[outcome]:
                    pipe.hincrby(METRICS_SCHEDULES, outcome, counts[outcome])
            if lag is not None:
                pipe.hset(METRICS_SCHEDULES, "lag_seconds", f"{max(0.0, lag):.6f}")
            pipe.execute()
        except Exception as exc:  # bookkeeping must not stop the scheduler
            log.warning("could not count scheduler metrics: %s", exc)
