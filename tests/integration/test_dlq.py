"""Dead letters: jobs that used up their retries, replayed (with edited arguments) or purged."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


def dead_job(client: Any, x: int = -1) -> str:
    r = client.post("/api/v1/jobs", json={"task": "testing.doomed", "args": [x]})
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "dead",
        timeout=60,
        message=f"{job_id} to die",
    )
    return job_id


def result_of(client: Any, job_id: str) -> Any:
    def ready() -> Any:
        body = client.get(f"/api/v1/jobs/{job_id}/result").json()
        return body if body["ready"] else None

    return wait_for(ready, timeout=30, message=f"{job_id} to finish")


def test_dead_job_is_listed_with_its_attempts(client: Any) -> None:
    job_id = dead_job(client)
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert [a["outcome"] for a in job["attempts"]] == ["retrying", "dead"]
    assert job["error_type"] == "ValueError"
    listed = client.get("/api/v1/dlq", params={"task": "testing.doomed", "limit": 500}).json()
    assert job_id in [j["id"] for j in listed["items"]]
    assert all(j["state"] == "dead" for j in listed["items"])


def test_replay_with_edited_arguments(client: Any) -> None:
    job_id = dead_job(client)
    bad = client.post(f"/api/v1/dlq/{job_id}/replay", json={"args": ["seven"]})
    assert bad.status_code == 422 and "valid integer" in bad.text
    r = client.post(f"/api/v1/dlq/{job_id}/replay", json={"args": [21]})
    assert r.status_code == 202, r.text
    new = r.json()
    assert new["retry_of"] == job_id and new["args"] == [21]
    assert result_of(client, new["id"])["result"] == 42
    # Replayed jobs leave the dead-letter list unless asked for.
    ids = [j["id"] for j in client.get("/api/v1/dlq", params={"limit": 500}).json()["items"]]
    assert job_id not in ids
    everything = client.get("/api/v1/dlq", params={"limit": 500, "include_replayed": True})
    assert job_id in [j["id"] for j in everything.json()["items"]]


def test_replay_refuses_jobs_that_are_not_dead(client: Any) -> None:
    r = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 1]})
    job_id = r.json()["id"]
    result_of(client, job_id)
    refused = client.post(f"/api/v1/dlq/{job_id}/replay")
    assert refused.status_code == 409 and "not dead" in refused.text
    assert client.post(f"/api/v1/dlq/{uuid.uuid4()}/replay").status_code == 404
    assert client.post("/api/v1/dlq/garbage/replay").status_code == 404


def test_bulk_replay_and_purge_by_filter(client: Any) -> None:
    queue = "low"
    ids = []
    for _ in range(3):
        r = client.post(
            "/api/v1/jobs", json={"task": "testing.doomed", "args": [-2], "queue": queue}
        )
        ids.append(r.json()["id"])
    for job_id in ids:
        wait_for(
            lambda j=job_id: client.get(f"/api/v1/jobs/{j}").json()["state"] == "dead", timeout=60
        )
    replayed = client.post(
        "/api/v1/dlq/replay", json={"task": "testing.doomed", "queue": queue, "limit": 100}
    )
    assert replayed.status_code == 200
    assert replayed.json()["replayed"] >= 3
    # The replays die too (same arguments); purge everything dead from that queue.
    for new_id in replayed.json()["job_ids"]:
        wait_for(
            lambda j=new_id: client.get(f"/api/v1/jobs/{j}").json()["state"] == "dead", timeout=60
        )
    purged = client.post("/api/v1/dlq/purge", json={"queue": queue, "task": "testing.doomed"})
    assert purged.json()["purged"] >= 3
    for new_id in replayed.json()["job_ids"]:
        assert client.get(f"/api/v1/jobs/{new_id}").status_code == 404
    assert client.post("/api/v1/dlq/purge", json={"limit": 0}).status_code == 422
    assert client.post("/api/v1/dlq/purge", json={"nonsense": 1}).status_code == 422


def test_delete_one_dead_job(client: Any) -> None:
    job_id = dead_job(client)
    assert client.delete(f"/api/v1/dlq/{job_id}").json() == {"purged": 1}
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404


def test_dead_letters_are_one_set_for_list_count_purge_and_overview(
    client: Any, services: Any
) -> None:
    """Dead letters are dead jobs not yet replayed: listed, counted and purged alike, and a
    purge never leaves a replay's `retry_of` pointing at nothing (#11.11)."""
    marker = f"-{uuid.uuid4().int % 10**9 + 10**9}"  # in the error message: got -1xxxxxxxxx
    original = dead_job(client, int(marker))
    r = client.post(f"/api/v1/dlq/{original}/replay")
    assert r.status_code == 202, r.text
    replay = r.json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{replay}").json()["state"] == "dead",
        timeout=60,
        message="the replay to die as well",
    )
    other = dead_job(client, int(marker))
    listed = client.get("/api/v1/dlq", params={"q": marker, "limit": 500}).json()["items"]
    assert {j["id"] for j in listed} == {replay, other}
    assert matching(client.get("/dlq", params={"q": marker}).text) == 2
    # A replayed original is not deleted one by one either.
    kept = client.delete(f"/api/v1/dlq/{original}")
    assert kept.status_code == 409 and "replayed" in kept.json()["detail"]
    # The CLI's purge asks about what the dead-letters page counts; so does the overview.
    env = services.env()
    asked = conveyor_input(env, "n\n", "dlq", "purge", "--task", "testing.doomed")
    shown = matching(client.get("/dlq", params={"task": "testing.doomed"}).text)
    assert f"Delete {shown} dead letters" in asked.stdout + asked.stderr, asked
    overview = client.get("/").text
    figure = re.search(r'data-figure="dead-letters">([\d,]+)', overview)
    assert figure is not None
    assert int(figure.group(1).replace(",", "")) == matching(client.get("/dlq").text)
    purged = client.post("/api/v1/dlq/purge", json={"q": marker, "task": "testing.doomed"})
    assert purged.json() == {"purged": 2}
    assert client.get(f"/api/v1/jobs/{other}").status_code == 404
    assert client.get(f"/api/v1/jobs/{replay}").status_code == 404
    assert client.get(f"/api/v1/jobs/{original}").json()["state"] == "dead"


