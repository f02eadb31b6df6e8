"""A worker killed with its whole process tree, then started again under the same name (what
`conveyor up`, systemd or a plain `celery worker` restart do after a crash).

The new process refreshes the same heartbeat name at once, so liveness by name alone would call
the dead worker alive forever and leave its jobs `running`. Liveness is per incarnation: a job
that started before the worker now beating under its name was born belonged to a predecessor,
and is recovered — exactly once: the dead incarnation's unacknowledged messages are dropped
from Redis when the job is put back in line, so no copy of them comes back to run again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from conveyor.testing.app import EFFECTS_DDL
from conveyor.testing.services import Process, wait_for

pytestmark = pytest.mark.broker

JOBS = 8
CONCURRENCY = 4


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    # The default heartbeat interval: the dead worker's name would be judged silent only after
    # three intervals, long after the restarted worker has refreshed it.
    intervals = {"CONVEYOR_HEARTBEAT_INTERVAL": "5", "CONVEYOR_RECONCILE_INTERVAL": "1"}
    with open_stack("restart", own_broker=False, **intervals) as s:
        yield s


def kill_tree(proc: Process) -> None:
    """SIGKILL the worker and every process under it at once, as `kill -9 -PGID` does."""
    assert proc.proc is not None
    tree = [psutil.Process(proc.proc.pid), *psutil.Process(proc.proc.pid).children(recursive=True)]
    for p in tree:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    proc.proc.wait(timeout=10)
    proc.proc = None


def start_named(stack: Any, hostname: str, log: str) -> Process:
    args = ["worker", "-c", str(CONCURRENCY), "-n", hostname]
    return Process(args, stack.env(), stack.log(log)).start()


def test_jobs_of_a_crashed_worker_are_recovered_after_a_same_name_restart(stack: Any) -> None:
    assert stack.engine is not None
    with stack.engine.begin() as conn:
        conn.exec_driver_sql(EFFECTS_DDL)
    hostname = f"w1-{stack.queue}@chaos"
    first = start_named(stack, hostname, "worker-first")
    second: Process | None = None
    try:
        ids = [stack.submit("testing.effect", n, kwargs={"seconds": 3}) for n in range(JOBS)]

        def four_running() -> bool:
            return list(stack.states(ids).values()).count("running") == CONCURRENCY

        wait_for(four_running, timeout=60, interval=0.1, message="four jobs running")
        interrupted = [i for i, s in stack.states(ids).items() if s == "running"]
        kill_tree(first)
        second = start_named(stack, hostname, "worker-second")

        done = stack.until_all(ids, "succeeded", timeout=90)
        assert len(done) == JOBS
        for job_id in interrupted:
            job = stack.job(job_id)
            outcomes = [a["outcome"] for a in job["attempts"]]
            assert outcomes[-1] == "succeeded" and "lost" in outcomes, (job_id, job["attempts"])
            assert outcomes.count("succeeded") == 1, (job_id, job["attempts"])
        # Every effect landed exactly once, and nothing of the dead incarnation is left to come
        # back later: on Redis its unacknowledged messages are gone.
        applied = dict(stack.sql("SELECT job_id::text, applications FROM testing_effects"))
        assert applied == dict.fromkeys(ids, 1)
        if stack.broker_url.startswith("redis"):
            client = stack.broker_client()
            wait_for(lambda: client.hlen("unacked") == 0, timeout=10, message="no unacked")
        time.sleep(2)  # a late duplicate would show here
        applied = dict(stack.sql("SELECT job_id::text, applications FROM testing_effects"))
        assert applied == dict.fromkeys(ids, 1)
    finally:
        if first.proc is not None:
            first.stop()
        if second is not None:
            second.stop()
