"""A delivery is absorbed only when it is a copy of a message that already ran; a new publish
that reuses a task id runs again, as in Celery (#12.4). Real workers, real broker."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conveyor.testing.services import Process, python_last_line, wait_for

pytestmark = pytest.mark.broker


def rows(settings: Any, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        found = conn.execute(text(sql), params).all()
    engine.dispose()
    return list(found)


def job(settings: Any, job_id: str) -> Any:
    found = rows(
        settings,
        "SELECT state, attempt, result FROM conveyor_jobs WHERE id = CAST(:id AS uuid)",
        id=job_id,
    )
    return found[0] if found else None


def attempts(settings: Any, job_id: str) -> list[tuple[int, str | None]]:
    return [
        (r[0], r[1])
        for r in rows(
            settings,
            "SELECT attempt, outcome FROM conveyor_attempts WHERE job_id = CAST(:id AS uuid) "
            "ORDER BY attempt",
            id=job_id,
        )
    ]


@pytest.fixture(scope="module")
def lane(services: Any, client: Any, artifacts: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A queue of this module's own with one single-process worker: what is published to it
    is handled in order, so a job sent last shows when the ones before it were handled."""
    queue = f"redeliver-{os.getpid()}"
    env = {**services.env(), "CONVEYOR_QUEUES": json.dumps([queue, "default"])}
    worker = Process(
        ["worker", "-c", "1", "-n", f"redeliver-{os.getpid()}@%h", "-Q", queue],
        env,
        artifacts / "redeliver-worker.log",
    ).start()
    yield queue, env
    worker.stop()
    if services.settings.broker_url.startswith("amqp"):
        from kombu import Connection

        with Connection(services.settings.broker_url) as conn:
            conn.default_channel.queue_delete(queue)


def send(code: str, env: dict[str, str]) -> str:
    return python_last_line("from conveyor.demo import add, app\n" + code, env)


def handled_up_to_here(queue: str, env: dict[str, str], settings: Any) -> None:
    """Wait until a job sent now to ``queue`` ran: everything sent before it was handled."""
    marker = send(f"print(add.apply_async((0, 0), queue={queue!r}).id)", env)
    wait_for(
        lambda: (j := job(settings, marker)) is not None and j[0] == "succeeded",
        timeout=60,
        message="the marker job behind the others",
    )


def run_once(queue: str, env: dict[str, str], settings: Any) -> str:
    """Publish add(1, 2) with an id of its own and wait until it succeeded; its id."""
    job_id = str(uuid.uuid4())
    send(f"add.apply_async((1, 2), task_id={job_id!r}, queue={queue!r})\nprint('sent')", env)
    wait_for(
        lambda: job(settings, job_id) == ("succeeded", 1, 3),
        timeout=60,
        message="the first run",
    )
    return job_id


def test_apply_twice_with_one_id_runs_twice(services: Any, client: Any) -> None:
    """`apply()` runs the task here, without a message: every call is a run (Celery runs it)."""
    job_id = str(uuid.uuid4())
    out = send(
        "app.finalize()\n"  # as in a worker, or any process that has loaded its tasks
        f"r1 = add.apply(args=(1, 2), task_id={job_id!r})\n"
        f"r2 = add.apply(args=(3, 4), task_id={job_id!r})\n"
        "import json; print(json.dumps([r1.state, r1.result, r2.state, r2.result]))\n",
        services.env(),
    )
    assert json.loads(out) == ["SUCCESS", 3, "SUCCESS", 7]
    wait_for(
        lambda: attempts(services.settings, job_id) == [(1, "succeeded"), (2, "succeeded")],
        timeout=30,
        message="both runs in the ledger",
    )
    assert job(services.settings, job_id) == ("succeeded", 2, 7)


def test_a_new_publish_reusing_a_finished_id_runs_again(
    services: Any, lane: tuple[str, dict[str, str]]
) -> None:
    queue, env = lane
    job_id = run_once(queue, env, services.settings)
    send(f"add.apply_async((20, 22), task_id={job_id!r}, queue={queue!r})\nprint('sent')", env)
    wait_for(
        lambda: job(services.settings, job_id) == ("succeeded", 2, 42),
        timeout=60,
        message="the second publish of the same id to run as attempt 2",
    )
    assert attempts(services.settings, job_id) == [(1, "succeeded"), (2, "succeeded")]


def test_the_same_message_delivered_twice_runs_once(
    services: Any, lane: tuple[str, dict[str, str]]
) -> None:
    """A broker that hands the same message out again (a lost ack, Redis's visibility timeout)
    delivers a copy of one publish: it is dropped once the job ran."""
    queue, env = lane
    job_id = str(uuid.uuid4())
    # One publish through Celery's own path (so Conveyor's publish hook stamps it), then the
    # very same message, headers and all, written to the broker again.
    send(
        "from celery import signals\n"
        "sent = {}\n"
        "signals.after_task_publish.connect(\n"
        "    lambda headers=None, body=None, **kw: sent.update(headers=headers, body=body),\n"
        "    weak=False)\n"
        f"add.apply_async((1, 2), task_id={job_id!r}, queue={queue!r})\n"
        "q = app.amqp.queues[" + repr(queue) + "]\n"
        "with app.producer_or_acquire() as producer:\n"
        "    producer.publish(sent['body'], exchange=q.exchange, routing_key=q.routing_key,\n"
        "                     headers=sent['headers'], serializer='json', declare=[q])\n"
        "print('sent')\n",
        env,
    )
    handled_up_to_here(queue, env, services.settings)
    assert job(services.settings, job_id) == ("succeeded", 1, 3)
    assert attempts(services.settings, job_id) == [(1, "succeeded")]


def test_a_resend_of_a_finished_job_is_dropped(
    services: Any, lane: tuple[str, dict[str, str]], ledger: Any
) -> None:
    """The reconciler re-sends a job it believes lost (through the outbox); if the first
    message did arrive and the job ran, the re-sent copy is dropped."""
    from conveyor.ledger import repository as repo

    queue, env = lane
    job_id = run_once(queue, env, services.settings)
    with ledger.begin() as conn:
        repo.republish(conn, job_id)
    wait_for(
        lambda: (
            not rows(
                services.settings,
                "SELECT 1 FROM conveyor_outbox WHERE job_id = CAST(:id AS uuid)",
                id=job_id,
            )
        ),
        timeout=30,
        message="the outbox relay to re-send the job",
    )
    handled_up_to_here(queue, env, services.settings)
    assert job(services.settings, job_id) == ("succeeded", 1, 3)
    assert attempts(services.settings, job_id) == [(1, "succeeded")]
