"""Global limits shared by every worker: a token rate per task and concurrency per key."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.testing.services import Process, wait_for

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def second_worker(services: Any, client: Any, artifacts: Path) -> Any:
    worker = Process(
        ["worker", "-c", "2", "-n", f"second-{os.getpid()}@%h"],
        services.env(),
        artifacts / "second-worker.log",
    ).start()
    wait_for(
        lambda: sum(w["alive"] for w in client.get("/api/v1/workers").json()) >= 2,
        timeout=60,
        message="the second worker",
    )
    yield worker
    worker.stop()


def submit_all(client: Any, bodies: list[dict[str, Any]]) -> list[str]:
    ids = []
    for body in bodies:
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def finished(client: Any, ids: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        jobs = [client.get(f"/api/v1/jobs/{i}").json() for i in ids]
        return jobs if all(j["state"] == "succeeded" for j in jobs) else None

    return wait_for(done, timeout=timeout, interval=0.25, message="limited jobs to finish")


def test_rate_limit_holds_across_two_workers(client: Any, second_worker: Any) -> None:
    jobs = finished(
        client, submit_all(client, [{"task": "testing.rated", "args": [i]} for i in range(21)])
    )
    starts = sorted(datetime.fromisoformat(j["started_at"]).timestamp() for j in jobs)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert abs(rate - 5.0) / 5.0 <= 0.10, f"measured {rate:.2f}/s against a limit of 5/s"
    workers = {j["worker"] for j in jobs}
    assert len(workers) == 2, workers  # both workers took part, yet the rate held
    assert all(j["attempt"] == 1 for j in jobs)  # waiting is not an attempt


def test_concurrency_per_key_is_never_exceeded(client: Any, second_worker: Any) -> None:
    bodies = [
        {"task": "testing.per_customer", "args": [customer, 0.4]}
        for customer in ("acme", "acme", "acme", "acme", "acme", "globex", "globex")
    ]
    jobs = finished(client, submit_all(client, bodies))
    for customer in ("acme", "globex"):
        spans = [
            (datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"]))
            for j in jobs
            if j["args"][0] == customer
        ]
        for start, _ in spans:
            overlapping = sum(1 for s, e in spans if s <= start < e)
            assert overlapping <= 2, f"{customer}: {overlapping} running at {start}"
    # Four pool processes, but acme never had more than two of them.
    assert all(j["attempt"] == 1 and j["state"] == "succeeded" for j in jobs)
