"""Submit → real worker → ledger → API, on the broker CONVEYOR_TEST_BROKER_URL names."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker


def submit(
    client: Any, task: str, *args: Any, headers: dict[str, str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/jobs",
        json={"task": task, "args": list(args), "kwargs": kwargs},
        headers=headers or {},
    )
    assert r.status_code == 202, r.text
    return r.json()


def until_state(client: Any, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] in states else None

    return wait_for(check, timeout=timeout, message=f"job {job_id} to reach {states}")


def count_jobs(settings: Any) -> int:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one()
    engine.dispose()
    return int(n)


def test_submit_runs_and_records_result(client: Any) -> None:
    job = submit(client, "demo.add", 2, 3)
    assert job["state"] == "queued"
    done = until_state(client, job["id"], "succeeded")
    assert done["attempts"][0]["outcome"] == "succeeded"
    assert done["attempts"][0]["worker"].startswith("testworker-")
    assert done["started_at"] and done["finished_at"]
    result = client.get(f"/api/v1/jobs/{job['id']}/result").json()
    assert result == {
        "id": job["id"],
        "state": "succeeded",
        "ready": True,
        "result": 5,
        "error_type": None,
        "error_message": None,
    }


def test_location_header_points_at_the_job(client: Any) -> None:
    r = client.post("/api/v1/jobs", json={"task": "demo.noop"})
    assert r.headers["location"] == f"/api/v1/jobs/{r.json()['id']}"
    assert client.get(r.headers["location"]).status_code == 200


def test_failure_is_recorded_with_traceback(client: Any) -> None:
    job = submit(client, "demo.fail", "disk on fire")
    failed = until_state(client, job["id"], "failed")
    assert failed["error_type"] == "RuntimeError"
    assert failed["error_message"] == "disk on fire"
    assert "raise RuntimeError(message)" in failed["traceback"]
    assert failed["attempts"][0]["outcome"] == "failed"


def test_progress_is_visible_while_running(client: Any) -> None:
    job = submit(client, "demo.crunch", steps=30, delay=0.1)

    def mid_run() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/jobs/{job['id']}").json()
        p = body["progress"]
        return body if body["state"] == "running" and p and 0 < p["current"] < 30 else None

    running = wait_for(mid_run, timeout=30, message="progress mid-run")
    p = running["progress"]
    assert p["total"] == 30 and p["step"] == "crunching"
    assert 0 < p["percent"] < 100
    done = until_state(client, job["id"], "succeeded")
    assert done["progress"]["current"] == 30
    assert done["progress"]["rate"] > 0


def test_cancel_of_a_scheduled_job_means_it_never_runs(client: Any) -> None:
    r = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 1], "countdown": 2})
    job = r.json()
    assert job["state"] == "scheduled"
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    import time

    time.sleep(3.5)  # past its eta: the relay would have published it by now
    body = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert body["state"] == "cancelled" and body["attempts"] == []


def test_cancel_of_a_queued_job_skips_it(client: Any) -> None:
    # Occupy both pool processes so the next job waits in the queue.
    blockers = [submit(client, "demo.sleep", 3) for _ in range(2)]
    for b in blockers:
        until_state(client, b["id"], "running")
    job = submit(client, "demo.add", 40, 2)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    for b in blockers:
        until_state(client, b["id"], "succeeded")
    import time

    time.sleep(1.0)
    body = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert body["state"] == "cancelled"
    assert body["attempts"] == []
    assert client.get(f"/api/v1/jobs/{job['id']}/result").json()["result"] is None


def test_cancel_of_a_running_job_stops_it(client: Any, runtime: dict[str, Any]) -> None:
    job = submit(client, "demo.sleep", 30)
    until_state(client, job["id"], "running")
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
    done = until_state(client, job["id"], "cancelled", timeout=10)
    assert done["attempts"][0]["outcome"] == "cancelled"

    # A cancel is an outcome, not a crash: the worker logs it at INFO, without a traceback.
    def lines() -> list[str]:
        found = [line for line in runtime["worker"].log().splitlines() if job["id"] in line]
        return found if any("JobCancelled" in line for line in found) else []

    logged = wait_for(lines, timeout=10, message="the worker to log the cancel")
    cancel = [line for line in logged if "JobCancelled" in line]
    # (Text logs read "INFO/ForkPoolWorker-1"; a traceback's last line names the job too.)
    assert all("INFO" in line and "unexpected" not in line for line in cancel), cancel
    assert not any("ERROR" in line for line in logged), logged


def test_unknown_id_is_404_never_pending(client: Any) -> None:
    for bad in ("01a20384-bd97-75ff-aeb8-6fe7630da9e4", "not-a-uuid", "'; drop table x;--"):
        for suffix in ("", "/result", "/events"):
            r = client.get(f"/api/v1/jobs/{bad}{suffix}")
            assert r.status_code == 404, (bad, suffix, r.text)
            assert "no job with id" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"task": "demo.nope"}, "unknown task 'demo.nope'"),
        ({"task": "demo.add", "args": [1]}, "missing a required argument: 'y'"),
        ({"task": "demo.add", "args": [1, "two"]}, "y: Input should be a valid integer"),
        ({"task": "demo.add", "args": [1, 2], "kwargs": {"z": 3}}, "unexpected keyword"),
        ({"task": "demo.add", "args": [1, 2], "queue": "nowhere"}, "unknown queue 'nowhere'"),
        ({"task": "demo.add", "args": [1, 2], "priority": 12}, "less than or equal to 9"),
        ({"task": "demo.add", "args": "1,2"}, "valid list"),
        (
            {"task": "demo.add", "args": [1, 2], "countdown": 1, "eta": "2030-01-01T00:00:00Z"},
            "countdown or eta",
        ),
        ({"args": [1, 2]}, "Field required"),
    ],
)
def test_bad_submissions_are_422_and_enqueue_nothing(
    client: Any, settings: Any, body: dict[str, Any], fragment: str
) -> None:
    before = count_jobs(settings)
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.text
    assert count_jobs(settings) == before


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        # Not JSON numbers: answered 422, never a 500 from echoing them back (#11.8).
        ('{"task": "demo.sleep", "countdown": Infinity}', "countdown"),
        ('{"task": "demo.sleep", "countdown": NaN}', "countdown"),
        ('{"task": "demo.sleep", "countdown": 1e999}', "countdown"),
        ('{"task": "demo.echo", "args": [NaN]}', "NaN or infinite"),
        ('{"task": "demo.echo", "args": [1e999]}', "NaN or infinite"),
        ('{"task": "demo.echo", "kwargs": {"a": -Infinity}}', "NaN or infinite"),
        ('{"task": "demo.echo", "args": ["\\ud800"]}', "lone surrogate"),
        ('{"task": "demo.echo", "args": ["a\\udfffb"]}', "lone surrogate"),
        ('{"task": "demo.add", "args": [1, 2], "eta": "9999-12-31T00:00:00Z"}', "eta"),
        ('{"task": "demo.add", "args": [1, 2], "countdown": 31536001}', "countdown"),
        # Strict types: what is accepted is what the task gets (#11.8, #11.9).
        ('{"task": "demo.add", "args": [1, 2], "priority": true}', "priority"),
        ('{"task": "demo.add", "args": [1, 2], "priority": "5"}', "priority"),
        ('{"task": "demo.add", "args": [1, 2], "countdown": "5"}', "countdown"),
        ('{"task": "demo.add", "args": [true, 2]}', "x: Input should be a valid integer"),
        (
            '{"task": "demo.add", "kwargs": {"x": "5", "y": 1}}',
            "x: Input should be a valid integer",
        ),
    ],
)
def test_values_json_or_the_ledger_cannot_hold_are_422_with_the_error_body(
    client: Any, settings: Any, raw: str, fragment: str
) -> None:
    before = count_jobs(settings)
    r = client.post("/api/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and fragment in body["detail"], body
    assert body["error"] in ("InvalidRequest", "InvalidArguments", "InvalidSubmission"), body
    assert all(isinstance(p["msg"], str) for p in body["problems"])
    assert count_jobs(settings) == before


def test_option_errors_name_the_option_not_the_arguments(client: Any) -> None:
    r = client.post(
        "/api/v1/jobs", json={"task": "demo.noop"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "Idempotency-Key: must be 1..255 characters", r.text
    assert "arguments do not match" not in r.text


def test_every_error_answer_has_the_documented_body(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    documented = schema["components"]["schemas"]["ErrorBody"]
    assert documented["required"] == ["detail", "error"]
    submit = schema["paths"]["/api/v1/jobs"]["post"]["responses"]
    for status in ("401", "403", "409", "413", "422", "503"):
        ref = submit[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody"), (status, ref)
    for r in (
        client.get("/api/v1/no-such-route"),
        client.get("/api/v1/jobs", params={"limit": "many"}),
        client.post("/api/v1/jobs", json={"task": "demo.nope"}),
        client.get("/api/v1/jobs/not-a-job"),
    ):
        body = r.json()
        assert r.status_code in (404, 422), r.text
        assert isinstance(body["detail"], str) and isinstance(body["error"], str), body


def test_garbage_bodies_are_refused(client: Any, settings: Any) -> None:
    before = count_jobs(settings)
    for raw in (b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"task": 5}'):
        r = client.post("/api/v1/jobs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, raw
    assert count_jobs(settings) == before


def test_idempotency_key_yields_one_job(client: Any, settings: Any) -> None:
    headers = {"Idempotency-Key": "order-42-charge"}
    first = submit(client, "demo.add", 4, 4, headers=headers)
    again = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [4, 4]}, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [5, 5]}, headers=headers)
    assert other.status_code == 409
    assert first["id"] in other.text and "different payload" in other.text
    too_long = client.post(
        "/api/v1/jobs", json={"task": "demo.noop"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 422


def test_plain_delay_from_another_process_is_recorded(client: Any, services: Any) -> None:
    code = "from conveyor.demo import add\nr = add.delay(20, 22)\nprint(r.id)\n"
    job_id = python_last_line(code, services.env())
    done = until_state(client, job_id, "succeeded")
    assert done["task"] == "demo.add" and done["args"] == [20, 22]
    assert client.get(f"/api/v1/jobs/{job_id}/result").json()["result"] == 42


def test_retry_creates_a_linked_job(client: Any) -> None:
    job = submit(client, "demo.fail", "once")
    until_state(client, job["id"], "failed")
    r = client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert r.status_code == 202
    again = r.json()
    assert again["id"] != job["id"] and again["retry_of"] == job["id"]
    until_state(client, again["id"], "failed")
    running = submit(client, "demo.sleep", 2)
    until_state(client, running["id"], "running")
    assert client.post(f"/api/v1/jobs/{running['id']}/retry").status_code == 409


def test_flaky_task_retries_with_attempts_recorded(client: Any) -> None:
    job = submit(client, "demo.flaky", fail_rate=1.0)
    # max_retries=4 with backoff 1,2,4,8 (jittered down): ends dead after 5 attempts.
    dead = until_state(client, job["id"], "dead", timeout=60)
    assert dead["attempt"] == 5
    assert [a["outcome"] for a in dead["attempts"]] == ["retrying"] * 4 + ["dead"]
    assert dead["error_type"] == "FlakyError"


def test_listing_filters_and_paginates(client: Any) -> None:
    needle = f"needle{uuid.uuid4().hex[:8]}-"
    ids = [submit(client, "demo.echo", f"{needle}{i}")["id"] for i in range(5)]
    for i in ids:
        until_state(client, i, "succeeded")
    page1 = client.get("/api/v1/jobs", params={"task": "demo.echo", "q": needle, "limit": 3})
    body1 = page1.json()
    assert len(body1["items"]) == 3 and body1["next_cursor"]
    body2 = client.get(
        "/api/v1/jobs",
        params={"task": "demo.echo", "q": needle, "limit": 3, "cursor": body1["next_cursor"]},
    ).json()
    seen = [j["id"] for j in body1["items"] + body2["items"]]
    assert sorted(seen) == sorted(ids)
    assert seen == sorted(seen, reverse=True)  # newest first (ids are time-ordered)
    only_failed = client.get("/api/v1/jobs", params={"state": "failed", "task": "demo.echo"})
    assert only_failed.json()["items"] == []
    assert client.get("/api/v1/jobs", params={"state": "exploded"}).status_code == 422
    assert client.get("/api/v1/jobs", params={"cursor": "garbage!!"}).status_code == 422


def test_events_stream_until_terminal(client: Any) -> None:
    job = submit(client, "demo.crunch", steps=5, delay=0.1)
    seen: list[str] = []
    data: list[Any] = []
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
            elif line.startswith("data: "):
                data.append(json.loads(line.removeprefix("data: ")))
    assert seen[0] == "job"
    assert "progress" in seen
    assert seen[-1] == "job"
    # The final `job` event is the job as the REST API shows it: progress an object (it was
    # once sent as the text of a Python object, which left the job page's script stuck).
    final = data[-1]
    rest = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert final == {key: rest[key] for key in final}
    assert final["state"] == "succeeded" and final["progress"]["percent"] == 100


def test_tasks_workers_queues_and_health(client: Any) -> None:
    tasks = {t["name"]: t for t in client.get("/api/v1/tasks").json()}
    assert tasks["demo.add"]["schema"]["required"] == ["x", "y"]
    assert "Add two integers" in (tasks["demo.add"]["doc"] or "")
    workers = client.get("/api/v1/workers").json()
    w = next(w for w in workers if w["hostname"].startswith("testworker-"))
    assert w["alive"] and w["concurrency"] == 2 and "default" in w["queues"]
    queues = {q["name"]: q for q in client.get("/api/v1/queues").json()}
    assert set(queues) >= {"critical", "high", "default", "low"}
    assert queues["default"]["consumers"] >= 1
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok"
    assert client.get("/openapi.json").json()["paths"]["/api/v1/jobs"]


def test_listing_refuses_nul_and_forged_cursors(client: Any) -> None:
    import base64
    import json

    for params in ({"q": "a\x00b"}, {"task": "\x00"}, {"queue": "x\x00"}):
        r = client.get("/api/v1/jobs", params=params)
        assert r.status_code == 422, (params, r.text)
        assert "NUL" in r.text
    forged = base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "x"]).encode())
    r = client.get("/api/v1/jobs", params={"cursor": forged.decode()})
    assert r.status_code == 422 and "cursor" in r.text
