"""Schedules: 10,000 due in the same minute, and the scheduler's CPU while it waits for them.

10,000 schedules (cron ``* * * * *``, task ``bench.noop``, overlap ``skip``) are written
straight into the ledger, all next due at the same minute T (at least 40 s ahead). One
``conveyor beat --no-code`` runs (no worker: the jobs only need submitting), alone
(``--submitters 0``), with two submitter processes (``--submitters 2``) and in the default
configuration (``--submitters auto``), each on a fresh ledger (``--submitters`` picks some).
Staging is on in all three (the default ``--stage-threshold 1000``): the burst is staged when it
comes within the scheduler's 30 s look-ahead, and released at T; ``auto`` then starts no pool.
Measured:

- idle: the scheduler process's CPU (user + system, from psutil, its submitters included) while
  it waits for T with 10,000 schedules stored, as a percentage of one core; with ``auto`` the
  idle window ends before T enters the look-ahead, and the CPU from there to 3 s before T (the
  staging) and the submitter processes alive then are reported apart;
- burst: from T to the last of the 10,000 messages in the broker's queue (no worker runs: a
  thread reads the queue's length every 10 ms from 3 s before T; a job is published after its
  commit, so this is "committed and published") — the target; and, from the ledger, to the
  latest ``queued_at`` (the start of the transaction that made the last job due: its insert
  without staging, its release with it), to the last fire recorded, and how long before T the
  first job row was written (with staging, ~30 s: the burst was staged ahead).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psutil

from bench.apps import TASK, consumed_queues, reference
from bench.report import Figure
from bench.stack import BenchError, QueueProbe, Stack, wait_until
from conveyor.runtime.scheduler import AUTO_CHECK, AUTO_LOOKAHEAD
from conveyor.runtime.staging import STAGE_AHEAD

SCHEDULES = 10_000
TARGET_SECONDS = 2.0
LEAD = 40.0  # seconds at least between the set-up and the minute the schedules are due
AUTO = "auto"


@dataclass
class Result:
    schedules: int
    submitters: int | str
    idle_cpu_percent: float
    idle_seconds: float
    submitted_seconds: float  # T → last job committed
    recorded_seconds: float  # T → last fire row written
    burst_cpu_seconds: float
    start_cpu_seconds: float | None = None  # auto: look-ahead → 3 s before T
    ready_before: int | None = None  # auto: submitter processes alive 3 s before T
    written_before: float = 0.0  # the first job row written this long before T (staged), s
    published_seconds: float = 0.0  # T → the last message in the broker's queue


def _due_minute(conn: object, lead: float) -> datetime:
    now: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[attr-defined]
    due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (due - now).total_seconds() < lead:
        due += timedelta(minutes=1)
    return due


def _leader(conn: object) -> bool:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM conveyor_leases WHERE name = 'scheduler' AND expires_at > now()"
    ).fetchone()
    return row is not None


def run(stack: Stack, n: int = SCHEDULES, submitters: int | str = 0) -> Result:
    queues = consumed_queues(reference("conveyor", stack.settings, stack.prefix))
    stack.reset(queues, {})
    # With auto, the idle window ends where the look-ahead would see the burst.
    # The idle window ends where the look-ahead would see the burst (and stage it, in every
    # configuration).
    ahead = max(AUTO_LOOKAHEAD, STAGE_AHEAD) + AUTO_CHECK + 1.0
    with stack.pg() as conn:
        due = _due_minute(conn, LEAD + ahead - 3.0)
        conn.execute(
            "INSERT INTO conveyor_schedules (id, name, task, trigger_kind, trigger_expr, "
            "overlap, next_fire_at) SELECT gen_random_uuid(), 'bench-' || i, %s, 'cron', "
            "'* * * * *', 'skip', %s FROM generate_series(1, %s) AS i",
            (TASK, due, n),
        )
        print(f"  {n:,} schedules due at {due:%H:%M:%S} UTC", file=sys.stderr, flush=True)
        argv = ["conveyor", "beat", "--no-code", "--submitters", str(submitters)]
        beat = stack.child(f"beat-{submitters}", argv)
        with beat:
            wait_until(lambda: _leader(conn), 60, "the scheduler to lead", 0.1, (beat,))
            proc = psutil.Process(beat.pid)
            fixed = submitters not in (0, AUTO)
            time.sleep(3.0 + 5.0 * fixed)  # past start-up (a fixed pool's too)
            left = (due - conn.execute("SELECT now()").fetchone()[0]).total_seconds()  # type: ignore[index]
            if left - ahead < 5:
                raise BenchError("too little time left before the minute to measure idle CPU")
            cpu0, t0 = _cpu(proc), time.monotonic()
            time.sleep(left - ahead)
            cpu1, t1 = _cpu(proc), time.monotonic()
            idle = (cpu1 - cpu0) / (t1 - t0) * 100
            # From the look-ahead to 3 s before T: the staging (and a pool's start-up).
            time.sleep(ahead - 3.0)
            cpu_ready = _cpu(proc)
            start_cpu, ready = cpu_ready - cpu1, _submitters(proc)
            cpu1 = cpu_ready

            # From here (3 s or more before T) the broker's queue is watched: no worker runs, so
            # the 10,000 messages stay there, and the moment the last one arrives is when the
            # burst was published (after its commit).
            published: list[float] = []
            watcher = threading.Thread(
                target=_watch, args=(stack, queues, n, time.time() + 120, published), daemon=True
            )
            watcher.start()

            def all_recorded() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM conveyor_schedule_fires WHERE fire_time = %s", (due,)
                ).fetchone()
                return bool(row and row[0] >= n)

            wait_until(all_recorded, 120, f"{n:,} fires recorded", 0.05, (beat,))
            watcher.join(125)
            cpu2 = _cpu(proc)
            # queued_at: when the job was committed as due (with staging, its row was written
            # before the minute and released at it; without, written then).
            row = conn.execute(
                "SELECT extract(epoch FROM max(queued_at) - %s)::float8, "
                "count(*) FILTER (WHERE state = 'queued'), "
                "extract(epoch FROM %s - min(created_at))::float8 "
                "FROM conveyor_jobs WHERE schedule_id IS NOT NULL",
                (due, due),
            ).fetchone()
            fires = conn.execute(
                "SELECT extract(epoch FROM max(created_at) - %s)::float8, "
                "count(*) FILTER (WHERE outcome = 'submitted') "
                "FROM conveyor_schedule_fires WHERE fire_time = %s",
                (due, due),
            ).fetchone()
    assert row is not None and fires is not None
    if not published:
        raise BenchError(f"the {n:,} messages did not all reach the broker's queue")
    if row[1] != n or fires[1] != n:
        raise BenchError(f"expected {n} jobs and submitted fires, got {row[1]} and {fires[1]}")
    result = Result(
        n,
        submitters,
        idle,
        t1 - t0,
        float(row[0]),
        float(fires[0]),
        cpu2 - cpu1,
        start_cpu,
        ready,
        float(row[2]),
        published[0] - due.timestamp(),
    )
    started = "" if ready is None else f"{ready} running 3 s before the minute; "
    print(
        f"  {submitters} submitter(s): idle CPU {result.idle_cpu_percent:.2f}% over "
        f"{result.idle_seconds:.0f} s; {started}"
        f"first job row written {result.written_before:.1f} s before the minute; "
        f"all {n:,} committed {result.submitted_seconds:.2f} s after the minute, "
        f"published {result.published_seconds:.2f} s, "
        f"recorded {result.recorded_seconds:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return result


def _watch(stack: Stack, queues: list[str], n: int, until: float, out: list[float]) -> None:
    """Append the time the broker's queues first hold ``n`` messages (read every 10 ms)."""
    probe = QueueProbe(stack, queues, {})
    try:
        while time.time() < until:
            if probe.waiting() >= n:
                out.append(time.time())
                return
            time.sleep(0.01)
    finally:
        probe.close()


