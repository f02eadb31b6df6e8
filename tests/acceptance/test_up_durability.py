"""Restarting `conveyor up` keeps the job history: its embedded PostgreSQL and Redis keep their
data under the home directory, and a new API and worker pick up where the old ones stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import ConveyorUp


def _finished(up: ConveyorUp, job_id: str) -> dict[str, Any]:
    """The job's detail once it has ended and its attempt is recorded."""

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = up.get(f"/api/v1/jobs/{job_id}")
        attempts = job["attempts"]
        if job["state"] in ("succeeded", "failed") and attempts and attempts[-1]["finished_at"]:
            return job
        return None

    found: dict[str, Any] = wait_for(ended, timeout=60, interval=0.2, message=f"job {job_id}")
    return found


def _history(up: ConveyorUp, job_ids: list[str]) -> dict[str, tuple[Any, Any]]:
    return {
        job_id: (_finished(up, job_id), up.get(f"/api/v1/jobs/{job_id}/result"))
        for job_id in job_ids
    }


def _stop(up: ConveyorUp) -> None:
    # Ctrl-C in a terminal: every process in the group gets SIGINT at once.
    assert up.interrupt(group=True, timeout=60) == 0, f"see {up.log_path}"
    left = up.left_running()
    assert left == [], f"left running after Ctrl-C: {left}"


def test_job_history_survives_a_restart_of_up(conveyor_up: Callable[[str], ConveyorUp]) -> None:
    first = conveyor_up("up-durability-1.log").wait_ready()
    added = first.submit("demo.add", 2, 3)
    failed = first.submit("demo.fail", "x")
    before = _history(first, [added, failed])
    job, result = before[added]
    assert job["state"] == "succeeded" and result["result"] == 5
    assert [a["outcome"] for a in job["attempts"]] == ["succeeded"]
    job, result = before[failed]
    assert job["state"] == "failed"
    assert (result["error_type"], result["error_message"]) == ("RuntimeError", "x")
    assert [a["outcome"] for a in job["attempts"]] == ["failed"]
    names = {p.name() for p in first.descendants()}
    assert {"postgres", "redis-server"} <= names, names
    _stop(first)

    second = conveyor_up("up-durability-2.log").wait_ready()
    # Same state, result, error and attempts: nothing lost, nothing run again.
    assert _history(second, [added, failed]) == before
    again = second.submit("demo.add", 20, 22)
    job = _finished(second, again)
    assert job["state"] == "succeeded"
    assert second.get(f"/api/v1/jobs/{again}/result")["result"] == 42
    second.descendants()
    _stop(second)
