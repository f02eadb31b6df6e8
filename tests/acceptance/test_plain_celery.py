"""Plain `celery -A conveyor.demo ...` commands work beside Conveyor's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.stack import stop_children
from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker

CELERY = str(Path(sys.executable).with_name("celery"))


def test_celery_inspect_sees_the_conveyor_worker(services: Any, client: Any) -> None:
    assert shutil.which(CELERY), CELERY
    out = subprocess.run(
        [CELERY, "-A", "conveyor.demo", "inspect", "ping", "--timeout", "5"],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"testworker-{os.getpid()}@" in out.stdout and "pong" in out.stdout


def test_celery_given_only_the_broker_url_sees_the_conveyor_worker(
    services: Any, client: Any
) -> None:
    """No app, no Conveyor settings: how Flower or an ops shell meets the broker. The replies
    travel through bindings the worker made, so both sides must encode them alike."""
    out = subprocess.run(
        [CELERY, "--broker", services.settings.broker_url, "inspect", "ping", "--timeout", "5"],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"testworker-{os.getpid()}@" in out.stdout and "pong" in out.stdout


def test_plain_celery_worker_is_recorded_in_the_ledger(
    services: Any, client: Any, artifacts: Path
) -> None:
    queue = f"plain-{os.getpid()}"
    env = services.env()
    worker = subprocess.Popen(
        [
            CELERY,
            "-A",
            "conveyor.demo",
            "worker",
            "-c",
            "1",
            "-Q",
            queue,
            "-n",
            f"plain-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        env=env,
        stdout=open(artifacts / "plain-celery-worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        r = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [5, 6], "queue": queue})
        assert r.status_code == 422  # not one of the configured queues: refused up front
        code = (
            f"from conveyor.demo import add\nprint(add.apply_async((5, 6), queue={queue!r}).id)\n"
        )
        job_id = python_last_line(code, env)

        def done() -> Any:
            body = client.get(f"/api/v1/jobs/{job_id}").json()
            return body if body.get("state") == "succeeded" else None

        job = wait_for(done, timeout=60, message="job run by a plain celery worker")
        assert job["worker"] == f"plain-{os.getpid()}@{os.uname().nodename}"
        assert job["queue"] == queue
    finally:
        stop_children([worker], grace=20)
