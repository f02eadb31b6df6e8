"""The tasks pages: the registered tasks with their counts, and a submit form generated from a
task's signature that runs the job, or comes back with what was wrong."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def test_tasks_list_and_submit_form(client: Any) -> None:
    listing = client.get("/tasks")
    assert listing.status_code == 200
    assert 'data-task="demo.add"' in listing.text and 'data-task="demo.crunch"' in listing.text

    form = client.get("/tasks/demo.crunch").text
    assert 'name="steps"' in form and 'value="20"' in form and 'name="delay"' in form

    bad = client.post("/tasks/demo.add/submit", data={"x": "two", "y": "3"}, headers=SAME_ORIGIN)
    assert bad.status_code == 422 and "x: &#39;two&#39; is not a whole number" in bad.text
    assert 'value="two"' in bad.text  # what was typed comes back

    ok = client.post(
        "/tasks/demo.add/submit",
        data={"x": "40", "y": "2", "queue": "high", "priority": "7"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert ok.status_code == 303
    job_id = ok.headers["location"].rsplit("/", 1)[1]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded",
        timeout=30,
        message="the submitted job",
    )
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["queue"], job["priority"], job["kwargs"]) == ("high", 7, {"x": 40, "y": 2})
    assert client.get(f"/api/v1/jobs/{job_id}/result").json()["result"] == 42
    # The listing's last-day figures count it (from the ledger's statistics).
    row = client.get("/tasks").text.split('data-task="demo.add"', 1)[1].split("</tr>", 1)[0]
    submitted = row.split('data-field="submitted">', 1)[1].split("<", 1)[0]
    assert int(submitted.replace(",", "")) >= 1

    assert client.get("/tasks/no.such.task").status_code == 404
    cross = client.post(
        "/tasks/demo.add/submit",
        data={"x": "1", "y": "1"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403


def test_each_task_shows_the_limits_and_retries_that_really_apply(
    client: Any, services: Any
) -> None:
    """API, CLI and the Tasks page show the same limits (#11.10), and a task nothing retries
    is not listed with Celery's default "3 retries" (#11.14)."""
    tasks = {t["name"]: t for t in client.get("/api/v1/tasks").json()}
    rated = tasks["testing.rated"]["limits"]
    assert rated["global_rate_limit"] == "5/s" and rated["rate_burst"] == 1
    per_customer = tasks["testing.per_customer"]["limits"]
    assert (per_customer["max_concurrency"], per_customer["limit_key"]) == (2, "customer")
    assert tasks["demo.fail"]["limits"]["retry"] is None
    flaky = tasks["demo.flaky"]["limits"]["retry"]
    assert flaky["on"] == ["FlakyError"] and flaky["max_retries"] == 4
    assert (flaky["backoff"], flaky["backoff_max"], flaky["jitter"]) == (1, 10, True)

    page = client.get("/tasks").text

    def cell(task: str) -> str:
        row = page.split(f'data-task="{task}"', 1)[1].split("</tr>", 1)[0]
        return row.split('data-field="limits">', 1)[1].split("</td>", 1)[0]

    assert cell("demo.fail") == "soft 300 s / hard 330 s; no retries"
    assert "4 retries on FlakyError, backoff 1 to 10 s" in cell("demo.flaky")
    assert cell("testing.rated").startswith("5/s global")
    assert cell("testing.per_customer").startswith("2 at once per customer")
    assert "no retries" in client.get("/tasks/demo.fail").text

    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "tasks"],
        env={**services.env(), "COLUMNS": "250"},
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    line = next(ln for ln in shown.stdout.splitlines() if "testing.rated" in ln)
    assert "5/s global" in line and "no retries" in line
