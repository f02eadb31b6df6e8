"""Driving a Conveyor API from tests: submit a job and wait for it, through the REST API."""

from __future__ import annotations

import uuid
from typing import Any

from conveyor.testing.services import wait_for


def submit(client: Any, task: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Submit ``task`` through ``POST /api/v1/jobs``; the 202 body."""
    r = client.post("/api/v1/jobs", json={"task": task, "args": list(args), "kwargs": kwargs})
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def until_state(client: Any, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    """The job once the API reports one of ``states``; AssertionError after ``timeout``."""

    def check() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] in states else None

    return wait_for(check, timeout=timeout, message=f"job {job_id} to reach {states}")  # type: ignore[no-any-return]


def new_schedule(client: Any, **body: Any) -> dict[str, Any]:
    """Create a schedule through ``POST /api/v1/schedules`` (a unique name unless given); the
    201 body."""
    r = client.post("/api/v1/schedules", json={"name": f"t-{uuid.uuid4().hex[:8]}", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def schedule_count(engine: Any) -> int:
    """How many schedules the ledger holds, code-declared and retired ones included."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM conveyor_schedules")).scalar_one())
