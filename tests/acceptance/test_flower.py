"""Flower beside Conveyor: a real Flower process on the test broker sees the Conveyor worker and
the jobs submitted through Conveyor's API, although Conveyor leaves task events off by default
(Flower switches them on by itself with the `enable_events` remote control command)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.cli.stack import stop_children
from conveyor.embedded.process import free_port
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

CELERY = str(Path(sys.executable).with_name("celery"))


@pytest.fixture(params=["broker-url", "app"])
def flower(request: Any, services: Any, client: Any, artifacts: Path) -> Iterator[str]:
    """Flower started the two ways people start it: with only the broker's URL (its own
    container, no application code), or with the Celery app (``-A``); its base URL."""
    port = free_port()
    if request.param == "app":
        source = ["-A", services.settings.app]
    else:
        source = ["--broker", services.settings.broker_url]
    env = {**services.env(), "FLOWER_UNAUTHENTICATED_API": "true"}
    log = artifacts / f"flower-{request.param}.log"
    proc = subprocess.Popen(
        [CELERY, *source, "flower", "--address=127.0.0.1", f"--port={port}"],
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the child
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"flower exited with {proc.returncode}; see {log}"
        try:
            return httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.2, message="flower to answer")
        yield url
    finally:
        stop_children([proc], grace=10)
        # Flower left task events on in the session's worker; turn them off again, as the
        # other tests expect Conveyor's default.
        subprocess.run(
            [CELERY, "-A", services.settings.app, "control", "disable_events", "--timeout", "5"],
            env=services.env(),
            capture_output=True,
            timeout=60,
        )


def test_flower_sees_the_conveyor_worker_and_its_jobs(client: Any, flower: str) -> None:
    worker = f"testworker-{os.getpid()}@{os.uname().nodename}"

    def flower_get(path: str) -> Any:
        response = httpx.get(flower + path, timeout=15)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    # /api/workers asks the workers over the broker (`inspect`), events or not.
    wait_for(
        lambda: worker in flower_get("/api/workers?refresh=1"),
        timeout=60,
        interval=1,
        message="flower to list the test worker",
    )

    def submit(task: str, *args: Any) -> str:
        r = client.post("/api/v1/jobs", json={"task": task, "args": list(args)})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    # Task events are off until Flower's first `enable_events` reaches the worker (it sends
    # one every 5 s); jobs that ran before that are not in Flower, only in the ledger.
    probes: list[str] = []

    def events_on() -> bool:
        probes.append(submit("demo.add", 0, 0))
        tasks = flower_get("/api/tasks")
        return any(p in tasks for p in probes)

    wait_for(events_on, timeout=60, interval=1, message="flower to receive task events")

    added, failed = submit("demo.add", 2, 3), submit("demo.fail", "for flower")

    def seen() -> dict[str, Any] | None:
        tasks = flower_get("/api/tasks")
        done = {job_id: tasks.get(job_id) for job_id in (added, failed)}
        if all(t and t.get("state") in ("SUCCESS", "FAILURE") for t in done.values()):
            return done
        return None

    tasks = wait_for(seen, timeout=60, interval=0.5, message="flower to see both jobs end")
    assert tasks[added]["name"] == "demo.add" and tasks[added]["state"] == "SUCCESS"
    assert tasks[added]["worker"] == worker
    assert tasks[failed]["name"] == "demo.fail" and tasks[failed]["state"] == "FAILURE"
    assert "for flower" in tasks[failed]["exception"]
    # The ledger agrees (it needs no events; the recorder may trail the event by a moment).
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{added}").json()["state"] == "succeeded",
        timeout=30,
        message="the ledger to record the job",
    )
    info = flower_get(f"/api/task/info/{added}")
    assert info["uuid"] == added and info["result"] == "5"
