"""/metrics through real workers: the counters follow jobs submitted over the API and with
plain .delay(), outcomes and run times; the gauges are there."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Any) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def finish(client: Any, ids: list[str]) -> None:
    def done() -> bool:
        answers = [client.get(f"/api/v1/jobs/{i}") for i in ids]
        return all(
            r.status_code == 200 and r.json()["state"] in ("succeeded", "failed", "dead")
            for r in answers
        )

    wait_for(done, timeout=60, message="jobs to finish")


def test_counters_and_histogram_follow_jobs(client: Any) -> None:
    before = scrape(client)
    ids = [
        client.post("/api/v1/jobs", json={"task": "demo.add", "args": [i, 1]}).json()["id"]
        for i in range(3)
    ]
    ids.append(client.post("/api/v1/jobs", json={"task": "demo.fail"}).json()["id"])
    finish(client, ids)
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    add = {"task": "demo.add", "queue": "default"}
    assert delta("conveyor_jobs_submitted_total", **add) == 3
    assert delta("conveyor_jobs_finished_total", **add, state="succeeded") == 3
    assert (
        delta("conveyor_jobs_finished_total", task="demo.fail", queue="default", state="failed")
        == 1
    )
    assert delta("conveyor_job_runtime_seconds_count", task="demo.add") == 3
    assert delta("conveyor_job_runtime_seconds_sum", task="demo.add") > 0
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in after.items()
        if name == "conveyor_job_runtime_seconds_bucket" and dict(labels)["task"] == "demo.add"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (
        float("inf"),
        value(after, "conveyor_job_runtime_seconds_count", task="demo.add"),
    )

    assert value(after, "conveyor_workers_alive") >= 1
    assert ("conveyor_queue_depth", (("queue", "default"),)) in after
    assert ("conveyor_queue_oldest_age_seconds", (("queue", "default"),)) in after
    assert value(after, "conveyor_jobs", state="running") >= 0
    assert ("conveyor_ledger_lag_seconds", ()) in after
    assert ("conveyor_ledger_pending_events", ()) in after


def test_delay_from_another_process_counts_as_submitted(services: Any, client: Any) -> None:
    before = scrape(client)
    job_id = python_last_line(
        "from conveyor.demo import add\nprint(add.delay(2, 2).id)\n", services.env()
    )
    finish(client, [job_id])
    after = scrape(client)
    labels = {"task": "demo.add", "queue": "default"}
    name = "conveyor_jobs_submitted_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_metrics_needs_a_read_key_when_auth_is_on(settings: Any) -> None:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from sqlalchemy import create_engine

    from conveyor.api import create_app
    from conveyor.ledger import keys

    secured = settings.model_copy(
        update={
            "auth": "required",
            "secret_key": SecretStr(secrets.token_urlsafe(48)),
            "auth_cache_seconds": 0.0,
        }
    )
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:
        reader = keys.create_key(conn, f"metrics-reader-{uuid.uuid4()}", ("jobs:read",)).secret
        other = keys.create_key(conn, f"metrics-dlq-{uuid.uuid4()}", ("dlq:admin",)).secret
    engine.dispose()
    with TestClient(create_app(secured)) as c:
        assert c.get("/metrics").status_code == 401
        denied = c.get("/metrics", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403 and "jobs:read" in denied.text
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert ok.status_code == 200 and "conveyor_jobs_submitted_total" in ok.text
