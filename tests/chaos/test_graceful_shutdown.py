"""SIGTERM to a worker in the middle of a job (a deploy, a scale-down): a warm shutdown.

The running job finishes and is recorded `succeeded`, the worker exits on its own, and the jobs
still waiting stay in the broker — not run, not lost, not stuck in a dead worker's hands — and
run as soon as another worker starts.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("graceful", own_broker=False) as s:
        yield s


def test_sigterm_finishes_the_running_job_and_leaves_the_queue_intact(stack: Any) -> None:
    # One process, prefetch 1, acks late: while a job runs, nothing else is taken off the queue.
    old = stack.start_worker("old", "-c", "1")
    running = stack.submit("demo.sleep", 3)
    wait_for(
        lambda: stack.states([running])[running] == "running", timeout=30, message="job running"
    )
    waiting = [stack.submit("demo.add", i, 100) for i in range(5)]
    wait_for(lambda: stack.queue_depth() == 5, timeout=10, message="5 messages in the broker")

    assert old.proc is not None
    sent = time.monotonic()
    old.proc.send_signal(signal.SIGTERM)
    try:
        code = old.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within 30 s of SIGTERM; see {old.log_path}")
    MEASURED["exit_after_sigterm_s"] = time.monotonic() - sent
    print(f"\nworker exited {MEASURED['exit_after_sigterm_s']:.1f} s after SIGTERM (code {code})")
    assert code == 0
    assert "Warm shutdown" in old.log()

    # The running job was allowed to finish, and is recorded as such.
    stack.until_all([running], "succeeded", timeout=15)
    job = stack.job(running)
    assert job["attempt"] == 1 and [a["outcome"] for a in job["attempts"]] == ["succeeded"]
    finished = datetime.fromisoformat(job["finished_at"]).timestamp()
    started = datetime.fromisoformat(job["started_at"]).timestamp()
    assert finished - started >= 3.0
    # The waiting ones were neither run nor taken: still queued, still in the broker.
    assert set(stack.states(waiting).values()) == {"queued"}
    wait_for(lambda: stack.queue_depth() == 5, timeout=10, message="5 messages still in the broker")
    assert not any(f"[{job_id}] received" in old.log() for job_id in waiting)

    new_at = time.monotonic()
    stack.start_worker("new", "-c", "1")
    stack.until_all(waiting, "succeeded", timeout=30)
    print(f"a new worker ran the 5 waiting jobs {time.monotonic() - new_at:.1f} s after start")
    for n, job_id in enumerate(waiting):
        job = stack.job(job_id)
        assert job["worker"].startswith("new-") and job["attempt"] == 1
        assert stack.http.get(f"/api/v1/jobs/{job_id}/result").json()["result"] == n + 100
    assert stack.queue_depth() == 0
