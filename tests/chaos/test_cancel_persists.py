"""A cancelled job that was waiting never runs: not after its workers restart, and not even
after Redis lost the cancel flag (the reconciler puts it back from the ledger)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from conveyor.ledger import events as ev
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Any:
    with open_stack("cancel", own_broker=False) as stack:
        stack.restart_recorder(CONVEYOR_CANCEL_RESEED_INTERVAL="1")
        yield stack


def test_cancelled_queued_jobs_never_run_after_workers_restart(stack: Any) -> None:
    stack.start_worker("first", "-c", "1")
    stack.stop_worker("first")  # no worker: the jobs below wait in the broker
    keep = stack.submit("demo.add", 1, 1)
    cancelled = [stack.submit("demo.add", 2, i) for i in range(5)]
    for job_id in cancelled:
        assert stack.http.post(f"/api/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"
    # Redis forgets two of the flags (a restart without persistence, an eviction).
    events = redis.Redis.from_url(stack.redis_url)
    events.delete(*(ev.CANCEL_KEY + j for j in cancelled[:2]))
    wait_for(
        lambda: all(events.exists(ev.CANCEL_KEY + j) for j in cancelled),
        timeout=15,
        message="the reconciler to re-seed the lost cancel flags",
    )
    stack.start_worker("second", "-c", "1")
    stack.until_all([keep], "succeeded", timeout=30)
    time.sleep(1.0)  # the cancelled messages were delivered around the same time
    assert set(stack.states(cancelled).values()) == {"cancelled"}
    attempts = stack.sql(
        "SELECT count(*) FROM conveyor_attempts WHERE job_id::text = ANY(:ids)", ids=cancelled
    )
    assert attempts[0][0] == 0, "a cancelled job ran"
    assert stack.queue_depth() == 0  # their messages were consumed and dropped
