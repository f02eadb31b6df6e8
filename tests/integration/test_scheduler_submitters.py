"""``conveyor beat --submitters N``: a burst of fires submitted by submitter processes, each
fire one job linked to its schedule, and the processes gone when the scheduler stops."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.ledger.schedule_store import ScheduleFilter
from conveyor.runtime.scheduler import Scheduler
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def test_a_burst_through_submitter_processes(client: Any, ledger: Any) -> None:
    svc = client.app.state.services
    for s in svc.schedules.list(ScheduleFilter(retired=None)):
        if not s["paused"]:
            svc.schedules.pause(s["id"], "paused by the submitter test")
    tag = uuid.uuid4().hex[:6]
    ids = [
        svc.schedules.create(
            {"name": f"burst-{tag}-{i}", "task": "demo.add", "args": [i, 1], "every": "1h"}
        )["id"]
        for i in range(40)
    ]
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    with ledger.begin() as conn:
        conn.execute(
            text(
                "UPDATE conveyor_schedules SET next_fire_at = :t "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"t": due, "ids": ids},
        )
    sched = Scheduler(svc.app, svc.engine, import_code=False, submitters=2)
    stop = threading.Event()
    thread = threading.Thread(target=sched.run, args=(stop,), name="test-submitters")
    thread.start()
    try:

        def fired() -> list[Any] | None:
            with ledger.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT f.schedule_id::text AS sid, f.job_id::text AS job_id, "
                        "j.schedule_id::text AS job_schedule, j.args "
                        "FROM conveyor_schedule_fires f JOIN conveyor_jobs j ON j.id = f.job_id "
                        "WHERE f.schedule_id = ANY(CAST(:ids AS uuid[])) AND f.fire_time = :t"
                    ),
                    {"ids": ids, "t": due},
                ).all()
            return list(rows) if len(rows) == len(ids) else None

        rows = wait_for(fired, timeout=60, message="40 fires submitted by the submitters")
        assert sched.pool is not None  # (not fallen back to submitting in-process)
        procs = list(sched.pool._procs)
        assert len(procs) == 2
    finally:
        stop.set()
        thread.join(20)
        with ledger.begin() as conn:
            conn.execute(
                text("DELETE FROM conveyor_schedules WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": ids},
            )
    assert not thread.is_alive()
    assert all(not p.is_alive() for p in procs)
    assert {r.sid for r in rows} == set(ids) and len({r.job_id for r in rows}) == len(ids)
    assert all(r.job_schedule == r.sid for r in rows)
    by_schedule = {r.sid: r.args for r in rows}
    assert [by_schedule[i] for i in ids] == [[i, 1] for i in range(40)]
