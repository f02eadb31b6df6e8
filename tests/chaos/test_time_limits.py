"""Soft time limit: the task's cleanup hook runs; hard limit: the child is replaced. Both end
the attempt as a timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def run(client: Any, **kwargs: Any) -> dict[str, Any]:
    r = client.post("/api/v1/jobs", json={"task": "testing.overrun", "kwargs": kwargs})
    job_id = r.json()["id"]

    def ended() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/jobs/{job_id}").json()
        return body if body["state"] in {"failed", "dead"} else None

    return wait_for(ended, timeout=30, message=f"{job_id} to time out")


def test_soft_limit_runs_the_cleanup_hook(client: Any, tmp_path: Path) -> None:
    note = tmp_path / "note"
    job = run(client, note=str(note))
    assert job["error_type"] == "SoftTimeLimitExceeded"
    assert job["attempts"][-1]["outcome"] == "timeout"
    assert note.read_text() == f"cleaned up after {job['id']}"


def test_hard_limit_replaces_the_child(client: Any, runtime: Any, tmp_path: Path) -> None:
    worker = runtime["worker"].proc
    before = {p.pid for p in psutil.Process(worker.pid).children()}
    job = run(client, note=str(tmp_path / "note"), stubborn=True)
    assert job["error_type"] == "TimeLimitExceeded"
    assert job["attempts"][-1]["outcome"] == "timeout"

    def replaced() -> bool:
        alive = {p.pid for p in psutil.Process(worker.pid).children() if p.status() != "zombie"}
        return bool(before - alive) and len(alive) == len(before)

    wait_for(replaced, timeout=15, message="the pool to replace the killed process")
    ok = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [2, 2]}).json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{ok['id']}").json()["state"] == "succeeded",
        timeout=30,
        message="the worker to keep working after a hard limit",
    )