def conveyor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return conveyor_input(env, "", *args)


def conveyor_input(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=120,
    )


def matching(page: str) -> int:
    """The count in the dead-letters page's heading ("3 jobs match")."""
    found = re.search(r"<h1>Dead letters <span class=\"hint\">([\d,]+)", page)
    assert found is not None, page[:500]
    return int(found.group(1).replace(",", ""))


def test_dlq_cli(services: Any, client: Any) -> None:
    env = services.env()
    job_id = dead_job(client)
    listed = conveyor(env, "dlq", "list", "--task", "testing.doomed", "--limit", "500")
    assert listed.returncode == 0 and job_id[:8] in listed.stdout
    bad = conveyor(env, "dlq", "replay", job_id, "--args", "[1,")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    neither = conveyor(env, "dlq", "replay")
    assert neither.returncode == 2
    replayed = conveyor(env, "dlq", "replay", job_id, "--args", "[4]")
    assert replayed.returncode == 0, replayed.stderr
    assert result_of(client, replayed.stdout.strip())["result"] == 8
    other = dead_job(client, -3)
    purged = conveyor(env, "dlq", "purge", "--task", "testing.doomed", "--yes")
    assert purged.returncode == 0 and "purged" in purged.stderr
    assert client.get(f"/api/v1/jobs/{other}").status_code == 404


def test_bulk_replay_reports_jobs_it_cannot_replay(client: Any) -> None:
    good = dead_job(client, -5)
    # A dead job whose recorded arguments no longer fit its task (as a poison message's).
    from sqlalchemy import create_engine, text

    bad = dead_job(client, -6)
    engine = create_engine(client.app.state.services.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE conveyor_jobs SET args = '[]' WHERE id = :id"), {"id": bad})
    engine.dispose()
    r = client.post("/api/v1/dlq/replay", json={"task": "testing.doomed", "limit": 10_000})
    assert r.status_code == 200, r.text
    body = r.json()
    refused = {item["id"]: item["error"] for item in body["refused"]}
    assert bad in refused and "missing a required argument" in refused[bad]
    replayed_from = {client.get(f"/api/v1/jobs/{i}").json()["retry_of"] for i in body["job_ids"]}
    assert good in replayed_from
