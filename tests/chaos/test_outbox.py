"""Guarantee 3: a job submitted while the broker is down is accepted into the outbox, and the
relay publishes it once the broker is back — nothing that was answered 202 is lost.

The broker here is a Redis of the test's own, really stopped (not mocked) while jobs are
submitted; event recording uses another Redis, which stays up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.testing.services import wait_for

# Figures measured in the run, printed with -s and kept for the report.
MEASURED: dict[str, float] = {}
# How long the relay leaves a fresh outbox row to the API's own publish (default 5 s).
GRACE = 2.0


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("outbox", own_broker=True, CONVEYOR_OUTBOX_PUBLISH_GRACE=str(GRACE)) as s:
        s.start_worker("outbox", "-c", "2")
        yield s


def test_submit_with_the_broker_down_is_accepted_and_published_when_it_returns(
    stack: Any,
) -> None:
    # The path works while the broker is up, so a failure below is the outage's doing.
    warmup = stack.submit("demo.add", 1, 1)
    stack.until_all([warmup], "succeeded", timeout=30)

    assert stack.broker is not None
    stack.broker.stop()

    ids: list[str] = []
    latencies: list[float] = []
    for i in range(50):
        started = time.monotonic()
        ids.append(stack.submit("demo.add", i, 1000))
        latencies.append(time.monotonic() - started)
    MEASURED["first_202_s"] = latencies[0]
    MEASURED["max_202_s"] = max(latencies)
    MEASURED["mean_202_s"] = sum(latencies) / len(latencies)
    print(
        f"\n202 with the broker down: first {latencies[0] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms, mean {MEASURED['mean_202_s'] * 1000:.0f} ms"
    )
    # Accepted quickly: the API does not wait out a broker that is not there.
    assert max(latencies) < 3.0, latencies

    # Every accepted job is in the ledger, queued, with its outbox row waiting for the relay.
    assert set(stack.states(ids).values()) == {"queued"}
    waiting = stack.sql(
        "SELECT count(*) FROM conveyor_outbox WHERE job_id::text = ANY(:ids)", ids=ids
    )[0][0]
    assert waiting == 50
    # The outage outlasts the publish grace: the relay tries the due rows, fails, keeps them.
    recorder_log = stack.log("recorder")
    wait_for(
        lambda: "outbox: broker unreachable" in recorder_log.read_text(errors="replace"),
        timeout=30,
        message="the outbox relay to try the broker",
    )
    assert stack.sql("SELECT count(*) FROM conveyor_outbox")[0][0] == 50
    assert set(stack.states(ids).values()) == {"queued"}

    back = time.monotonic()
    assert stack.broker.start() == stack.broker_url  # same port: clients keep their URL
    done = stack.until_all(ids, "succeeded", timeout=60)
    MEASURED["recover_s"] = time.monotonic() - back
    print(f"broker back -> all 50 succeeded in {MEASURED['recover_s']:.1f} s")

    assert len(done) == 50
    assert stack.sql("SELECT count(*) FROM conveyor_outbox")[0][0] == 0
    # Published once each, run once each, with the right results.
    rows = stack.sql(
        "SELECT id::text, attempt, result FROM conveyor_jobs WHERE id::text = ANY(:ids)", ids=ids
    )
    assert {attempt for _, attempt, _ in rows} == {1}
    results = {job_id: result for job_id, _, result in rows}
    assert [results[job_id] for job_id in ids] == [i + 1000 for i in range(50)]


def test_outbox_row_is_due_after_the_configured_grace(stack: Any) -> None:
    assert stack.broker is not None
    stack.broker.stop()
    try:
        job_id = stack.submit("demo.add", 2, 2)
        (grace,) = stack.sql(
            "SELECT extract(epoch FROM o.available_at - j.created_at) FROM conveyor_outbox o "
            "JOIN conveyor_jobs j ON j.id = o.job_id WHERE j.id = CAST(:id AS uuid)",
            id=job_id,
        )[0]
    finally:
        stack.broker.start()
    stack.until_all([job_id], "succeeded", timeout=30)
    assert float(grace) == pytest.approx(GRACE, abs=0.5)
