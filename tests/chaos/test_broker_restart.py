"""A broker restarted while jobs flow: workers reconnect by themselves and every job that was
submitted ends `succeeded` — none stranded in the broker, none lost with its restart.

The broker is a Redis of the test's own with its append-only file on, as a production broker
runs; it is stopped with jobs waiting in it and jobs running, and started again on the same
port. Nobody restarts the worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.testing.services import wait_for

MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("broker-restart", own_broker=True) as s:
        s.start_worker("steady", "-c", "2")
        yield s


def test_worker_keeps_consuming_after_the_broker_restarts(stack: Any) -> None:
    before = [stack.submit("demo.sleep", 0.2) for _ in range(10)]
    before += [stack.submit("demo.add", i, i) for i in range(30)]
    # Jobs are flowing: some have run, the rest wait in the broker or are running.
    wait_for(
        lambda: list(stack.states(before).values()).count("succeeded") >= 3,
        timeout=30,
        message="the first jobs to finish",
    )
    assert stack.broker is not None
    stack.broker.stop()
    down_at = time.monotonic()
    at_stop = list(stack.states(before).values())
    # Submitted during the outage: accepted into the outbox.
    during = [stack.submit("demo.add", i, -i) for i in range(10)]
    # Down until the worker has noticed and is in its reconnect loop.
    worker_log = stack.workers["steady"].log_path
    wait_for(
        lambda: "consumer: Cannot connect" in worker_log.read_text(errors="replace"),
        timeout=30,
        message="the worker to notice the broker is gone",
    )
    stack.broker.start()
    MEASURED["outage_s"] = time.monotonic() - down_at
    back = time.monotonic()
    after = [stack.submit("demo.sleep", 0.1) for _ in range(10)]

    stack.until_all(after, "succeeded", timeout=60)
    MEASURED["resume_s"] = time.monotonic() - back
    ids = before + during + after
    # The ones submitted during the outage wait out the outbox's publish grace (5 s).
    stack.until_all(ids, "succeeded", timeout=60)
    MEASURED["recover_s"] = time.monotonic() - back
    print(
        f"\nbroker down {MEASURED['outage_s']:.1f} s; jobs submitted after the restart done in "
        f"{MEASURED['resume_s']:.1f} s, all {len(ids)} in {MEASURED['recover_s']:.1f} s"
    )
    # The restart really happened mid-run: jobs were waiting or running when it went down.
    assert at_stop.count("succeeded") < len(before), at_stop
    unacked = stack.broker_client().hlen("unacked")
    print(f"left in the broker's unacked hash: {unacked}")
    # The same worker did it all: it reconnected by itself.
    workers = {
        w
        for (w,) in stack.sql(
            "SELECT DISTINCT worker FROM conveyor_jobs WHERE id::text = ANY(:ids)", ids=ids
        )
    }
    assert len(workers) == 1 and next(iter(workers)).startswith("steady-")
    assert stack.workers["steady"].proc.poll() is None
