"""The reconciler re-sends a queued job whose message is missing from the broker only when the
message was lost: not when Celery purged it, not when the job expired meanwhile (#12.5)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.testing.services import Process, python_last_line, wait_for

pytestmark = pytest.mark.broker


def test_purged_and_expired_jobs_end_visibly_and_are_never_resent(
    services: Any, client: Any, ledger: Any, artifacts: Path
) -> None:
    queue = f"purge-{os.getpid()}"  # no worker consumes it
    env = {
        **services.env(),
        "CONVEYOR_QUEUES": json.dumps([queue, "default"]),
        "CONVEYOR_STALE_QUEUED_AFTER": "3",
    }
    reconciler = Process(["reconcile"], env, artifacts / "purge-reconciler.log").start()
    try:
        ids = json.loads(
            python_last_line(
                "import json, time\n"
                "from conveyor.demo import add, app\n"
                f"q = {queue!r}\n"
                "purged = add.apply_async((1, 1), queue=q).id\n"
                "purged_expiring = add.apply_async((1, 1), queue=q, expires=1).id\n"
                "time.sleep(0.5)\n"
                "app.amqp.queues.select([q])\n"  # purge this queue only, through Celery
                "app.control.purge()\n"
                "time.sleep(0.5)\n"
                "expired = add.apply_async((1, 1), queue=q, expires=1).id\n"
                "lost = add.apply_async((1, 1), queue=q).id\n"
                # Both messages vanish behind Celery's back, as in a broker that lost its data.
                "with app.connection_for_write() as conn:\n"
                "    conn.default_channel.queue_purge(q)\n"
                "print(json.dumps([purged, purged_expiring, expired, lost]))\n",
                env,
            )
        )
        purged, purged_expiring, expired, lost = ids

        def states() -> dict[str, tuple[str, str | None]]:
            with ledger.connect() as conn:
                found = conn.execute(
                    text(
                        "SELECT id::text, state, error_type FROM conveyor_jobs "
                        "WHERE id::text = ANY(:ids)"
                    ),
                    {"ids": ids},
                ).all()
            return {r[0]: (r[1], r[2]) for r in found}

        wait_for(
            lambda: all(states().get(i, ("queued",))[0] == "cancelled" for i in ids[:3]),
            timeout=60,
            message="purged and expired jobs to end",
        )
        wait_for(
            lambda: "republished 1 queued jobs" in reconciler.log(),
            timeout=60,
            message="the lost job to be re-sent",
        )
    finally:
        reconciler.stop()
        if services.settings.broker_url.startswith("amqp"):
            from kombu import Connection

            with Connection(services.settings.broker_url) as conn:
                conn.default_channel.queue_delete(queue)
    found = states()
    assert found[purged] == ("cancelled", "Purged")
    assert found[purged_expiring] == ("cancelled", "Expired")
    assert found[expired] == ("cancelled", "Expired")
    assert found[lost] == ("queued", None)
    assert "republished 1 queued jobs" in reconciler.log()  # the lost one, and only once so far
    with ledger.connect() as conn:
        resent = conn.execute(
            text("SELECT count(*) FROM conveyor_outbox WHERE job_id::text = ANY(:ids)"),
            {"ids": ids[:3]},
        ).scalar()
    assert resent == 0
