"""The scheduler engine (``runtime.scheduler``) firing stored schedules into a real worker:
intervals, overlap policies with a slow task, catch-up after downtime, live edits, max runs,
one-offs, jitter; and code-declared schedules (import, overrides, reset, retire)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.ledger.schedule_store import ScheduleFilter
from conveyor.runtime.code_schedules import code_schedules
from conveyor.runtime.scheduler import Scheduler
from conveyor.testing.client import new_schedule
from conveyor.testing.services import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("fresh_schedules")]

BASE = "/api/v1/schedules"


@pytest.fixture(scope="module")
def svc(client: Any) -> Any:
    return client.app.state.services


@pytest.fixture(scope="module")
def scheduler(svc: Any) -> Iterator[Scheduler]:
    """A leader running in this process (the same engine `conveyor beat` runs), on the test
    app. Schedules made before (the code schedules the API imported, any another module left)
    are paused first, as a user would (an override for code schedules), so that only this
    module's schedules fire into the shared worker."""
    with leading(svc) as sched:
        yield sched


@contextmanager
def leading(svc: Any, **options: Any) -> Iterator[Scheduler]:
    """A scheduler (``options``: the Scheduler's) running in a thread, once it leads; every
    schedule not paused before is paused first."""
    for s in svc.schedules.list(ScheduleFilter(retired=None)):
        if not s["paused"]:
            svc.schedules.pause(s["id"], "paused by the scheduler tests")
    sched = Scheduler(svc.app, svc.engine, import_code=False, lease_ttl=3.0, **options)
    stop = threading.Event()
    thread = threading.Thread(target=sched.run, args=(stop,), name="test-scheduler")
    thread.start()
    try:
        wait_for(lambda: sched.leader, timeout=15, message="the scheduler to lead")
        yield sched
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()


def create(client: Any, **body: Any) -> dict[str, Any]:
    return new_schedule(client, **{"task": "demo.noop", **body})


def fires(ledger: Any, schedule_id: str) -> list[Any]:
    with ledger.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT f.fire_time, f.outcome, f.job_id::text AS job_id, j.state, "
                    "j.idempotency_key, j.schedule_id::text AS schedule_id "
                    "FROM conveyor_schedule_fires f LEFT JOIN conveyor_jobs j ON j.id = f.job_id "
                    "WHERE f.schedule_id = :id ORDER BY f.fire_time"
                ),
                {"id": schedule_id},
            ).all()
        )


def outcomes(ledger: Any, schedule_id: str) -> Counter[str]:
    return Counter(f.outcome for f in fires(ledger, schedule_id))


