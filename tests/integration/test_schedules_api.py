"""/api/v1/schedules against the real ledger and a real worker: CRUD, every bad input a 422
that stores nothing, pause/resume, trigger, backfill, next fires, runs, jobs by schedule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor.testing.client import new_schedule, schedule_count
from conveyor.testing.services import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("fresh_schedules")]

BASE = "/api/v1/schedules"


def create(client: Any, **body: Any) -> dict[str, Any]:
    return new_schedule(client, **{"task": "demo.add", "args": [1, 2], **body})


def test_crud(client: Any) -> None:
    s = create(client, cron="*/5 * * * *", timezone="Europe/Berlin", overlap="allow_all")
    assert s["trigger_kind"] == "cron" and s["cron"] == "*/5 * * * *"
    assert s["source"] == "user" and s["overridden"] == [] and not s["paused"]
    assert s["next_fire_at"] is not None and s["last_runs"] == [] and s["failure_streak"] == 0
    nxt = datetime.fromisoformat(s["next_fire_at"])
    assert nxt > datetime.now(UTC) and nxt.minute % 5 == 0

    by_id = client.get(f"{BASE}/{s['id']}").json()
    by_name = client.get(f"{BASE}/{s['name']}").json()
    assert by_id["id"] == by_name["id"] == s["id"]
    assert s["id"] in [x["id"] for x in client.get(BASE).json()]

    patched = client.patch(f"{BASE}/{s['id']}", json={"every": "90s", "kwargs": {}}).json()
    assert patched["trigger_kind"] == "interval" and patched["every"] == 90.0
    assert patched["cron"] is None and patched["overlap"] == "allow_all"

    assert client.delete(f"{BASE}/{s['id']}").status_code == 204
    assert client.get(f"{BASE}/{s['id']}").status_code == 404
    assert client.delete(f"{BASE}/{s['id']}").status_code == 404


def test_duplicate_name_is_409(client: Any) -> None:
    s = create(client, every=60)
    r = client.post(BASE, json={"name": s["name"], "task": "demo.noop", "every": 60})
    assert r.status_code == 409 and "exists" in r.json()["detail"]


IN_AN_HOUR = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"task": "demo.nope", "every": 60}, "unknown task"),
        ({"task": "demo.add", "args": [1], "every": 60}, "arguments do not match"),
        ({"task": "demo.add", "args": ["a", 2], "every": 60}, "arguments do not match"),
        ({"cron": "61 * * * *"}, "minute field"),
        ({"cron": "0 25 * * *"}, "hour field"),
        ({"cron": "0 0 * * 9"}, "day-of-week field"),
        ({"cron": "0 0 * *"}, "5 fields"),
        ({"cron": "@fortnightly"}, "unknown alias"),
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({"every": "0s"}, "every"),
        ({"every": "soon"}, "not an interval"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({}, "exactly one of cron, every or at"),
        ({"every": 60, "cron": "* * * * *"}, "exactly one"),
        ({"at": "2020-01-01T00:00:00Z"}, "in the past"),
        ({"at": "2030-01-01T00:00:00"}, "needs a timezone"),
        (
            {"every": 60, "start_at": IN_AN_HOUR, "end_at": "2026-01-01T00:00:00Z"},
            "end_at: must be after start_at",
        ),
        ({"every": 60, "queue": "nowhere"}, "unknown queue"),
        ({"every": 60, "priority": 12}, "priority"),
        ({"every": 60, "overlap": "sometimes"}, "overlap"),
        ({"every": 60, "catchup_max": 0}, "catchup_max"),
        ({"every": 60, "bogus": 1}, "bogus"),
        ({"every": 60, "name": ""}, "name"),
    ],
)
def test_bad_input_is_422_and_stores_nothing(
    client: Any, ledger: Any, body: dict[str, Any], says: str
) -> None:
    before = schedule_count(ledger)
    full = {"name": "bad-one", "task": "demo.add", "args": [1, 2], **body}
    r = client.post(BASE, json=full)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"], r.json()
    assert schedule_count(ledger) == before
    # The preview validates the same way, and stores nothing either.
    assert client.post(f"{BASE}/preview", json=full).status_code == 422
    assert schedule_count(ledger) == before


def test_bad_patch_is_422_and_changes_nothing(client: Any) -> None:
    s = create(client, cron="0 3 * * *")
    for patch in ({"cron": "0 3 * * * *"}, {"timezone": "Nowhere/Land"}, {"args": [1, 2, 3]}):
        r = client.patch(f"{BASE}/{s['id']}", json=patch)
        assert r.status_code == 422, (patch, r.text)
    after = client.get(f"{BASE}/{s['id']}").json()
    assert after["cron"] == "0 3 * * *" and after["timezone"] == "UTC" and after["args"] == [1, 2]


def test_preview_and_next(client: Any) -> None:
    body = {"name": "p", "task": "demo.noop", "cron": "@daily", "timezone": "America/New_York"}
    r = client.post(f"{BASE}/preview?n=3", json=body)
    assert r.status_code == 200, r.text
    fires = [datetime.fromisoformat(f) for f in r.json()["next_fires"]]
    assert len(fires) == 3 and all(f.astimezone(UTC).hour in (4, 5) for f in fires)
    assert client.get(BASE, params={"q": "p"}).json() == [] or all(
        x["name"] != "p" for x in client.get(BASE).json()
    )
    s = create(client, task="demo.noop", args=[], every="1h", max_runs=2)
    nxt = client.get(f"{BASE}/{s['id']}/next", params={"n": 5}).json()["next_fires"]
    assert len(nxt) == 2  # max_runs caps the preview
    assert client.get(f"{BASE}/{s['id']}/next", params={"n": 0}).status_code == 422


def test_pause_and_resume(client: Any) -> None:
    s = create(client, every=60)
    paused = client.post(f"{BASE}/{s['id']}/pause", json={"note": "maintenance"}).json()
    assert paused["paused"] and paused["paused_note"] == "maintenance"
    assert paused["next_fire_at"] is None
    assert [x["id"] for x in client.get(BASE, params={"paused": True}).json()].count(s["id"]) == 1
    resumed = client.post(f"{BASE}/{s['id']}/resume").json()
    assert not resumed["paused"] and resumed["paused_note"] is None
    assert resumed["next_fire_at"] is not None


def test_trigger_runs_the_job_linked_to_the_schedule(client: Any) -> None:
    s = create(client, cron="0 0 1 1 *", args=[20, 22])
    r = client.post(f"{BASE}/{s['id']}/trigger")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def done() -> dict[str, Any] | None:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] == "succeeded" else None

    job = wait_for(done, timeout=30, message="the triggered job")
    assert job["schedule_id"] == s["id"]
    listed = client.get("/api/v1/jobs", params={"schedule": s["id"]}).json()["items"]
    assert [j["id"] for j in listed] == [job_id]
    assert client.get("/api/v1/jobs", params={"schedule": str(uuid.uuid4())}).json()["items"] == []

    runs = client.get(f"{BASE}/{s['id']}/runs").json()
    assert len(runs) == 1 and runs[0]["job_id"] == job_id
    assert runs[0]["outcome"] == "submitted" and runs[0]["state"] == "succeeded"
    assert client.get(f"{BASE}/{s['id']}").json()["last_runs"][0]["job_id"] == job_id


def test_backfill_runs_each_past_fire_once(client: Any) -> None:
    s = create(client, task="demo.noop", args=[], cron="0 * * * *")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=3)
    body = {"start": start.isoformat(), "end": end.isoformat()}
    first = client.post(f"{BASE}/{s['id']}/backfill", json=body)
    assert first.status_code == 202, first.text
    ids = first.json()["job_ids"]
    assert len(ids) == 3
    # Again: the same fires, the same jobs (one idempotency key per fire).
    assert client.post(f"{BASE}/{s['id']}/backfill", json=body).json()["job_ids"] == ids
    runs = client.get(f"{BASE}/{s['id']}/runs").json()
    assert sorted(r["job_id"] for r in runs) == sorted(ids)
    fire_times = sorted(datetime.fromisoformat(r["fire_time"]) for r in runs)
    assert fire_times == [end - timedelta(hours=2), end - timedelta(hours=1), end]

    for bad in (
        {"start": end.isoformat(), "end": start.isoformat()},
        {"start": start.isoformat(), "end": (end + timedelta(days=2)).isoformat()},
        {"start": (end - timedelta(days=100)).isoformat(), "end": end.isoformat()},
        {"start": "2026-01-01T00:00:00", "end": end.isoformat()},
    ):
        r = client.post(f"{BASE}/{s['id']}/backfill", json=bad)
        assert r.status_code == 422, (bad, r.text)


def test_unknown_schedule_is_404_everywhere(client: Any) -> None:
    ref = str(uuid.uuid4())
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/trigger"),
        ("POST", "/reset"),
        ("GET", "/next"),
        ("GET", "/runs"),
    ):
        r = client.request(method, f"{BASE}/{ref}{path}", json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)


def test_reset_of_a_user_schedule_is_refused(client: Any) -> None:
    s = create(client, every=60)
    r = client.post(f"{BASE}/{s['id']}/reset")
    assert r.status_code == 422 and "not declared by code" in r.json()["detail"]
