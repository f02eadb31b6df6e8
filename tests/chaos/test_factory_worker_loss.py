"""A worker's pool process dies in the middle of a batch: the job runs again on its
replacement, resumes at the first unwritten chunk, and the batch completes with every product
exactly once."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, text

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker
COUNT = 800_000


def test_killed_worker_mid_batch_still_completes(client: Any, runtime: Any, ledger: Engine) -> None:
    r = client.post(
        "/api/v1/factory/batches",
        json={"product_count": COUNT, "product_name": "Survivor", "category": "c"},
    )
    assert r.status_code == 202, r.text
    batch_id, job_id = r.json()["batch_id"], r.json()["job_id"]

    def midway() -> bool:
        b = client.get(f"/api/v1/factory/batches/{batch_id}").json()
        return b["status"] == "processing" and 0 < b["products_written"] < COUNT // 2

    wait_for(midway, timeout=60, interval=0.02, message="the batch to be half written")
    worker = runtime["worker"].proc
    for child in psutil.Process(worker.pid).children(recursive=True):
        child.kill()  # the pool process running the batch, and its sibling
    written_at_kill = client.get(f"/api/v1/factory/batches/{batch_id}").json()["products_written"]
    assert written_at_kill < COUNT

    def completed() -> dict[str, Any] | None:
        b: dict[str, Any] = client.get(f"/api/v1/factory/batches/{batch_id}").json()
        return b if b["status"] == "completed" else None

    done = wait_for(completed, timeout=180, message="the batch to complete after the kill")
    assert done["products_written"] == COUNT
    with ledger.connect() as conn:
        total, serials = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT serial) FROM factory_products WHERE batch_id = :b"
            ),
            {"b": batch_id},
        ).one()
    assert (total, serials) == (COUNT, COUNT)
    job = wait_for(
        lambda: (j := client.get(f"/api/v1/jobs/{job_id}").json())["state"] == "succeeded" and j,
        timeout=60,
    )
    assert "lost" in [a["outcome"] for a in job["attempts"]], job["attempts"]
    token = client.get(f"/api/v1/factory/batches/{batch_id}/products", params={"after": 654_320,
                       "limit": 1}).json()["items"][0]["token"]  # fmt: skip
    assert client.get(f"/api/v1/factory/verify/{token}").json()["authentic"] is True
