"""Group commit of submissions against the real ledger: many submits share transactions,
and a batch settles every submission on its own terms."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.errors import IdempotencyConflict, LedgerError
from conveyor.intake import Submission
from conveyor.ledger import repository as repo
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def _count(engine: Any, sql: str, ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), {"ids": ids}).scalar_one())


def test_concurrent_submits_share_transactions_and_all_get_published(client: Any) -> None:
    control = client.app.state.services.control
    before = control.intake.batches

    def submit(n: int) -> str:
        row, created = control.submit("demo.add", [n, 0], publish_wait=10)
        assert created
        return str(row["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(submit, range(400)))
    assert len(set(ids)) == 400
    # Fewer transactions than jobs: submissions that arrived together were committed together.
    assert control.intake.batches - before < 400
    assert control.intake.largest_batch > 1
    engine = control.engine
    assert (
        _count(
            engine, "SELECT count(*) FROM conveyor_jobs WHERE id = ANY(CAST(:ids AS uuid[]))", ids
        )
        == 400
    )
    # Published (their outbox rows dropped by the submitter, not left to the relay) and run.
    wait_for(
        lambda: (
            _count(
                engine,
                "SELECT count(*) FROM conveyor_outbox WHERE job_id = ANY(CAST(:ids AS uuid[]))",
                ids,
            )
            == 0
        ),
        timeout=30,
        message="outbox rows of published jobs deleted",
    )
    wait_for(
        lambda: (
            _count(
                engine,
                "SELECT count(*) FROM conveyor_jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
                "AND state = 'succeeded'",
                ids,
            )
            == 400
        ),
        timeout=120,
        message="all 400 jobs succeeded",
    )


def test_one_batch_settles_duplicates_conflicts_and_bad_rows_separately(client: Any) -> None:
    control = client.app.state.services.control
    key = f"batch-{uuid.uuid4()}"
    good = control.prepare("demo.add", [1, 2])
    first = control.prepare("demo.add", [5, 5], idempotency_key=key)
    same = control.prepare("demo.add", [5, 5], idempotency_key=key)
    other = control.prepare("demo.add", [6, 6], idempotency_key=key)
    # A row PostgreSQL refuses (a task name over the column's 255 characters), as if it had
    # slipped past validation: it fails alone, the rest of its batch is written.
    bad = repo.NewJob(
        id=str(uuid.uuid4()),
        task="x" * 300,
        args=[],
        kwargs={},
        queue="default",
        priority=None,
        eta=None,
    )
    items = [Submission(j) for j in (good, first, bad, same, other)]
    control.intake.commit(items)

    _, created_good = items[0].committed.result(5)
    row_first, created_first = items[1].committed.result(5)
    row_same, created_same = items[3].committed.result(5)
    assert created_good and created_first and not created_same
    assert str(row_same["id"]) == str(row_first["id"])
    with pytest.raises(IdempotencyConflict):
        items[4].committed.result(5)
    with pytest.raises(LedgerError, match=r"refused this job.*too long"):
        items[2].committed.result(5)
    for item in items:
        assert item.handed_on.wait(10)
    with control.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM conveyor_jobs WHERE id = CAST(:id AS uuid)"),
                {"id": bad.id},
            ).scalar_one()
            == 0
        )
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{row_first['id']}").json()["state"] == "succeeded",
        timeout=30,
        message="the keyed job ran",
    )


def test_nul_in_arguments_is_refused_and_nothing_recorded(client: Any) -> None:
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "args": ["a\u0000b"]})
    assert r.status_code == 422
    assert "NUL" in r.text
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "kwargs": {"k\u0000": 1}})
    assert r.status_code == 422


def test_submit_recovers_from_a_dropped_ledger_connection(client: Any) -> None:
    """The committer keeps one connection; when PostgreSQL drops it (restart, idle cut-off),
    the next submission is written on a fresh one instead of failing."""
    assert client.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 1]}).status_code == 202
    engine = client.app.state.services.engine
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        ).scalar_one()
    assert killed >= 1
    r = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [2, 2]})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded",
        timeout=30,
        message="the job submitted after the drop ran",
    )
