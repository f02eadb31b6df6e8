"""Fires staged ahead of their minute (``runtime.staging``), into a real worker: the staged job
row is the fire's job, released at the minute; an edit, pause, delete or reset-to-code between
staging and the fire is honoured; overlap policies are evaluated at fire time (the overlap tests
of ``test_scheduler`` run again here, with every fire staged); skipped fires leave no staged
row behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from test_scheduler import (  # the same behaviour, with every fire staged ahead
    create,
    fires,
    leading,
    test_max_runs_and_end,
    test_overlap_allow_all_runs_side_by_side,
    test_overlap_buffer_one,
    test_overlap_cancel_previous,
    test_overlap_skip,
)

from conveyor.runtime.code_schedules import code_schedules, entry_spec
from conveyor.runtime.scheduler import Scheduler
from conveyor.schedules import fire_key
from conveyor.testing.services import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("fresh_schedules")]

__all__ = [
    "test_max_runs_and_end",
    "test_overlap_allow_all_runs_side_by_side",
    "test_overlap_buffer_one",
    "test_overlap_cancel_previous",
    "test_overlap_skip",
]

BASE = "/api/v1/schedules"


@pytest.fixture(scope="module")
def svc(client: Any) -> Any:
    return client.app.state.services


@pytest.fixture(scope="module")
def scheduler(svc: Any, ledger: Any) -> Iterator[Scheduler]:
    """A leader that stages every fire (threshold 1) within its look-ahead, looking every
    0.1 s, even a second before a fire; other schedules paused (see test_scheduler)."""
    with leading(svc, stage_threshold=1, stage_quiet=0.0, auto_check=0.1) as sched:
        yield sched
    with ledger.begin() as conn:  # (fresh_schedules deletes schedules with SQL, not the service)
        conn.execute(
            text(
                "DELETE FROM conveyor_jobs j USING conveyor_outbox o WHERE o.job_id = j.id "
                "AND o.available_at = 'infinity'"
            )
        )


def staged(ledger: Any, schedule_id: str) -> list[Any]:
    """The schedule's staged jobs (scheduled, outbox row never due)."""
    with ledger.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT j.id::text AS id, j.state, j.eta, j.args, j.kwargs, j.idempotency_key "
                    "FROM conveyor_jobs j JOIN conveyor_outbox o ON o.job_id = j.id "
                    "WHERE j.schedule_id = :id AND o.available_at = 'infinity' ORDER BY j.eta"
                ),
                {"id": schedule_id},
            ).all()
        )


def job(ledger: Any, job_id: str) -> Any:
    with ledger.connect() as conn:
        return conn.execute(
            text("SELECT id::text AS id, state, args, kwargs FROM conveyor_jobs WHERE id = :id"),
            {"id": job_id},
        ).one_or_none()


def _at(seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)


def test_a_staged_fire_is_the_fires_job_released_at_its_time(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    at = _at(4)
    s = create(client, at=at.isoformat(), task="demo.add", args=[2, 3])
    (row,) = wait_for(lambda: staged(ledger, s["id"]), timeout=10, message="the staged fire")
    # Before its time: a scheduled job of the schedule, due at the fire time, listed as such.
    assert row.state == "scheduled" and row.eta == at
    assert row.idempotency_key == fire_key(s["id"], at)
    listed = client.get("/api/v1/jobs", params={"schedule": s["id"]}).json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert [(j["id"], j["state"]) for j in items] == [(row.id, "scheduled")]
    assert not fires(ledger, s["id"])
    # At its time: released, run once, and it is the fire's job.
    (fire,) = wait_for(lambda: fires(ledger, s["id"]), timeout=15, message="the fire")
    assert fire.outcome == "submitted" and fire.job_id == row.id and fire.fire_time == at
    wait_for(lambda: job(ledger, row.id).state == "succeeded", timeout=30, message="its run")
    assert staged(ledger, s["id"]) == []
    assert scheduler.stager.released_total >= 1
    assert scheduler.stager.ready_total >= 1  # (nothing in its way: released before planning)
    with ledger.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM conveyor_outbox WHERE job_id = :id"), {"id": row.id}
        ).scalar()
    assert left == 0  # published, its outbox row dropped