def test_every_second_fires_each_second_once_into_a_real_worker(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    s = create(client, every=1, overlap="allow_all")
    wait_for(
        lambda: sum(f.state == "succeeded" for f in fires(ledger, s["id"])) >= 4,
        timeout=30,
        message="four runs of the every-1s schedule",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    rows = fires(ledger, s["id"])
    times = [f.fire_time for f in rows]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert all(t.microsecond == 0 for t in times)  # on the second (anchored at the epoch)
    assert {f.outcome for f in rows} == {"submitted"}
    assert len({f.job_id for f in rows}) == len(rows)  # one job per fire
    for f in rows:
        assert f.schedule_id == s["id"]
        assert f.idempotency_key == f"schedule:{s['id']}:{f.fire_time.astimezone(UTC).isoformat()}"
    body = client.get(f"{BASE}/{s['id']}").json()
    assert body["run_count"] >= len(rows) and body["last_runs"][0]["state"] in (
        "queued",
        "running",
        "succeeded",
    )


def test_overlap_skip(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, task="demo.sleep", args=[2.5], every=1, overlap="skip")
    wait_for(
        lambda: outcomes(ledger, s["id"])["submitted"] >= 2,
        timeout=30,
        message="a second run after the first ended",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    counts = outcomes(ledger, s["id"])
    assert counts["skipped_overlap"] >= 2
    runs = [f for f in fires(ledger, s["id"]) if f.outcome == "submitted"]
    # A run starts only once the one before has ended: every fire in between was skipped.
    first, second = runs[0], runs[1]
    skipped = [
        f for f in fires(ledger, s["id"]) if first.fire_time < f.fire_time < second.fire_time
    ]
    assert skipped and {f.outcome for f in skipped} == {"skipped_overlap"}


def test_overlap_buffer_one(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, task="demo.sleep", args=[2.5], every=1, overlap="buffer_one")
    wait_for(
        lambda: outcomes(ledger, s["id"])["submitted"] >= 2,
        timeout=30,
        message="the buffered fire to run after the first",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    rows = fires(ledger, s["id"])
    runs = [f for f in rows if f.outcome == "submitted"]
    # The second run is the first fire that came while the first ran: it waited (buffered)
    # and ran once the first ended; the fires after it, while the buffer was full, were skipped.
    assert runs[1].fire_time == runs[0].fire_time + timedelta(seconds=1)
    assert outcomes(ledger, s["id"])["skipped_overlap"] >= 1
    with ledger.connect() as conn:
        first, second = (
            conn.execute(
                text("SELECT started_at, finished_at FROM conveyor_jobs WHERE id = :id"),
                {"id": run.job_id},
            ).one()
            for run in runs[:2]
        )
    assert first.finished_at is not None and second.started_at >= first.finished_at


def test_overlap_cancel_previous(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, task="demo.sleep", args=[30], every=2, overlap="cancel_previous")
    wait_for(
        lambda: any(f.state == "cancelled" for f in fires(ledger, s["id"])),
        timeout=30,
        message="a run cancelled by the next fire",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    rows = fires(ledger, s["id"])
    assert "cancelled_previous" in {f.outcome for f in rows}
    replacing = next(f for f in rows if f.outcome == "cancelled_previous")
    assert replacing.job_id is not None
    for f in rows:
        if f.job_id:
            client.post(f"/api/v1/jobs/{f.job_id}/cancel")  # free the worker


def test_overlap_allow_all_runs_side_by_side(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    s = create(client, task="demo.sleep", args=[2], every=1, overlap="allow_all")
    wait_for(
        lambda: sum(f.state == "running" for f in fires(ledger, s["id"])) >= 2,
        timeout=30,
        message="two runs of one schedule at once",
    )
    client.post(f"{BASE}/{s['id']}/pause")
    assert set(outcomes(ledger, s["id"])) == {"submitted"}


def _downtime(ledger: Any, schedule_id: str, first: datetime) -> None:
    """As if the scheduler had been stopped since ``first``: that fire is still due."""
    with ledger.begin() as conn:
        conn.execute(
            text(
                "UPDATE conveyor_schedules SET next_fire_at = :t, last_fire_at = :prev "
                "WHERE id = :id"
            ),
            {"t": first, "prev": first - timedelta(minutes=1), "id": schedule_id},
        )
        conn.execute(text("SELECT pg_notify('conveyor_schedules', :id)"), {"id": schedule_id})


@pytest.mark.parametrize(("catchup_max", "runs", "missed"), [(1, 1, 5), (10, 2, 4)])
def test_catch_up_after_a_five_minute_stop(
    client: Any, ledger: Any, scheduler: Scheduler, catchup_max: int, runs: int, missed: int
) -> None:
    # Fires every minute from T0 = 5½ minutes ago: T0 … T0+5min are due (ages 330 s … 30 s);
    # with a 2-minute window only the last two (ages 90 s and 30 s) may still run.
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=330)
    s = create(
        client,
        every="1m",
        start_at=t0.isoformat(),
        catchup_window="2m",
        catchup_max=catchup_max,
        overlap="allow_all",
    )
    _downtime(ledger, s["id"], t0)
    wait_for(
        lambda: sum(outcomes(ledger, s["id"]).values()) >= 6,
        timeout=15,
        message="the missed fires to be dealt with",
    )
    rows = fires(ledger, s["id"])
    assert Counter(f.outcome for f in rows) == {"submitted": runs, "missed": missed}
    assert [f.fire_time for f in rows] == [t0 + timedelta(minutes=k) for k in range(6)]
    ran = [f.fire_time for f in rows if f.outcome == "submitted"]
    assert ran == [t0 + timedelta(minutes=k) for k in range(6 - runs, 6)]
    after = client.get(f"{BASE}/{s['id']}").json()
    assert datetime.fromisoformat(after["next_fire_at"]) == t0 + timedelta(minutes=6)
    assert after["run_count"] == runs


def test_edits_are_picked_up_live(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, cron="0 0 1 1 *")
    assert fires(ledger, s["id"]) == []
    client.patch(f"{BASE}/{s['id']}", json={"every": 1})
    wait_for(lambda: len(fires(ledger, s["id"])) >= 2, timeout=10, message="the edited trigger")
    paused = client.post(f"{BASE}/{s['id']}/pause", json={"note": "enough"}).json()
    assert paused["next_fire_at"] is None
    seen = len(fires(ledger, s["id"]))
    ticks = scheduler.ticks
    wait_for(lambda: scheduler.ticks >= ticks + 3, timeout=10, message="three more ticks")
    assert len(fires(ledger, s["id"])) <= seen + 1  # at most one fire was in flight


def test_max_runs_and_end(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, every=1, max_runs=2, overlap="allow_all")
    wait_for(
        lambda: client.get(f"{BASE}/{s['id']}").json()["next_fire_at"] is None,
        timeout=15,
        message="the schedule to use up its runs",
    )
    assert outcomes(ledger, s["id"]) == {"submitted": 2}
    assert client.get(f"{BASE}/{s['id']}").json()["run_count"] == 2


def test_one_off(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    s = create(client, at=at.isoformat(), task="demo.add", args=[1, 1])
    wait_for(lambda: fires(ledger, s["id"]), timeout=15, message="the one-off fire")
    (fire,) = fires(ledger, s["id"])
    assert fire.fire_time == at and fire.outcome == "submitted"
    assert client.get(f"{BASE}/{s['id']}").json()["next_fire_at"] is None


def test_task_code_reads_the_schedule_from_its_message(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    s = create(client, task="testing.schedule_header", every=3600)
    job_id = client.post(f"{BASE}/{s['id']}/trigger").json()["job_id"]

    def result() -> Any:
        body = client.get(f"/api/v1/jobs/{job_id}/result").json()
        return body if body["ready"] else None

    done = wait_for(result, timeout=30, message="the job that reads its header")
    assert done["state"] == "succeeded" and done["result"] == s["id"]


def test_jitter_delays_the_job_not_the_fire(client: Any, ledger: Any, scheduler: Scheduler) -> None:
    s = create(client, every=1, jitter="30s", overlap="allow_all")
    wait_for(lambda: fires(ledger, s["id"]), timeout=15, message="a jittered fire")
    client.post(f"{BASE}/{s['id']}/pause")
    fire = fires(ledger, s["id"])[0]
    job = client.get(f"/api/v1/jobs/{fire.job_id}").json()
    assert job["state"] == "scheduled"  # waits for its eta, held in PostgreSQL
    eta = datetime.fromisoformat(job["eta"])
    assert fire.fire_time < eta < fire.fire_time + timedelta(seconds=30)
    client.post(f"/api/v1/jobs/{fire.job_id}/cancel")


# --- code-declared schedules --------------------------------------------------------------------
def test_demo_and_pack_beat_entries_become_code_schedules(svc: Any) -> None:
    entries = code_schedules(svc.app)
    assert {"demo-crunch", "demo-flaky", "factory-retry-stuck", "catalog-sweep-deliveries"} <= set(
        entries
    )
    assert entries["demo-crunch"] == {
        "task": "demo.crunch",
        "args": [],
        "kwargs": {"steps": 20},
        "timezone": "UTC",
        "every": 60.0,
    }
    # The API imported them at start-up: listed with source code.
    listed = {s["name"]: s for s in svc.schedules.list(ScheduleFilter(source="code"))}
    assert set(entries) <= set(listed)


def test_code_overrides_survive_reimport_and_reset(svc: Any, client: Any) -> None:
    from celery.schedules import crontab

    schedules = svc.schedules
    name = f"code-{uuid.uuid4().hex[:6]}"
    keep = {n: spec for n, spec in code_schedules(svc.app).items()}

    def declared(**extra: Any) -> dict[str, Any]:
        app_entry = {"task": "demo.add", "schedule": crontab(minute=0, hour=2), "args": (1, 2)}
        from conveyor.runtime.code_schedules import entry_spec

        spec = entry_spec(svc.app, name, {**app_entry, **extra})
        assert spec is not None
        return {**keep, name: spec}

    done = schedules.import_code(declared())
    assert name in done["created"]
    s = schedules.get(name)
    assert s["source"] == "code" and s["cron"] == "0 2 * * *" and s["overridden"] == []

    # A user pauses it and moves it to 03:30: both are overrides.
    client.post(f"{BASE}/{s['id']}/pause", json={"note": "quiet week"})
    client.patch(f"{BASE}/{s['id']}", json={"cron": "30 3 * * *"})
    assert set(schedules.get(name)["overridden"]) == {"paused", "trigger"}

    # The code changes its args (and keeps its cron): the args follow the code, the user's
    # edits stay.
    done = schedules.import_code(declared(args=(5, 6)))
    assert name in done["updated"]
    s = schedules.get(name)
    assert s["args"] == [5, 6] and s["cron"] == "30 3 * * *" and s["paused"]
    assert s["paused_note"] == "quiet week" and set(s["overridden"]) == {"paused", "trigger"}
    assert s["code_default"]["cron"] == "0 2 * * *"
    # Importing the same code again changes nothing.
    assert schedules.import_code(declared(args=(5, 6)))["updated"] == []

    renamed = client.patch(f"{BASE}/{s['id']}", json={"name": "mine-now"})
    assert renamed.status_code == 422 and "keeps the name" in renamed.json()["detail"]

    reset = client.post(f"{BASE}/{s['id']}/reset").json()
    assert reset["cron"] == "0 2 * * *" and not reset["paused"] and reset["overridden"] == []
    assert reset["next_fire_at"] is not None

    # Removed from code: retired, not firing, still listed as retired.
    done = schedules.import_code(keep)
    assert name in done["retired"]
    s = schedules.get(name)
    assert s["retired_at"] is not None and s["next_fire_at"] is None
    assert name in {x["name"] for x in client.get(BASE, params={"retired": True}).json()}
    assert name not in {x["name"] for x in client.get(BASE).json()}
    # Declared again: back.
    schedules.import_code(declared())
    assert schedules.get(name)["retired_at"] is None
    schedules.import_code(keep)


def test_a_code_entry_that_does_not_validate_is_skipped(svc: Any) -> None:
    keep = code_schedules(svc.app)
    done = svc.schedules.import_code(
        {**keep, "broken": {"task": "demo.nope", "every": 60.0, "args": [], "kwargs": {}}}
    )
    assert done["skipped"] == ["broken"]


def _metrics(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_count_fires_skips_and_misses(
    client: Any, ledger: Any, scheduler: Scheduler
) -> None:
    before = _metrics(client)
    assert before[("conveyor_scheduler_leader", (("holder", scheduler.holder),))] == 1.0
    assert before[("conveyor_scheduler_lease_token", ())] >= 1
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=330)
    s = create(client, every="1m", start_at=t0.isoformat(), catchup_window="2m")
    _downtime(ledger, s["id"], t0)
    wait_for(lambda: sum(outcomes(ledger, s["id"]).values()) >= 6, timeout=15, message="fires")
    after = _metrics(client)

    def delta(name: str) -> float:
        return after[(name, ())] - before.get((name, ()), 0.0)

    assert delta("conveyor_schedule_fires_total") >= 1
    assert delta("conveyor_schedule_missed_total") >= 5
    assert ("conveyor_schedule_skipped_overlap_total", ()) in after
    assert after[("conveyor_scheduler_lag_seconds", ())] >= 0
