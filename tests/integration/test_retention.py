"""Retention: finished jobs leave the ledger after their time, failures later than successes,
with their attempts and stored results, in bounded rounds; the counts stay exact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from conveyor.ledger import reconciler as reconciler_module
from conveyor.ledger import stats
from conveyor.ledger.reconciler import Reconciler

TASK = f"retention.{uuid.uuid4().hex[:6]}"


def _job(conn: Any, state: str, finished_days_ago: float, now: datetime) -> str:
    job_id = str(uuid.uuid4())
    finished = now - timedelta(days=finished_days_ago)
    conn.execute(
        text(
            "INSERT INTO conveyor_jobs (id, task, state, queue, created_at, finished_at,"
            " result_ref) VALUES (:id, :task, :state, 'default', :created, :finished, :ref)"
        ),
        {
            "id": job_id,
            "task": TASK,
            "state": state,
            "created": finished - timedelta(minutes=1),
            "finished": finished,
            "ref": f"blob:{job_id}",
        },
    )
    conn.execute(
        text("INSERT INTO conveyor_attempts (job_id, attempt, outcome) VALUES (:id, 1, :state)"),
        {"id": job_id, "state": state},
    )
    conn.execute(
        text("INSERT INTO conveyor_blobs (id, content_type, data) VALUES (:id, 'x', 'y')"),
        {"id": f"blob:{job_id}"},
    )
    return job_id


def test_finished_jobs_are_deleted_after_their_retention(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.testing.app import app

    now = datetime.now(UTC)
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:
        old_ok = [_job(conn, "succeeded", 40, now) for _ in range(5)]
        old_cancelled = _job(conn, "cancelled", 31, now)
        recent_ok = _job(conn, "succeeded", 29, now)
        old_failed = _job(conn, "failed", 40, now)  # failures are kept longer
        ancient_dead = _job(conn, "dead", 100, now)

    tuned = settings.model_copy(update={"retention_days": 30, "failure_retention_days": 90})
    client = redis.Redis.from_url(settings.redis_url)
    reconciler = Reconciler(app, engine, client, tuned)
    # Small rounds: the first round stops early and says more is due.
    monkeypatch.setattr(reconciler_module, "PRUNE_BATCH", 2)
    monkeypatch.setattr(reconciler_module, "PRUNE_MAX_BATCHES", 1)
    assert reconciler.prune(now) is True
    while reconciler.prune(now):
        pass

    with engine.connect() as conn:
        left = set(
            conn.execute(text("SELECT id::text FROM conveyor_jobs WHERE task = :t"), {"t": TASK})
            .scalars()
            .all()
        )
        gone = [*old_ok, old_cancelled, ancient_dead]
        assert left == {recent_ok, old_failed}
        orphans = conn.execute(
            text("SELECT count(*) FROM conveyor_attempts WHERE job_id::text = ANY(:ids)"),
            {"ids": gone},
        ).scalar_one()
        blobs = conn.execute(
            text("SELECT count(*) FROM conveyor_blobs WHERE id = ANY(:ids)"),
            {"ids": [f"blob:{j}" for j in gone]},
        ).scalar_one()
        assert orphans == 0 and blobs == 0
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        scanned = dict.fromkeys(stats.counts_by_state(conn), 0)
        by_state = text("SELECT state, count(*) FROM conveyor_jobs GROUP BY state")
        scanned.update(dict(conn.execute(by_state).all()))
        assert stats.counts_by_state(conn) == scanned

    # Zero days keeps everything (a year on, nothing of anyone's goes).
    forever = {"retention_days": 0, "failure_retention_days": 0}
    keep = Reconciler(app, engine, client, settings.model_copy(update=forever))
    keep.prune(now + timedelta(days=365))
    with engine.connect() as conn:
        kept = text("SELECT count(*) FROM conveyor_jobs WHERE id = ANY(:ids)")
        assert conn.execute(kept, {"ids": [recent_ok, old_failed]}).scalar_one() == 2
    client.close()
    engine.dispose()