def test_an_edit_after_staging_fires_the_new_definition(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    at = _at(5)
    s = create(client, at=at.isoformat(), task="demo.add", args=[1, 1])
    (old,) = wait_for(lambda: staged(ledger, s["id"]), timeout=10, message="the staged fire")
    r = client.patch(f"{BASE}/{s['id']}", json={"args": [20, 22]})
    assert r.status_code == 200, r.text
    assert job(ledger, old.id) is None  # dropped with the edit
    (fire,) = wait_for(lambda: fires(ledger, s["id"]), timeout=15, message="the fire")
    ran = wait_for(
        lambda: (j := job(ledger, fire.job_id)) and j.state == "succeeded" and j,
        timeout=30,
        message="the edited run",
    )
    assert ran.args == [20, 22] and fire.fire_time == at


def test_a_pause_after_staging_fires_nothing(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    at = _at(4)
    s = create(client, at=at.isoformat())
    (old,) = wait_for(lambda: staged(ledger, s["id"]), timeout=10, message="the staged fire")
    client.post(f"{BASE}/{s['id']}/pause", json={"note": "not today"})
    assert job(ledger, old.id) is None
    ticks = scheduler.ticks
    wait_for(
        lambda: datetime.now(UTC) > at + timedelta(seconds=1) and scheduler.ticks > ticks + 2,
        timeout=15,
        message="the fire time to pass",
    )
    assert fires(ledger, s["id"]) == [] and staged(ledger, s["id"]) == []


def test_a_delete_after_staging_fires_nothing(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    at = _at(4)
    s = create(client, at=at.isoformat())
    (old,) = wait_for(lambda: staged(ledger, s["id"]), timeout=10, message="the staged fire")
    assert client.delete(f"{BASE}/{s['id']}").status_code == 204
    assert job(ledger, old.id) is None
    wait_for(
        lambda: datetime.now(UTC) > at + timedelta(seconds=2), timeout=10, message="the fire time"
    )
    with ledger.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM conveyor_jobs WHERE schedule_id = :id"), {"id": s["id"]}
        ).scalar()
    assert n == 0


def test_reset_to_code_after_staging_fires_the_codes_version(
    svc: Any, client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    name = f"code-{uuid.uuid4().hex[:6]}"
    keep = code_schedules(svc.app)
    spec = entry_spec(svc.app, name, {"task": "demo.add", "schedule": 6.0, "args": (1, 2)})
    assert spec is not None
    svc.schedules.import_code({**keep, name: spec})
    try:
        s = svc.schedules.get(name)
        client.patch(f"{BASE}/{s['id']}", json={"args": [100, 1]})  # a user's override
        first = wait_for(lambda: staged(ledger, s["id"]), timeout=15, message="a staged fire")[0]
        assert first.args == [100, 1]
        reset = client.post(f"{BASE}/{s['id']}/reset")
        assert reset.status_code == 200, reset.text
        assert job(ledger, first.id) is None
        # The fire that was staged, and those after it, run the code's arguments.
        fired = wait_for(
            lambda: [f for f in fires(ledger, s["id"]) if f.job_id and f.fire_time >= first.eta],
            timeout=20,
            message="a fire",
        )
        ran = wait_for(
            lambda: (j := job(ledger, fired[0].job_id)) and j.state == "succeeded" and j,
            timeout=30,
            message="its run",
        )
        assert ran.args == [1, 2]
        client.post(f"{BASE}/{s['id']}/pause")
    finally:
        svc.schedules.import_code(keep)


def test_skipped_fires_leave_no_staged_job(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, task="demo.sleep", args=[3], every=1, overlap="skip")
    wait_for(
        lambda: sum(f.outcome == "skipped_overlap" for f in fires(ledger, s["id"])) >= 2,
        timeout=30,
        message="skipped fires",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    rows = fires(ledger, s["id"])
    with ledger.connect() as conn:
        keys = {
            k
            for (k,) in conn.execute(
                text("SELECT idempotency_key FROM conveyor_jobs WHERE schedule_id = :id"),
                {"id": s["id"]},
            )
        }
    # Only the fires that ran have a job; a skipped fire's staged row was deleted.
    assert keys == {fire_key(s["id"], f.fire_time) for f in rows if f.job_id}
    assert staged(ledger, s["id"]) == []
    for f in rows:
        if f.job_id:
            client.post(f"/api/v1/jobs/{f.job_id}/cancel")


def test_a_fire_released_by_another_leader_is_not_released_again(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    """Two leaders for a moment: the other one released the staged job first (here by hand,
    with the same statements). This leader's release finds it no longer staged and the fire
    keeps that one job (its key), published once."""
    from conveyor.ledger import schedule_store as store

    at = _at(5)
    s = create(client, at=at.isoformat(), task="demo.add", args=[3, 4])
    (row,) = wait_for(lambda: staged(ledger, s["id"]), timeout=10, message="the staged fire")
    with ledger.begin() as conn:
        assert store.lock_staged(conn, [row.id]) == [row.id]
        store.release_staged(conn, [row.id], 5.0)
    with ledger.begin() as conn:
        assert store.lock_staged(conn, [row.id]) == []  # released once only
    (fire,) = wait_for(lambda: fires(ledger, s["id"]), timeout=15, message="the fire")
    assert fire.outcome == "submitted" and fire.job_id == row.id
    with ledger.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM conveyor_jobs WHERE schedule_id = :id"), {"id": s["id"]}
        ).scalar()
    assert n == 1
    # (Not published by the other "leader" here: the relay publishes it after the grace.)
    wait_for(lambda: job(ledger, row.id).state == "succeeded", timeout=30, message="its run")
