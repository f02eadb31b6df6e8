"""The `conveyor` CLI as a user runs it: a subprocess, against the real stack."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.ledger.migrate import upgrade
from conveyor.testing.services import _fresh_database, wait_for

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import ConveyorUp


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
    # Values are JSON first, text otherwise, then checked strictly: "5" (JSON) is a string,
    # refused for an int instead of failing in the worker (#11.9).
    quoted = conveyor("submit", "demo.add", "-k", 'x="5"', "-k", "y=1", env=env)
    assert quoted.returncode == 2 and "x: Input should be a valid integer" in quoted.stderr
    assert "read as JSON" in quoted.stderr
    malformed = conveyor("submit", "demo.add", "--kwarg", "novalue", env=env)
    assert malformed.returncode == 2 and "expected key=value" in malformed.stderr
    missing = conveyor("jobs", "show", "nope", env=env)
    assert missing.returncode == 1 and "no job with id" in missing.stderr
    no_queue = conveyor("queues", "pause", "nope", env=env)
    assert no_queue.returncode == 2 and "no queue named 'nope'" in no_queue.stderr


def test_queues_pause_and_resume(services: Any, client: Any) -> None:
    env = services.env()
    paused = conveyor("queues", "pause", "low", env=env)
    try:
        assert paused.returncode == 0 and "low paused" in paused.stdout, paused.stderr
        listed = conveyor("queues", env=env)
        row = next(line for line in listed.stdout.splitlines() if " low " in f" {line} ")
        assert "paused" in row
    finally:
        resumed = conveyor("queues", "resume", "low", env=env)
    assert resumed.returncode == 0 and "low resumed" in resumed.stdout
    again = conveyor("queues", "resume", "low", env=env)
    assert "already running" in again.stdout


def test_jobs_list_show_and_cancel(services: Any, client: Any) -> None:
    env = services.env()
    job_id = conveyor("submit", "demo.add", "3", "4", "--countdown", "60", env=env).stdout.strip()
    listed = conveyor("jobs", "list", "--state", "scheduled", env=env)
    assert job_id[:8] in listed.stdout
    cancelled = conveyor("jobs", "cancel", job_id, env=env)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    shown = conveyor("jobs", "show", job_id, env=env)
    assert '"state": "cancelled"' in shown.stdout
    refused = conveyor("jobs", "run-now", job_id, env=env)
    assert refused.returncode == 1 and "only scheduled jobs can be run now" in refused.stderr

    later = conveyor("submit", "demo.add", "5", "6", "--countdown", "3600", env=env).stdout.strip()
    now = conveyor("jobs", "run-now", later, env=env)
    assert now.returncode == 0 and "due now" in now.stdout, now.stderr
    wait_for(
        lambda: '"state": "succeeded"' in conveyor("jobs", "show", later, env=env).stdout,
        timeout=30,
        message="the job run now",
    )


def test_lists_that_find_nothing_say_so(services: Any) -> None:
    """An empty table reads like an error; each list command says it found nothing instead."""
    env = services.env()
    jobs = conveyor("jobs", "list", "--state", "failed", "--task", "no.such.task", env=env)
    assert jobs.returncode == 0, jobs.stderr
    assert jobs.stdout.strip() == "no jobs match"
    dead = conveyor("dlq", "list", "--task", "no.such.task", env=env)
    assert dead.returncode == 0, dead.stderr
    assert dead.stdout.strip() == "no dead jobs match"
    # A ledger of its own, with no key and no user in it.
    empty = {**env, "CONVEYOR_DATABASE_URL": _fresh_database(services.settings.database_url)}
    upgrade(empty["CONVEYOR_DATABASE_URL"])
    keys = conveyor("keys", "list", env=empty)
    assert keys.returncode == 0, keys.stderr
    assert keys.stdout.startswith("no API keys"), keys.stdout
    users = conveyor("users", "list", env=empty)
    assert users.returncode == 0, users.stderr
    assert users.stdout.startswith("no users;"), users.stdout
    assert conveyor("jobs", "list", env=empty).stdout.strip() == "no jobs yet"
    # A Redis database no worker ever beat in.
    redis_url = services.settings.redis_url
    if redis_url.startswith("redis://") and redis_url.rsplit("/", 1)[-1].isdigit():
        empty["CONVEYOR_REDIS_URL"] = redis_url.rsplit("/", 1)[0] + "/13"
        nobody = conveyor("workers", env=empty)
        assert nobody.returncode == 0, nobody.stderr
        assert nobody.stdout.startswith("no worker has sent a heartbeat"), nobody.stdout


def test_up_serves_jobs_and_sigint_leaves_no_process(
    conveyor_up: Callable[[str], ConveyorUp],
) -> None:
    up = conveyor_up("up.log").wait_ready()
    job_id = up.submit("demo.crunch", steps=6, delay=0.2)
    saw_progress = False

    def finished() -> bool:
        nonlocal saw_progress
        body = up.get(f"/api/v1/jobs/{job_id}")
        if body["progress"] and body["state"] == "running":
            saw_progress = True
        return bool(body["state"] == "succeeded")

    wait_for(finished, timeout=60, message="demo job to succeed under `conveyor up`")
    assert saw_progress
    # The embedded servers run in their own sessions but are still its descendants.
    names = {p.name() for p in up.descendants()}
    assert {"postgres", "redis-server"} <= names, names
    assert up.interrupt(group=False, timeout=60) == 0
    left = up.left_running()
    assert left == [], f"left running: {left}"


@pytest.mark.broker
def test_dlq_list_and_jobs_show_a_poison_message(services: Any, client: Any) -> None:
    """A refused message whose task name and body look like Rich markup is listed as text,
    and `jobs show` finds it by the task id it carried (not a UUID) with its raw body."""
    import json
    import uuid

    from kombu import Connection, Exchange

    from conveyor.runtime.app import celery_config

    task_id = f"poison-[/x]-{uuid.uuid4().hex[:8]}"
    settings = services.settings
    headers = {"task": "odd.[/red]name", "id": task_id, "timelimit": "abc", "lang": "py"}
    options = celery_config(settings)["broker_transport_options"]
    with Connection(settings.broker_url, transport_options=options) as conn:
        conn.Producer().publish(
            json.dumps([["[/x] body"], {}, {}]).encode(),
            exchange=Exchange("conveyor", type="direct"),
            routing_key=settings.task_default_queue,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            declare=[],
        )

    def shown() -> dict[str, Any] | None:
        out = conveyor("jobs", "show", task_id, env=services.env())
        return json.loads(out.stdout) if out.returncode == 0 else None

    job = wait_for(shown, timeout=60, message="the refused message in the ledger")
    assert job["state"] == "dead" and job["error_type"] == "InvalidMessage"
    assert job["external_id"] == task_id
    assert "[/x] body" in job["raw_message"]["body_text"]
    wide = {**services.env(), "COLUMNS": "400"}  # one table row per line
    listed = conveyor("dlq", "list", "--error-type", "InvalidMessage", "--limit", "500", env=wide)
    assert listed.returncode == 0, listed.stderr
    assert job["id"] in listed.stdout and "odd.[/red]name" in listed.stdout
