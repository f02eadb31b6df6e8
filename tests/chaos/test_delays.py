"""Guarantee 6: a delay longer than the broker's visibility timeout runs once, and on time.

Contrast, plain Celery on Redis: ``apply_async(countdown=25)`` publishes the message at once
with an ``eta`` header; a worker reserves it and holds it unacknowledged until the eta. Kombu's
Redis transport puts a message left unacknowledged longer than ``visibility_timeout`` back in
the queue (``restore_visible``: when any consumer starts, and on every 10th periodic scan), so
the message is delivered a second time and both copies wait for the same eta: the task runs
twice, unless Conveyor's done-marker happens to see the first copy finish before the second
starts. The test does exactly that in the same run, to prove the conditions were met: a second
worker started after the visibility timeout restores the plain ETA message, which is then
delivered twice.

Conveyor holds delayed jobs in PostgreSQL instead (state ``scheduled``, an outbox row due at the
eta) and publishes them when due, so the broker only ever sees a message that runs at once:
under the same conditions each of them is delivered and run exactly once, not before its eta.
Workers here run with ``CONVEYOR_VISIBILITY_TIMEOUT=10``, the smallest allowed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker

VISIBILITY_TIMEOUT = 10
COUNTDOWNS = [15.0, 16.5, 18.0, 20.0]
PLAIN_COUNTDOWN = 25


@pytest.fixture(scope="module")
def stack(open_stack: Any) -> Iterator[Any]:
    with open_stack("delays", own_broker=False) as s:
        s.start_worker("first", "-c", "2", CONVEYOR_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))
        yield s


def deliveries(stack: Any, job_id: str, what: str) -> int:
    """How often the workers logged ``what`` ("received", "succeeded") for a job."""
    pattern = re.compile(rf"\[{job_id}\] {what}")
    return sum(len(pattern.findall(w.log())) for w in stack.workers.values())


def unacked_since(client: Any, job_id: str) -> float | None:
    """When a Redis broker handed the job's message out unacknowledged (epoch s), or None."""
    for tag, raw in client.hgetall("unacked").items():
        if job_id.encode() in raw:
            score = client.zscore("unacked_index", tag)
            return float(score) if score is not None else None
    return None


def test_countdown_past_the_visibility_timeout_runs_exactly_once(stack: Any) -> None:
    on_redis = stack.broker_url.startswith("redis")
    plain: str | None = None
    if on_redis:
        # Plain Celery, from a client process: the broker holds the eta.
        code = (
            "from conveyor.demo import echo\n"
            f"print(echo.apply_async(('plain',), countdown={PLAIN_COUNTDOWN}, "
            f"queue={stack.queue!r}).id)\n"
        )
        plain = python_last_line(code, stack.env())
    ids = [
        stack.submit("demo.echo", f"delay-{n}", countdown=countdown)
        for n, countdown in enumerate(COUNTDOWNS)
    ]

    # Held in PostgreSQL, not in the broker: scheduled, each with an outbox row due at its eta.
    assert set(stack.states(ids).values()) == {"scheduled"}
    outbox = stack.sql(
        "SELECT o.job_id::text, o.available_at = j.eta FROM conveyor_outbox o "
        "JOIN conveyor_jobs j ON j.id = o.job_id WHERE j.id::text = ANY(:ids)",
        ids=ids,
    )
    assert sorted(outbox) == sorted((job_id, True) for job_id in ids)
    assert stack.queue_depth() == 0

    if plain is not None:
        # Once the plain message has been unacknowledged past the visibility timeout, a worker
        # that starts puts it back in the queue: the redelivery plain Celery suffers.
        client = stack.broker_client()
        wait_for(
            lambda: (
                (since := unacked_since(client, plain)) is not None
                and time.time() - since > VISIBILITY_TIMEOUT + 0.5
            ),
            timeout=PLAIN_COUNTDOWN,
            interval=0.2,
            message="the plain ETA message to outlive the visibility timeout",
        )
    # A second worker, started after the visibility timeout: on Redis it restores what the
    # first one holds unacknowledged.
    stack.start_worker("second", "-c", "2", CONVEYOR_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))

    stack.until_all(ids, "succeeded", timeout=max(COUNTDOWNS) + 30)
    for n, job_id in enumerate(ids):
        job = stack.job(job_id)
        eta = datetime.fromisoformat(job["eta"])
        started = datetime.fromisoformat(job["started_at"])
        assert started >= eta, f"job {n} started {eta - started} before its eta"
        assert job["attempt"] == 1
        assert [a["outcome"] for a in job["attempts"]] == ["succeeded"]
        result = stack.http.get(f"/api/v1/jobs/{job_id}/result").json()["result"]
        assert result == {"args": [f"delay-{n}"], "kwargs": {}}
        # Delivered once and run once: a redelivered message would show up as a second
        # "received" even if the duplicate were then dropped.
        assert deliveries(stack, job_id, "received") == 1
        assert deliveries(stack, job_id, "succeeded") == 1
        print(f"\njob {n}: countdown {COUNTDOWNS[n]:g} s, started {started - eta} after its eta")

    if plain is not None:
        wait_for(
            lambda: deliveries(stack, plain, "received") >= 2,
            timeout=PLAIN_COUNTDOWN,
            message="the plain ETA message's redelivery",
        )
        stack.until_all([plain], "succeeded", timeout=PLAIN_COUNTDOWN + 15)
        runs = deliveries(stack, plain, "succeeded")
        attempts = [a["outcome"] for a in stack.job(plain)["attempts"]]
        print(
            f"plain Celery countdown={PLAIN_COUNTDOWN}: delivered "
            f"{deliveries(stack, plain, 'received')}x, ran {runs}x, ledger attempts "
            f"{json.dumps(attempts)}"
        )

    # Nothing is left anywhere in the broker that could come back later.
    assert stack.queue_depth() == 0
    if on_redis:
        client = stack.broker_client()
        wait_for(
            lambda: not any(stack.queue.encode() in raw for raw in client.hvals("unacked")),
            timeout=10,
            message="every message of the queue to be acknowledged",
        )
    assert stack.sql("SELECT count(*) FROM conveyor_outbox")[0][0] == 0
