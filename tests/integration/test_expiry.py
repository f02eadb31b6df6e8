"""A task sent with `expires` that waited past it never runs, ends REVOKED in the result backend
(so `.get()` raises instead of hanging) and `cancelled` ("Expired") in the ledger (#12.8).

Run on RabbitMQ too (`CONVEYOR_TEST_BROKER_URL=amqp://…`): there the broker itself used to drop
the waiting message at its `expiration`, so no worker ever saw it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.testing.services import Process, python_last_line, wait_for

pytestmark = pytest.mark.broker


def test_a_task_that_expired_while_queued_ends_revoked_and_expired(
    services: Any, client: Any, ledger: Any, artifacts: Path
) -> None:
    queue = f"expiry-{os.getpid()}"
    env = {
        **services.env(),
        "CONVEYOR_QUEUES": json.dumps([queue, "default"]),
        "CONVEYOR_STORE_RESULTS": "true",  # a result backend that `.get()` reads, as apps have
    }
    worker = Process(
        ["worker", "-c", "1", "-n", f"expiry-{os.getpid()}@%h", "-Q", queue],
        env,
        artifacts / "expiry-worker.log",
    ).start()
    try:
        # As Celery's own t/integration test_expired: the worker is busy for a while, and the
        # task behind its work may wait 1 s at most.
        out = python_last_line(
            "import json\n"
            "from celery.exceptions import TaskRevokedError\n"
            "from conveyor.demo import add, sleep\n"
            f"for _ in range(3): sleep.apply_async((2,), queue={queue!r})\n"
            f"r = add.apply_async((1, 1), expires=1, queue={queue!r})\n"
            "try:\n"
            "    outcome = ['ran', r.get(timeout=90)]\n"
            "except TaskRevokedError:\n"
            "    outcome = [r.status, None]\n"
            "except Exception as exc:\n"
            "    outcome = [type(exc).__name__, str(exc)]\n"
            "print(json.dumps([r.id, *outcome]))\n",
            env,
            timeout=150,
        )
    finally:
        worker.stop()
        if services.settings.broker_url.startswith("amqp"):
            from kombu import Connection

            with Connection(services.settings.broker_url) as conn:
                conn.default_channel.queue_delete(queue)
    job_id, status, detail = json.loads(out)
    assert (status, detail) == ("REVOKED", None)

    def recorded() -> Any:
        with ledger.connect() as conn:
            return conn.execute(
                text(
                    "SELECT state, error_type, started_at FROM conveyor_jobs "
                    "WHERE id = CAST(:id AS uuid)"
                ),
                {"id": job_id},
            ).first()

    row = wait_for(
        lambda: (r := recorded()) is not None and r[0] != "queued" and r,
        timeout=30,
        message="the expired job's end in the ledger",
    )
    assert (row[0], row[1], row[2]) == ("cancelled", "Expired", None)
