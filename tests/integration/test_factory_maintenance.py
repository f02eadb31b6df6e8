"""The factory's per-batch lock and maintenance tasks, run by the real worker: a second run of
a batch stands aside while the first holds it, a stuck batch is resubmitted, old failed batches
are deleted with their products, and the pack's beat schedules are registered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from celery import Celery
from sqlalchemy import Engine, text

from conveyor.ledger.db import make_engine
from conveyor.packs import psycopg_url
from conveyor.packs.factory import tasks
from conveyor.packs.factory.batches import BatchSpec, create_batch
from conveyor.packs.factory.config import FactorySettings
from conveyor.testing.services import wait_for


@pytest.fixture(scope="module")
def engine(settings: Any) -> Iterator[Engine]:
    e = make_engine(settings.database_url, pool_size=2)
    yield e
    e.dispose()


def run(client: Any, task: str, **kwargs: Any) -> Any:
    r = client.post("/api/v1/jobs", json={"task": task, "kwargs": kwargs})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded",
        timeout=60,
        message=f"{task} to succeed",
    )
    return client.get(f"/api/v1/jobs/{job_id}/result").json()["result"]


def status(client: Any, batch_id: uuid.UUID) -> str:
    return str(client.get(f"/api/v1/factory/batches/{batch_id}").json()["status"])


def test_a_second_run_stands_aside_and_the_stuck_batch_is_resubmitted(
    client: Any, engine: Engine, settings: Any
) -> None:
    batch_id = create_batch(engine, BatchSpec(2000, "Locked", "c"), FactorySettings())
    with psycopg.connect(psycopg_url(settings), autocommit=True) as holder:
        holder.execute(
            "SELECT pg_advisory_lock(hashtextextended('factory-batch:' || %s, 0))",
            (str(batch_id),),
        )
        result = run(client, tasks.PROCESS_TASK, batch_id=str(batch_id))
        assert "being processed by another run" in result["skipped"]
        assert status(client, batch_id) == "pending"  # untouched while the lock was held
        # … and not named by the run that stood aside (the holder's job stays the batch's).
        assert client.get(f"/api/v1/factory/batches/{batch_id}").json()["job_id"] is None
    # Its job ended and the batch is unfinished: stuck, so the schedule's task picks it up.
    retried = run(client, tasks.RETRY_STUCK_TASK, idle_minutes=0)
    assert str(batch_id) in retried["retried"]
    wait_for(lambda: status(client, batch_id) == "completed", timeout=60)
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM factory_products WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one()
    assert n == 2000
    # A completed batch is not stuck.
    assert str(batch_id) not in run(client, tasks.RETRY_STUCK_TASK, idle_minutes=0)["retried"]


def test_old_failed_batches_are_deleted_with_their_products(client: Any, engine: Engine) -> None:
    old = create_batch(engine, BatchSpec(5, "Old", "c"), FactorySettings())
    recent = create_batch(engine, BatchSpec(5, "Recent", "c"), FactorySettings())
    with engine.begin() as conn:
        for batch_id, days in ((old, 40), (recent, 1)):
            conn.execute(
                text(
                    "UPDATE factory_batches SET status = 'failed', failed_step = 'products',"
                    " failed_at = now() - make_interval(days => :d) WHERE id = :b"
                ),
                {"d": days, "b": batch_id},
            )
            conn.execute(
                text(
                    "INSERT INTO factory_products (batch_id, serial, token, verification_url,"
                    " name, category, leaf_index) VALUES (:b, 1, :t, 'u', 'n', 'c', 0)"
                ),
                {"b": batch_id, "t": f"test.{batch_id}"},
            )
    result = run(client, tasks.CLEANUP_TASK, older_than_days=30)
    assert str(old) in result["deleted"] and str(recent) not in result["deleted"]
    assert client.get(f"/api/v1/factory/batches/{old}").status_code == 404
    assert status(client, recent) == "failed"
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT batch_id FROM factory_products WHERE batch_id IN (:o, :r)"),
            {"o": old, "r": recent},
        ).scalars()
        assert list(left) == [recent]
    assert run(client, tasks.REFRESH_STATS_TASK)["analyzed"]


def test_the_pack_adds_its_beat_schedules() -> None:
    app = Celery("schedules")
    app.conf.beat_schedule = {"mine": {"task": "x", "schedule": 5.0}}
    tasks.register(app)
    assert {
        "mine",
        "factory-retry-stuck",
        "factory-refresh-stats",
        "factory-cleanup-failed",
    } <= set(app.conf.beat_schedule)
    assert app.conf.beat_schedule["factory-retry-stuck"]["task"] == tasks.RETRY_STUCK_TASK
