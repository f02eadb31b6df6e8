"""Bulk actions on the jobs list, through the real ledger and worker: cancel and retry a
selection; cancel everything a filter matches, only after a confirmation naming the count."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def submit(client: Any, task: str, *args: Any, **options: Any) -> str:
    r = client.post("/api/v1/jobs", json={"task": task, "args": list(args), **options})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def state(client: Any, job_id: str) -> str:
    return str(client.get(f"/api/v1/jobs/{job_id}").json()["state"])


def test_cancel_and_retry_a_selection(client: Any) -> None:
    later = [submit(client, "demo.add", i, 0, countdown=3600) for i in range(3)]
    done = submit(client, "demo.add", 20, 22)
    wait_for(lambda: state(client, done) == "succeeded", message="demo.add to finish")
    page = client.get("/jobs", headers={"accept": "text/html"}).text
    assert 'value="cancel-selected"' in page and f'name="id" value="{later[0]}"' in page

    r = client.post(
        "/jobs/bulk",
        data={"op": "cancel-selected", "id": [*later, done, "not-an-id"]},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 200 and "Cancelled 3 waiting job(s); 0 running" in r.text
    assert {state(client, j) for j in later} == {"cancelled"}
    assert state(client, done) == "succeeded"  # finished jobs are left alone

    r = client.post("/jobs/bulk", data={"op": "retry-selected", "id": [done]}, headers=SAME_ORIGIN)
    assert "Retried 1 finished job(s)" in r.text
    retried = client.get("/api/v1/jobs", params={"task": "demo.add"}).json()["items"]
    assert any(j["retry_of"] == done for j in retried)


def test_cancel_all_matching_asks_first(client: Any) -> None:
    marker = f"bulk-{uuid.uuid4().hex[:8]}"
    ids = [submit(client, "demo.echo", marker, i, countdown=3600) for i in range(4)]
    ask = client.post(
        "/jobs/bulk", data={"op": "cancel-matching", "q": marker}, headers=SAME_ORIGIN
    )
    assert ask.status_code == 200 and "Cancel 4 jobs?" in ask.text
    assert {state(client, j) for j in ids} == {"scheduled"}
    r = client.post(
        "/jobs/bulk",
        data={"op": "cancel-matching", "q": marker, "confirmed": "true"},
        headers=SAME_ORIGIN,
    )
    assert "Cancelled 4 waiting job(s)" in r.text
    assert {state(client, j) for j in ids} == {"cancelled"}
    refused = client.post(
        "/jobs/bulk",
        data={"op": "cancel-matching", "q": marker, "confirmed": "true"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status_code == 403


def test_time_filter_narrows_the_list_and_what_bulk_actions_touch(client: Any) -> None:
    marker = f"timed-{uuid.uuid4().hex[:8]}"
    ids = [submit(client, "demo.echo", marker, i, countdown=3600) for i in range(2)]
    html = {"accept": "text/html"}
    recent = client.get("/jobs", params={"q": marker, "within": "15m"}, headers=html).text
    assert all(f'data-job-id="{j}"' in recent for j in ids)
    assert 'option value="15m" selected' in recent
    old = client.get("/jobs", params={"q": marker, "before": "2020-01-01"}, headers=html).text
    assert not any(f'data-job-id="{j}"' in old for j in ids)
    assert 'name="before" value="2020-01-01T00:00"' in old

    # The bulk form carries the time filter, so "all matching" is what the list showed.
    nothing = client.post(
        "/jobs/bulk",
        data={"op": "cancel-matching", "q": marker, "before": "2020-01-01"},
        headers=SAME_ORIGIN,
    )
    assert "Cancel 0 jobs?" in nothing.text or "No jobs match" in nothing.text
    assert {state(client, j) for j in ids} == {"scheduled"}
    r = client.post(
        "/jobs/bulk",
        data={"op": "cancel-matching", "q": marker, "within": "1h", "confirmed": "true"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 200
    assert {state(client, j) for j in ids} == {"cancelled"}

    bad = client.get("/jobs", params={"within": "forever", "after": "yesterday"}, headers=html)
    assert bad.status_code == 400
    assert "unknown time range" in bad.text and "is not a date" in bad.text


def test_run_scheduled_jobs_now(client: Any) -> None:
    one, two, three = (submit(client, "demo.add", i, 1, countdown=3600) for i in range(3))
    assert state(client, one) == "scheduled"
    r = client.post(f"/api/v1/jobs/{one}/run-now")
    assert r.status_code == 200 and r.json()["id"] == one
    wait_for(lambda: state(client, one) == "succeeded", timeout=30, message="run-now job")
    again = client.post(f"/api/v1/jobs/{one}/run-now")
    assert again.status_code == 409 and "only scheduled jobs" in again.json()["detail"]
    assert client.post("/api/v1/jobs/not-a-job/run-now").status_code in (404, 422)

    page = client.post(
        "/jobs/bulk", data={"op": "runnow-selected", "id": [two, three, one]}, headers=SAME_ORIGIN
    )
    assert page.status_code == 200
    assert "2 scheduled job(s) due now; 1 selected job(s) were not scheduled" in page.text
    for job_id in (two, three):
        wait_for(lambda j=job_id: state(client, j) == "succeeded", timeout=30, message="run now")
    refused = client.post(
        "/jobs/bulk", data={"op": "runnow-matching", "q": "x"}, headers=SAME_ORIGIN
    )
    assert "unknown action" in refused.text
