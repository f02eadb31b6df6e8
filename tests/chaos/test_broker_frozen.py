"""A broker that hangs instead of refusing: it accepts connections and never answers.

That is what a network partition, a failover behind a load balancer or an overloaded Redis look
like to a client, and it is harder than a broker that is down: nothing fails, every call just
waits. It is made real here by stopping the broker's process with SIGSTOP (the kernel still
accepts connections for it) and resumed with SIGCONT.

- ``/readyz`` must still answer, 503 naming the broker, within a few seconds.
- ``POST /jobs`` must still answer 202 (the outbox takes the job) within a bounded time, and the
  job must run once the broker answers again (guarantee 3).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conveyor.testing.services import wait_for

# How long a submit may take against a hanging broker: a few socket timeouts, not forever.
SUBMIT_BOUND = 12.0


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("broker-frozen", own_broker=True) as s:
        s.start_worker("frozen", "-c", "2")
        yield s


@contextmanager
def frozen(stack: Any) -> Iterator[None]:
    assert stack.broker is not None and stack.broker.pid is not None
    pid = stack.broker.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_readyz_answers_503_while_the_broker_hangs(stack: Any) -> None:
    assert stack.http.get("/readyz").status_code == 200
    with frozen(stack):
        started = time.monotonic()
        ready = stack.http.get("/readyz", timeout=15)
        took = time.monotonic() - started
    print(f"\n/readyz with the broker hanging: {ready.status_code} in {took:.1f} s")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["broker"] != "ok" and checks["postgres"] == "ok" and checks["redis"] == "ok"
    assert took < 5.0
    wait_for(
        lambda: stack.http.get("/readyz").status_code == 200,
        timeout=15,
        message="readiness once the broker answers again",
    )


def test_submit_is_accepted_in_bounded_time_while_the_broker_hangs(stack: Any) -> None:
    with frozen(stack):
        started = time.monotonic()
        r = stack.http.post(
            "/api/v1/jobs", json={"task": "demo.add", "args": [20, 22]}, timeout=SUBMIT_BOUND
        )
        took = time.monotonic() - started
        print(f"\nPOST /jobs with the broker hanging: {r.status_code} in {took:.1f} s")
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert stack.states([job_id]) == {job_id: "queued"}
    # Published by the relay (or by the API's own late write, which the broker executes when
    # it resumes; a second delivery is absorbed or run again: at least once).
    stack.until_all([job_id], "succeeded", timeout=60)
    assert stack.http.get(f"/api/v1/jobs/{job_id}/result").json()["result"] == 42
