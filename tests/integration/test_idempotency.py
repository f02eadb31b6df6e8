"""One Idempotency-Key, many concurrent submits: exactly one job, every answer names it."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def test_fifty_concurrent_submits_with_one_key(client: Any, settings: Any) -> None:
    key = f"charge-{uuid.uuid4()}"
    barrier = threading.Barrier(50)

    def submit(_: int) -> Any:
        barrier.wait()
        return client.post(
            "/api/v1/jobs",
            json={"task": "demo.add", "args": [1, 2]},
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(submit, range(50)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == 49
    engine = create_engine(settings.database_url)

    def count(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), {"k": key}).scalar_one())

    assert count("SELECT count(*) FROM conveyor_jobs WHERE idempotency_key = :k") == 1
    # Published once, by the submitter that created it: its outbox row goes right after.
    wait_for(
        lambda: (
            count(
                "SELECT count(*) FROM conveyor_outbox o JOIN conveyor_jobs j "
                "ON j.id = o.job_id WHERE j.idempotency_key = :k"
            )
            == 0
        ),
        message="the outbox row of the published job deleted",
    )
    engine.dispose()


def test_same_key_different_payload_conflicts_under_concurrency(client: Any) -> None:
    key = f"order-{uuid.uuid4()}"
    barrier = threading.Barrier(20)

    def submit(i: int) -> Any:
        barrier.wait()
        return client.post(
            "/api/v1/jobs",
            json={"task": "demo.add", "args": [i % 2, 0]},
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(submit, range(20)))
    codes = [r.status_code for r in responses]
    assert set(codes) == {202, 409}
    winner = next(r.json()["id"] for r in responses if r.status_code == 202)
    assert all(r.json().get("job_id") == winner for r in responses if r.status_code == 409)
