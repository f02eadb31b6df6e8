"""The dead-letters page with a real worker: list, replay with edited arguments (and refuse
bad ones, keeping what was typed), replay and delete a selection, delete all matching only after
a confirmation that names the count."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def dead_job(client: Any, x: int) -> str:
    job_id = client.post("/api/v1/jobs", json={"task": "testing.doomed", "args": [x]}).json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "dead",
        timeout=30,
        message="testing.doomed to end dead",
    )
    return str(job_id)


def state(client: Any, job_id: str) -> int | str:
    r = client.get(f"/api/v1/jobs/{job_id}")
    return r.json()["state"] if r.status_code == 200 else r.status_code


def test_list_and_replay_with_edited_arguments(client: Any) -> None:
    job_id = dead_job(client, -7)
    page = client.get("/dlq", params={"task": "testing.doomed"}, headers={"accept": "text/html"})
    assert page.status_code == 200
    assert f'data-job-id="{job_id}"' in page.text and "x must not be negative" in page.text

    job_page = client.get(f"/jobs/{job_id}").text
    assert 'id="replay"' in job_page and 'name="args"' in job_page

    bad = client.post(
        f"/dlq/{job_id}/replay", data={"args": "[21,", "kwargs": "{}"}, headers=SAME_ORIGIN
    )
    assert bad.status_code == 422 and "not valid JSON" in bad.text and "[21," in bad.text
    wrong = client.post(
        f"/dlq/{job_id}/replay", data={"args": '["a", "b"]', "kwargs": "{}"}, headers=SAME_ORIGIN
    )
    assert wrong.status_code == 422  # two arguments for a task that takes one

    ok = client.post(
        f"/dlq/{job_id}/replay",
        data={"args": "[21]", "kwargs": "{}"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert ok.status_code == 303
    new_id = ok.headers["location"].split("/jobs/")[1].split("?")[0]
    wait_for(lambda: state(client, new_id) == "succeeded", timeout=30, message="the replay")
    assert client.get(f"/api/v1/jobs/{new_id}").json()["retry_of"] == job_id
    assert client.get(f"/api/v1/jobs/{new_id}/result").json()["result"] == 42
    # Replayed: gone from the default view, shown when asked for.
    assert f'data-job-id="{job_id}"' not in client.get("/dlq").text
    assert f'data-job-id="{job_id}"' in client.get("/dlq", params={"replayed": "true"}).text


def test_dead_job_page_shows_only_what_applies_to_a_dead_job(client: Any) -> None:
    """A dead job is replayed, not retried as well; its retry's ETA is history, not a
    "Scheduled for" (#11.14)."""
    job_id = dead_job(client, -9)
    assert client.get(f"/api/v1/jobs/{job_id}").json()["eta"] is not None  # it was retried
    html = client.get(f"/jobs/{job_id}").text
    assert ">Replay</button>" in html
    assert ">Retry</button>" not in html and ">Cancel</button>" not in html
    assert "Scheduled for" not in html


def test_selection_and_delete_all_matching_with_confirmation(client: Any) -> None:
    a, b, c = dead_job(client, -101), dead_job(client, -102), dead_job(client, -103)
    r = client.post("/dlq/act", data={"op": "delete-selected", "id": [a]}, headers=SAME_ORIGIN)
    assert r.status_code == 200 and "Deleted 1 dead job" in r.text
    assert state(client, a) == 404
    r = client.post("/dlq/act", data={"op": "replay-selected", "id": [b]}, headers=SAME_ORIGIN)
    assert "Replayed 1 dead job" in r.text
    # All matching: a text filter that only c's error matches; first a confirmation page.
    confirm = client.post(
        "/dlq/act", data={"op": "delete-matching", "q": "got -103"}, headers=SAME_ORIGIN
    )
    assert confirm.status_code == 200 and "Delete 1 dead job?" in confirm.text
    assert "cannot be undone" in confirm.text and state(client, c) == "dead"
    done = client.post(
        "/dlq/act",
        data={"op": "delete-matching", "q": "got -103", "confirmed": "true"},
        headers=SAME_ORIGIN,
    )
    assert "Deleted 1 dead job" in done.text and state(client, c) == 404


def test_actions_from_another_site_are_refused(client: Any) -> None:
    job_id = dead_job(client, -55)
    r = client.post(
        "/dlq/act",
        data={"op": "delete-selected", "id": [job_id]},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403 and state(client, job_id) == "dead"
