"""The chaos run: thousands of jobs while workers are SIGKILLed every few seconds and the
broker is restarted once. Every job must end, none may be stuck, and each job's side effect
(an upsert keyed by job id) must land once — duplicate deliveries are absorbed by the key and
counted. The figures go to artifacts/chaos-run.json."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from conveyor.testing.app import EFFECTS_DDL
from conveyor.testing.services import wait_for

JOBS = int(os.environ.get("CONVEYOR_CHAOS_JOBS", "2000"))
KILL_EVERY = 3.0


def kill_hard(worker: Any) -> None:
    """SIGKILL a worker and its pool processes at once, as an OOM killer or a lost VM would."""
    assert worker.proc is not None
    tree = [psutil.Process(worker.proc.pid), *psutil.Process(worker.proc.pid).children(True)]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(tree, timeout=10)
    worker.proc = None


def test_chaos_run(open_stack: Any, artifacts: Path) -> None:
    with open_stack("run", own_broker=True) as stack:
        overrides = {"CONVEYOR_VISIBILITY_TIMEOUT": "20", "CONVEYOR_STALE_QUEUED_AFTER": "15"}
        # The recorder (with the reconciler) must know the short stale-queued window too.
        stack.restart_recorder(**overrides)
        assert stack.engine is not None
        with stack.engine.begin() as conn:
            conn.execute(text(EFFECTS_DDL))
        names = ["a", "b"]
        for name in names:
            stack.start_worker(name, "-c", "2", **overrides)
        started = time.monotonic()
        kills = 0
        broker_restarts = 0
        stop = threading.Event()

        def chaos() -> None:
            # From the first submit until every job has ended: one worker SIGKILLed every few
            # seconds (its jobs die mid-run), and the broker restarted once along the way.
            nonlocal kills, broker_restarts
            turn = 0
            while not stop.wait(KILL_EVERY):
                name = names[turn % len(names)]
                turn += 1
                kill_hard(stack.workers.pop(name))
                kills += 1
                stack.start_worker(name, "-c", "2", **overrides)
                if kills == 3:
                    assert stack.broker is not None
                    stack.broker.stop()
                    time.sleep(1.0)
                    stack.broker.start()
                    broker_restarts += 1

        killer = threading.Thread(target=chaos, name="chaos")
        killer.start()
        try:

            def submit(n: int) -> str:
                return str(stack.submit("testing.effect", n, kwargs={"seconds": 0.05}))

            with ThreadPoolExecutor(max_workers=8) as pool:
                ids = list(pool.map(submit, range(JOBS)))
            assert len(set(ids)) == JOBS
            submitted = time.monotonic() - started

            def drained() -> bool:
                rows = stack.sql(
                    "SELECT count(*) FROM conveyor_jobs WHERE state IN "
                    "('succeeded','failed','cancelled','dead')"
                )
                return rows[0][0] >= JOBS and kills >= 4

            wait_for(drained, timeout=600, interval=0.5, message="every chaos job to end")
        finally:
            stop.set()
            killer.join(timeout=60)
        drain_seconds = time.monotonic() - started

        states = dict(stack.sql("SELECT state, count(*) FROM conveyor_jobs GROUP BY state"))
        effects = stack.sql(
            "SELECT count(*), coalesce(sum(applications - 1), 0), "
            "count(*) FILTER (WHERE applications > 1) FROM testing_effects"
        )
        applied, duplicates, jobs_with_duplicates = effects[0]
        attempts = dict(
            stack.sql("SELECT outcome, count(*) FROM conveyor_attempts GROUP BY outcome")
        )
        figures = {
            "jobs": JOBS,
            "worker_kills": kills,
            "broker_restarts": broker_restarts,
            "states": states,
            "effects_applied": applied,
            "duplicate_deliveries_absorbed": duplicates,
            "jobs_delivered_more_than_once": jobs_with_duplicates,
            "attempt_outcomes": attempts,
            "submit_seconds": round(submitted, 1),
            "drain_seconds": round(drain_seconds, 1),
        }
        (artifacts / "chaos-run.json").write_text(json.dumps(figures, indent=2, default=str))
        print(json.dumps(figures, default=str))

        assert kills >= 4 and broker_restarts == 1
        assert attempts.get("lost", 0) > 0, "no kill landed on a running job"
        assert states == {"succeeded": JOBS}, figures
        assert applied == JOBS, figures  # every job's effect landed, keyed by its id: once
        stuck = stack.sql(
            "SELECT count(*) FROM conveyor_jobs WHERE state NOT IN "
            "('succeeded','failed','cancelled','dead')"
        )
        assert stuck[0][0] == 0
