"""Two `conveyor beat` replicas staging fires ahead (``--stage-threshold 1``); the leader is
SIGKILLed after it staged a fire and before its minute. The replica that takes over finds the
staged job by the fire's idempotency key, releases and publishes it: the fire runs once, as the
job the old leader staged — not lost, not doubled."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor.testing.services import Process, wait_for

pytestmark = pytest.mark.broker


def staged(stack: Any, schedule_id: str) -> list[Any]:
    return stack.sql(
        "SELECT j.id::text AS id, j.eta FROM conveyor_jobs j "
        "JOIN conveyor_outbox o ON o.job_id = j.id "
        "WHERE j.schedule_id = :id AND o.available_at = 'infinity'",
        id=schedule_id,
    )


def test_a_new_leader_fires_what_the_killed_one_staged(open_stack: Callable[..., Any]) -> None:
    with open_stack("beatstaged", own_broker=False) as stack:
        stack.start_worker("w1", "-c", "1")
        at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
        beats: dict[int, Process] = {}
        try:
            for n in range(2):
                argv = ["beat", "--no-code", "--stage-threshold", "1"]
                p = Process(argv, stack.env(), stack.log(f"beat-{n}")).start()
                assert p.proc is not None
                beats[p.proc.pid] = p
            r = stack.http.post(
                "/api/v1/schedules",
                json={
                    "name": "once",
                    "task": "demo.add",
                    "args": [4, 5],
                    "queue": stack.queue,
                    "at": at.isoformat(),
                },
            )
            assert r.status_code == 201, r.text
            schedule_id = r.json()["id"]
            (row,) = wait_for(
                lambda: staged(stack, schedule_id), timeout=15, message="the fire staged"
            )
            assert row.eta == at
            (holder,) = stack.sql("SELECT holder FROM conveyor_leases WHERE name = 'scheduler'")
            leader_pid = int(holder.holder.split(":")[1])
            assert datetime.now(UTC) < at  # killed before the minute: nothing published yet
            os.kill(leader_pid, signal.SIGKILL)
            beats[leader_pid].proc.wait(10)  # type: ignore[union-attr]

            def fired() -> list[Any]:
                return stack.sql(
                    "SELECT job_id::text AS job_id, outcome FROM conveyor_schedule_fires "
                    "WHERE schedule_id = :id",
                    id=schedule_id,
                )

            (fire,) = wait_for(fired, timeout=40, message="the fire, by the new leader")
            assert fire.outcome == "submitted" and fire.job_id == row.id
            stack.until_all([row.id], "succeeded", timeout=60)
        finally:
            for p in beats.values():
                p.stop(timeout=10)
        (after,) = stack.sql("SELECT holder FROM conveyor_leases WHERE name = 'scheduler'")
        assert after.holder != holder.holder
        jobs = stack.sql(
            "SELECT id::text AS id FROM conveyor_jobs WHERE schedule_id = :id",
            id=schedule_id,
        )
        assert [j.id for j in jobs] == [row.id]  # one job: the one the old leader staged
        runs = stack.sql(
            "SELECT count(*) AS n FROM conveyor_attempts WHERE job_id = :id", id=row.id
        )
        assert runs[0].n == 1  # published once, run once
