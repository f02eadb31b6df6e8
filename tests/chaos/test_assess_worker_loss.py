"""A worker is SIGKILLed in the middle of an assessment: once a new worker starts, the
assessment completes whole — the lost analyzers run again (their rows upserted, one per
analyzer, the attempt counted) and the chord still fires the synthesis and the report."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from conveyor.testing.assess_analyzers import EXTRAS
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

BASE = "/api/v1/assess"


@pytest.fixture(scope="module")
def stack(open_stack: Callable[..., Any]) -> Iterator[Any]:
    with open_stack("assess", own_broker=False, CONVEYOR_ASSESS_EXTRA_ANALYZERS=EXTRAS) as s:
        yield s


def kill_worker(stack: Any, name: str) -> None:
    worker = stack.workers.pop(name)
    assert worker.proc is not None
    for child in psutil.Process(worker.proc.pid).children(recursive=True):
        child.kill()
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)


def status(stack: Any, assessment_id: str) -> dict[str, Any]:
    r = stack.http.get(f"{BASE}/assessments/{assessment_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_assessment_completes_after_its_worker_is_killed(stack: Any) -> None:
    stack.start_worker("first", "-c", "2")
    r = stack.http.post(
        f"{BASE}/examples/startup/assessments",
        json={"example": "startup", "analyzers": ["cto", "cloud_engineer", "testing_steady",
                                                  "simulation", "compliance"]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assessment_id = r.json()["id"]
    assert stack.http.post(f"{BASE}/assessments/{assessment_id}/start").status_code == 202

    def steady_running() -> bool:
        a = {x["name"]: x for x in status(stack, assessment_id)["analyzers"]}["testing_steady"]
        return a["status"] == "running" and a["progress"] > 0

    wait_for(steady_running, timeout=60, interval=0.05, message="the steady analyzer running")
    kill_worker(stack, "first")
    stack.start_worker("second", "-c", "2")

    def ended() -> dict[str, Any] | None:
        s = status(stack, assessment_id)
        return s if s["status"] not in ("created", "running") else None

    done: dict[str, Any] = wait_for(ended, timeout=180, message="the assessment to end")
    assert done["status"] == "completed", (done["error"], done["analyzers"])
    assert done["partial"] is False, done["missing"]
    analyzers = {a["name"]: a for a in done["analyzers"]}
    assert all(a["status"] == "ok" for a in analyzers.values())
    assert analyzers["testing_steady"]["attempt"] == 2  # lost once, run again
    rows = stack.sql(
        "SELECT count(*) FROM assess_results WHERE assessment_id = :id", id=assessment_id
    )
    assert rows[0][0] == 5
    job = stack.job(analyzers["testing_steady"]["job_id"])
    assert [a["outcome"] for a in job["attempts"]] == ["lost", "succeeded"]
    report = stack.http.get(f"{BASE}/assessments/{assessment_id}/report")
    assert report.status_code == 200
    stack.stop_worker("second")
