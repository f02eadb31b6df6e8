"""`--log-format json`: every line a Conveyor process logs is one JSON object, and every record
about a job names the job, its task and its attempt, whoever logged it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.testing.services import Process, python_last_line, wait_for

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import ConveyorUp


def _records(path: Path) -> list[dict[str, Any]]:
    """Every line of the log as JSON; a line that is not JSON fails the test."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{path}:{number} is not JSON: {line!r}")
    return records


def _only(records: list[dict[str, Any]], contains: str) -> dict[str, Any]:
    found = [r for r in records if contains in r["message"]]
    assert len(found) == 1, (contains, found)
    return found[0]


@pytest.mark.broker
def test_worker_logs_json_tagged_with_job_task_and_attempt(
    services: Any, client: Any, artifacts: Path
) -> None:
    tag = f"jsonlogs-{os.getpid()}"
    log_path = artifacts / "json-worker.log"
    log_path.unlink(missing_ok=True)
    worker = Process(
        ["worker", "--log-format", "json", "-c", "1", "-Q", tag, "-n", f"{tag}@%h"],
        services.env(),
        log_path,
    ).start()
    try:
        wait_for(
            lambda: log_path.exists() and " ready." in log_path.read_text(),
            timeout=60,
            message="the JSON worker to be ready",
        )
        note = artifacts / f"{tag}-overrun-note.txt"
        code = (
            "from conveyor.testing.app import chatty, doomed, overrun\n"
            f"a = chatty.apply_async(('hello',), queue={tag!r})\n"
            f"b = doomed.apply_async((-1,), queue={tag!r})\n"
            f"c = overrun.apply_async(({str(note)!r}, True), queue={tag!r})\n"
            "print(a.id, b.id, c.id)\n"
        )
        chatty_id, doomed_id, overrun_id = python_last_line(code, services.env()).split()

        def state(job_id: str) -> str:
            return str(client.get(f"/api/v1/jobs/{job_id}").json().get("state"))

        wait_for(lambda: state(chatty_id) == "succeeded", timeout=60, message="chatty")
        wait_for(lambda: state(doomed_id) == "dead", timeout=60, message="doomed to end dead")
        wait_for(lambda: state(overrun_id) == "failed", timeout=60, message="overrun to time out")
    finally:
        worker.stop()

    records = _records(log_path)
    for r in records:
        assert {"timestamp", "level", "logger", "message", "process", "pid"} <= r.keys(), r
        assert r["timestamp"].endswith("Z"), r
    ready = _only(records, " ready.")
    assert ready["logger"] == "celery.apps.worker" and "job_id" not in ready

    host = os.uname().nodename
    job = {"job_id": chatty_id, "task": "testing.chatty", "attempt": 1, "queue": tag}
    for text, logger, level in [
        ("chatty says hello", "testing.chatty", "INFO"),  # plain `logging`
        ("chatty warns hello", "testing.chatty", "WARNING"),  # Celery's task logger
        ("chatty prints hello", "celery.redirected", "WARNING"),  # print()
        (f"testing.chatty[{chatty_id}] succeeded", "celery.app.trace", "INFO"),
    ]:
        r = _only(records, text)
        assert r["logger"] == logger and r["level"] == level, r
        assert {k: r.get(k) for k in job} == job, r
        assert r["worker"] == f"{tag}@{host}", r
    # Celery's "received" line comes from the worker's main process, before any attempt.
    received = _only(records, f"testing.chatty[{chatty_id}] received")
    assert received["job_id"] == chatty_id and received["task"] == "testing.chatty"
    assert "attempt" not in received

    # The doomed job is retried once and fails for good on its second attempt.
    retry = _only(records, f"testing.doomed[{doomed_id}] retry")
    assert (retry["job_id"], retry["task"], retry["attempt"]) == (doomed_id, "testing.doomed", 1)
    failed = _only(records, f"testing.doomed[{doomed_id}] raised unexpected")
    assert failed["level"] == "ERROR"
    assert (failed["job_id"], failed["task"], failed["attempt"]) == (doomed_id, "testing.doomed", 2)
    assert failed["exc_type"] == "ValueError"
    assert (
        failed["exc_info"].startswith("Traceback")
        and "x must not be negative" in failed["exc_info"]
    )
    # The worker's main process enforces the hard time limit and names the job in its message.
    for limit in ("Soft time limit (1s)", "Hard time limit (3s)"):
        r = _only(records, f"{limit} exceeded for testing.overrun[{overrun_id}]")
        assert r["process"] == "MainProcess", r
        assert (r["job_id"], r["task"]) == (overrun_id, "testing.overrun"), r
    # Nothing logged outside a job carries a job's fields.
    assert all("attempt" not in r for r in records if r.get("job_id") is None)


def test_up_and_all_its_children_log_json(conveyor_up: Callable[..., ConveyorUp]) -> None:
    up = conveyor_up("up-json.log", "--log-format", "json").wait_ready()
    job_id = up.submit("demo.fail", "logged as JSON")
    wait_for(
        lambda: up.get(f"/api/v1/jobs/{job_id}")["state"] == "failed",
        timeout=60,
        message="demo.fail to fail under `conveyor up`",
    )
    assert up.interrupt(group=False, timeout=60) == 0

    records = _records(up.log_path)
    pid_of = {
        process: _only(records, text)["pid"]
        for process, text in [
            ("up", "Conveyor is up"),
            ("api", "serving the API and dashboard"),
            ("worker", " ready."),  # "worker1@host ready."
            ("beat", "conveyor beat: scheduler"),
            ("recorder", "running: recorder, outbox-relay, reconciler"),
        ]
    }
    assert len(set(pid_of.values())) == 5, pid_of  # five processes, one format
    failed = _only(records, f"demo.fail[{job_id}] raised unexpected")
    assert (failed["job_id"], failed["task"], failed["attempt"]) == (job_id, "demo.fail", 1)
    assert "logged as JSON" in failed["exc_info"]
    assert _only(records, "Conveyor stopped.")["pid"] == pid_of["up"]
