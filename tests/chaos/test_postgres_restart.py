"""PostgreSQL stopped while jobs run, then started again.

While it is down the API answers 503 with a JSON message that names the ledger (it neither
hangs nor answers 500), ``/readyz`` says which store is missing, and workers keep running jobs:
their events wait in Redis. When it is back (same port, so every client keeps its URL) the API
recovers by itself and the recorder writes the final states it could not write before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conveyor.api.errors import LEDGER_DOWN
from conveyor.ledger import events as ev
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("postgres-restart", own_broker=False) as s:
        s.start_worker("pg", "-c", "2")
        yield s


def done_on_workers(client: redis.Redis, ids: list[str]) -> int:
    """Jobs whose worker recorded an end (in Redis: the recorder's part is still to come)."""
    return sum(client.exists(ev.DONE_KEY + job_id) for job_id in ids)


def timed(fn: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn()
    return value, time.monotonic() - started


def test_postgres_outage_is_503_and_nothing_recorded_is_lost(stack: Any) -> None:
    events = redis.Redis.from_url(stack.redis_url)
    known = stack.submit("demo.add", 2, 3)
    stack.until_all([known], "succeeded", timeout=30)

    ids = [stack.submit("demo.sleep", 0.8) for _ in range(8)]
    ids += [stack.submit("demo.add", i, i) for i in range(8)]
    wait_for(lambda: "running" in stack.states(ids).values(), timeout=30, message="a job running")
    stack.postgres.stop()
    done_at_stop = done_on_workers(events, ids)
    assert done_at_stop < len(ids)  # the rest of the work happens during the outage

    # Reads and writes: a prompt 503 with a message, not a hang and not a 500.
    got, read_s = timed(lambda: stack.http.get(f"/api/v1/jobs/{known}"))
    assert got.status_code == 503, got.text
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers.get("retry-after")
    posted, write_s = timed(lambda: stack.http.post("/api/v1/jobs", json={"task": "demo.noop"}))
    assert posted.status_code == 503, posted.text
    # One message whichever path noticed; the server's address stays in the API's log.
    assert posted.json() == got.json() == {"detail": LEDGER_DOWN, "error": "LedgerUnavailable"}
    listed = stack.http.get("/api/v1/jobs")
    assert listed.status_code == 503, listed.text
    ready, ready_s = timed(lambda: stack.http.get("/readyz"))
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["postgres"] != "ok" and checks["redis"] == "ok" and checks["broker"] == "ok"
    MEASURED.update(read_503_s=read_s, write_503_s=write_s, readyz_s=ready_s)
    print(
        f"\nPostgreSQL down: GET job 503 in {read_s * 1000:.0f} ms, POST 503 in "
        f"{write_s * 1000:.0f} ms, /readyz 503 in {ready_s * 1000:.0f} ms ({checks['postgres']})"
    )
    assert max(read_s, write_s, ready_s) < 5.0

    # Workers go on: every job ends on its worker, its events waiting in the Redis stream.
    wait_for(
        lambda: done_on_workers(events, ids) == len(ids),
        timeout=60,
        message="the workers to finish every job while PostgreSQL is down",
    )
    assert events.xlen(ev.STREAM) > 0

    back = time.monotonic()
    assert stack.postgres.start() == stack.database_url
    wait_for(
        lambda: stack.http.get(f"/api/v1/jobs/{known}").status_code == 200,
        timeout=30,
        message="the API to recover",
    )
    MEASURED["api_recover_s"] = time.monotonic() - back
    stack.until_all(ids, "succeeded", timeout=60)
    MEASURED["ledger_recover_s"] = time.monotonic() - back
    print(
        f"PostgreSQL back: API 200 after {MEASURED['api_recover_s']:.1f} s, every final "
        f"state in the ledger after {MEASURED['ledger_recover_s']:.1f} s"
    )
    assert stack.http.get("/readyz").status_code == 200
    # Recorded completely: an attempt each, with its result.
    rows = stack.sql(
        "SELECT j.attempt, j.result IS NOT NULL, a.outcome FROM conveyor_jobs j "
        "JOIN conveyor_attempts a ON a.job_id = j.id WHERE j.id::text = ANY(:ids)",
        ids=ids,
    )
    assert len(rows) == len(ids)
    assert set(rows) == {(1, True, "succeeded")}
    # And it takes new work again.
    again = stack.submit("demo.add", 40, 2)
    stack.until_all([again], "succeeded", timeout=30)
    wait_for(lambda: events.xlen(ev.STREAM) == 0, timeout=10, message="the stream to drain")