def _submitters(proc: psutil.Process) -> int:
    """The scheduler's spawned submitter processes (not multiprocessing's resource tracker)."""
    found = 0
    for p in proc.children():
        try:
            found += any("spawn_main" in part for part in p.cmdline())
        except psutil.Error:
            continue
    return found


def _cpu(proc: psutil.Process) -> float:
    """User + system seconds of the scheduler and its submitter processes."""
    procs = [proc, *proc.children(recursive=True)]
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def figures(r: Result) -> list[Figure]:
    section = (
        f"schedules ({r.schedules:,} due in the same minute, `conveyor beat "
        f"--submitters {r.submitters}`)"
    )
    auto = []
    if r.start_cpu_seconds is not None:
        auto = [
            Figure(
                section, "submitter processes running 3 s before the minute", f"{r.ready_before}"
            ),
            Figure(
                section,
                "scheduler CPU from the look-ahead to 3 s before the minute (staging; a pool's "
                "start-up) s",
                f"{r.start_cpu_seconds:.2f}",
            ),
        ]
    return [
        *auto,
        Figure(
            section,
            "minute → all jobs submitted (the last message in the broker's queue) s",
            f"{r.published_seconds:.2f}",
            f"≤ {TARGET_SECONDS:g}",
            r.published_seconds <= TARGET_SECONDS,
        ),
        Figure(
            section,
            "minute → last job committed as queued (its transaction's start, `queued_at`) s",
            f"{r.submitted_seconds:.2f}",
        ),
        Figure(section, "minute → all fires recorded s", f"{r.recorded_seconds:.2f}"),
        Figure(
            section,
            "first job row written before the minute (staged ahead) s",
            f"{r.written_before:.1f}",
        ),
        Figure(
            section,
            "scheduler CPU during the burst (with its submitters) s",
            f"{r.burst_cpu_seconds:.2f}",
        ),
        Figure(
            section,
            f"scheduler CPU idle, {r.schedules:,} stored (% of a core, {r.idle_seconds:.0f} s)",
            f"{r.idle_cpu_percent:.2f}",
        ),
    ]
