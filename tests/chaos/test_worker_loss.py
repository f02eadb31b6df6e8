"""Workers die under their jobs: the jobs run again, every attempt is in the ledger, and a job
that keeps killing its worker ends dead instead of looping."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from conveyor.testing.services import Process, python_last_line, wait_for

pytestmark = pytest.mark.broker


def submit(client: Any, task: str, *args: Any, **kwargs: Any) -> str:
    r = client.post("/api/v1/jobs", json={"task": task, "args": list(args), "kwargs": kwargs})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def until(client: Any, job_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/jobs/{job_id}").json()
        return body if body.get("state") in states else None

    return wait_for(check, timeout=timeout, message=f"{job_id} to reach {states}")


def test_killed_pool_child_reruns_the_job(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    job_id = submit(client, "testing.crash_once", str(marker))
    done = until(client, job_id, "succeeded")
    assert marker.exists()
    assert done["attempt"] == 2
    outcomes = [a["outcome"] for a in done["attempts"]]
    assert outcomes == ["lost", "succeeded"], done["attempts"]
    assert client.get(f"/api/v1/jobs/{job_id}/result").json()["result"] == "survived"


def test_job_that_keeps_killing_its_worker_ends_dead(client: Any) -> None:
    job_id = submit(client, "testing.crash")  # max_retries=2: a cap of 3 attempts
    dead = until(client, job_id, "dead", timeout=90)
    assert dead["error_type"] == "AttemptCapExceeded"
    assert "cap of 3 attempts" in dead["error_message"]
    assert [a["outcome"] for a in dead["attempts"]] == ["lost", "lost", "lost"]


def test_sigkill_of_the_worker_mid_task_requeues_to_another(
    services: Any, client: Any, artifacts: Path
) -> None:
    env = services.env()
    queue = f"victim-{os.getpid()}"
    names = [*services.settings.queues, queue]
    env["CONVEYOR_QUEUES"] = json.dumps(names)
    victim = Process(
        ["worker", "-c", "1", "-n", f"victim-{os.getpid()}@%h", "-Q", queue],
        env,
        artifacts / "victim-worker.log",
    ).start()
    rescuer: Process | None = None
    try:
        code = (
            f"from conveyor.demo import sleep\nprint(sleep.apply_async((3,), queue={queue!r}).id)\n"
        )
        job_id = python_last_line(code, env)
        running = until(client, job_id, "running")
        assert running["worker"].startswith("victim-")
        assert victim.proc is not None
        for p in psutil.Process(victim.proc.pid).children(recursive=True):
            p.kill()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        # A new worker on the queue; the reconciler notices the dead one's silence.
        rescuer = Process(
            ["worker", "-c", "1", "-n", f"rescuer-{os.getpid()}@%h", "-Q", queue],
            env,
            artifacts / "rescuer-worker.log",
        ).start()
        done = until(client, job_id, "succeeded", timeout=90)
        assert done["worker"].startswith("rescuer-")
        assert [a["outcome"] for a in done["attempts"]] == ["lost", "succeeded"]
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()
        if env["CONVEYOR_BROKER_URL"].startswith("amqp"):
            from kombu import Connection

            with Connection(env["CONVEYOR_BROKER_URL"]) as conn:
                conn.default_channel.queue_delete(queue)


def test_running_job_that_ignores_cancel_is_terminated(client: Any) -> None:
    job_id = submit(client, "testing.block", 60)
    until(client, job_id, "running")
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").json()["cancel_requested"]
    done = until(client, job_id, "cancelled", timeout=30)  # grace 2 s in tests, then SIGTERM
    assert done["attempts"][-1]["outcome"] == "cancelled"
