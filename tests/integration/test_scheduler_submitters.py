"""Submitter processes: a burst of fires submitted by them, each fire one job linked to its
schedule, and the processes gone when the scheduler stops. ``conveyor beat --submitters N``
starts a fixed pool; ``auto`` (the default) starts one only ahead of a burst, as leader, and
closes it after a quiet while."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.ledger import schedule_store as store
from conveyor.ledger.schedule_store import ScheduleFilter
from conveyor.runtime.scheduler import Scheduler
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def _burst(svc: Any, ledger: Any, n: int, due: datetime) -> list[str]:
    """``n`` hourly schedules all next due at ``due``, every other schedule paused."""
    for s in svc.schedules.list(ScheduleFilter(retired=None)):
        if not s["paused"]:
            svc.schedules.pause(s["id"], "paused by the submitter test")
    tag = uuid.uuid4().hex[:6]
    ids = [
        svc.schedules.create(
            {"name": f"burst-{tag}-{i}", "task": "demo.add", "args": [i, 1], "every": "1h"}
        )["id"]
        for i in range(n)
    ]
    with ledger.begin() as conn:
        conn.execute(
            text(
                "UPDATE conveyor_schedules SET next_fire_at = :t "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"t": due, "ids": ids},
        )
    return ids


def _drop(ledger: Any, ids: list[str]) -> None:
    with ledger.begin() as conn:
        conn.execute(
            text("DELETE FROM conveyor_schedules WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        )


@contextmanager
def _running(sched: Scheduler) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=sched.run, args=(stop,), name="test-submitters")
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def _fired(ledger: Any, ids: list[str], due: datetime) -> list[Any]:
    """The fires of ``ids`` at ``due`` with their jobs, once all are there (else [])."""
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
    return list(rows) if len(rows) == len(ids) else []


def _submitted_once(ledger: Any, ids: list[str], rows: list[Any]) -> None:
    """One fire and one job per schedule, the job linked to it, with its arguments."""
    assert {r.sid for r in rows} == set(ids) and len({r.job_id for r in rows}) == len(ids)
    assert all(r.job_schedule == r.sid for r in rows)
    by_schedule = {r.sid: r.args for r in rows}
    assert [by_schedule[i] for i in ids] == [[i, 1] for i in range(len(ids))]
    with ledger.connect() as conn:
        jobs = conn.execute(
            text(
                "SELECT count(*) FROM conveyor_jobs WHERE schedule_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        ).scalar_one()
    assert jobs == len(ids)


def test_a_burst_through_submitter_processes(client: Any, ledger: Any) -> None:
    svc = client.app.state.services
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    ids = _burst(svc, ledger, 40, due)
    sched = Scheduler(svc.app, svc.engine, import_code=False, submitters=2)
    try:
        with _running(sched):
            rows = wait_for(
                lambda: _fired(ledger, ids, due), 60, message="40 fires submitted by submitters"
            )
            assert sched.pool is not None  # (not fallen back to submitting in-process)
            procs = list(sched.pool._procs)
            assert len(procs) == 2
    finally:
        _drop(ledger, ids)
    assert all(not p.is_alive() for p in procs)
    assert sched.pooled_fires == 40
    _submitted_once(ledger, ids, rows)


def test_auto_starts_the_pool_ahead_of_a_burst_and_closes_it_when_quiet(
    client: Any, ledger: Any
) -> None:
    svc = client.app.state.services
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=15)
    ids = _burst(svc, ledger, 40, due)
    sched = Scheduler(
        svc.app,
        svc.engine,
        import_code=False,
        auto_threshold=40,
        auto_idle=1.0,
        auto_check=0.2,
        stage_threshold=0,  # (with staging, auto starts no pool: the burst is staged)
    )
    assert sched.submitters == "auto"
    try:
        with _running(sched):
            pool = wait_for(lambda: sched.pool, 10, message="the pool started")
            assert datetime.now(UTC) < due  # started ahead of the burst
            procs = list(pool._procs)
            wait_for(pool.ready, 30, message="the submitters up")
            rows = wait_for(lambda: _fired(ledger, ids, due), 60, message="40 fires submitted")
            # Fired, the schedules are next due in an hour: no burst coming, the pool goes.
            wait_for(lambda: sched.pool is None, 20, message="the pool closed when quiet")
            assert all(not p.is_alive() for p in procs)
            assert sched.pools_started == 1
    finally:
        _drop(ledger, ids)
    assert sched.pooled_fires == 40  # the burst went through the pool started ahead of it
    _submitted_once(ledger, ids, rows)


def test_auto_starts_no_pool_for_a_few_fires(client: Any, ledger: Any) -> None:
    svc = client.app.state.services
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    ids = _burst(svc, ledger, 5, due)
    sched = Scheduler(
        svc.app, svc.engine, import_code=False, auto_threshold=6, auto_check=0.2, stage_threshold=0
    )
    try:
        with _running(sched):
            rows = wait_for(lambda: _fired(ledger, ids, due), 60, message="5 fires submitted")
            assert sched.pool is None
    finally:
        _drop(ledger, ids)
    assert sched.pools_started == 0 and sched.pooled_fires == 0
    _submitted_once(ledger, ids, rows)


def test_auto_starts_the_pool_only_as_leader(client: Any, ledger: Any) -> None:
    svc = client.app.state.services
    due = datetime.now(UTC) + timedelta(seconds=20)
    ids = _burst(svc, ledger, 10, due)
    sched = Scheduler(
        svc.app, svc.engine, import_code=False, auto_threshold=10, auto_check=0.0, stage_threshold=0
    )
    other = f"other-{uuid.uuid4().hex[:6]}"
    try:
        with ledger.begin() as conn:
            assert store.take_lease(conn, store.SCHEDULER_LEASE, other, 30.0) is not None
        sched.keep_lease()
        assert not sched.leader
        sched.size_pool()
        assert sched.pool is None  # a burst is coming, but another scheduler leads
        with ledger.begin() as conn:
            store.release_lease(conn, store.SCHEDULER_LEASE, other)
        sched.keep_lease()
        assert sched.leader
        sched.size_pool()
        assert sched.pool is not None
        procs = list(sched.pool._procs)
        sched.release()  # no longer leading: the pool goes at once
        sched.size_pool()
        assert sched.pool is None
        assert all(not p.is_alive() for p in procs)
    finally:
        sched.release()
        if sched.pool is not None:
            sched.pool.close()
        sched.control.close()
        _drop(ledger, ids)
