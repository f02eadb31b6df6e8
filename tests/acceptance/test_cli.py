"""The `conveyor` CLI as a user runs it: a subprocess, against the real stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from conveyor.testing.services import wait_for


def conveyor(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.mark.broker
def test_submit_wait_shows_progress_then_result(services: Any, client: Any) -> None:
    out = conveyor(
        "submit", "demo.crunch", "-k", "steps=5", "-k", "delay=0.1", "--wait", env=services.env()
    )
    assert out.returncode == 0, out.stderr
    assert '"steps": 5' in out.stdout
    assert "succeeded" in out.stderr


@pytest.mark.broker
def test_submit_wait_reports_failure_with_exit_code(services: Any, client: Any) -> None:
    out = conveyor("submit", "demo.fail", "kaput", "--wait", env=services.env())
    assert out.returncode == 1
    assert "RuntimeError" in out.stderr and "kaput" in out.stderr


def test_submit_refuses_bad_input_clearly(services: Any, client: Any) -> None:
    env = services.env()
    unknown = conveyor("submit", "demo.nope", env=env)
    assert unknown.returncode == 2 and "unknown task 'demo.nope'" in unknown.stderr
    bad = conveyor("submit", "demo.add", "1", "two", env=env)
    assert bad.returncode == 2 and "valid integer" in bad.stderr
    malformed = conveyor("submit", "demo.add", "--kwarg", "novalue", env=env)
    assert malformed.returncode == 2 and "expected key=value" in malformed.stderr
    missing = conveyor("jobs", "show", "nope", env=env)
    assert missing.returncode == 1 and "no job with id" in missing.stderr


def test_jobs_list_show_and_cancel(services: Any, client: Any) -> None:
    env = services.env()
    job_id = conveyor("submit", "demo.add", "3", "4", "--countdown", "60", env=env).stdout.strip()
    listed = conveyor("jobs", "list", "--state", "scheduled", env=env)
    assert job_id[:8] in listed.stdout
    cancelled = conveyor("jobs", "cancel", job_id, env=env)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    shown = conveyor("jobs", "show", job_id, env=env)
    assert '"state": "cancelled"' in shown.stdout


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_up_serves_jobs_and_sigint_leaves_no_process(tmp_path: Path, artifacts: Path) -> None:
    port = 18000 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update({"CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_API_PORT": str(port)})
    log = open(artifacts / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "up", "-c", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    watched: list[psutil.Process] = []
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=90, interval=0.3, message="conveyor up to be ready")
        job = httpx.post(
            f"{base}/api/v1/jobs",
            json={"task": "demo.crunch", "kwargs": {"steps": 6, "delay": 0.2}},
        )
        assert job.status_code == 202
        job_id = job.json()["id"]
        saw_progress = False

        def finished() -> bool:
            nonlocal saw_progress
            body = httpx.get(f"{base}/api/v1/jobs/{job_id}").json()
            if body["progress"] and body["state"] == "running":
                saw_progress = True
            return body["state"] == "succeeded"

        wait_for(finished, timeout=60, message="demo job to succeed under `conveyor up`")
        assert saw_progress
        watched = _descendants(proc.pid)
        # The embedded servers run in their own sessions but are still our descendants.
        names = {p.name() for p in watched}
        assert {"postgres", "redis-server"} <= names, names
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(watched, timeout=10)
        assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in watched:
            if p.is_running():
                p.kill()
        log.close()
    time.sleep(0)
