"""Poison messages through the broker: refused, dead-lettered with the reason, worker alive,
and a pickle is never deserialised (a canary file proves it)."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange

from conveyor.runtime.app import celery_config
from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker


class Canary:
    """Unpickling this creates a file: proof that someone deserialised it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def publish_raw(settings: Any, body: bytes, *, content_type: str, headers: dict[str, Any]) -> None:
    # The same transport options as the workers (the Redis transport's key separator).
    options = celery_config(settings)["broker_transport_options"]
    with Connection(settings.broker_url, transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish(
            body,
            exchange=Exchange("conveyor", type="direct"),
            routing_key="default",
            content_type=content_type,
            content_encoding="binary" if content_type != "application/json" else "utf-8",
            headers=headers,
            declare=[],
        )


def dead(client: Any, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "dead" else None

    return wait_for(check, timeout=30, message=f"poison message {job_id} to be dead-lettered")


def proto2_headers(job_id: str, task: str) -> dict[str, Any]:
    return {
        "lang": "py",
        "task": task,
        "id": job_id,
        "root_id": job_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "test",
    }


def test_pickle_is_never_deserialised(services: Any, client: Any, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    job_id = str(uuid.uuid4())
    body = pickle.dumps(((Canary(canary),), {}, {}))
    publish_raw(
        services.settings,
        body,
        content_type="application/x-python-serialize",
        headers=proto2_headers(job_id, "demo.echo"),
    )
    job = dead(client, job_id)
    assert job["error_type"] in {"UndecodableMessage", "InvalidMessage"}
    assert "x-python-serialize" in job["error_message"], job["error_message"]
    assert not canary.exists(), "a pickle was deserialised"
    healthy = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 2]}).json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{healthy['id']}").json()["state"] == "succeeded",
        timeout=30,
        message="the worker to keep working",
    )


def test_unknown_content_type_and_unknown_task(services: Any, client: Any) -> None:
    odd = str(uuid.uuid4())
    publish_raw(
        services.settings,
        b"\x00\x01garbage",
        content_type="application/x-odd",
        headers=proto2_headers(odd, "demo.add"),
    )
    refused = dead(client, odd)
    assert refused["error_type"] in {"UndecodableMessage", "InvalidMessage"}
    assert "application/x-odd" in refused["error_message"], refused["error_message"]
    unknown = str(uuid.uuid4())
    body = json.dumps(
        [[1], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    ).encode()
    publish_raw(
        services.settings,
        body,
        content_type="application/json",
        headers=proto2_headers(unknown, "no.such.task"),
    )
    job = dead(client, unknown)
    assert job["error_type"] == "UnknownTask" and "no.such.task" in job["error_message"]


def test_malformed_json_body(services: Any, client: Any) -> None:
    job_id = str(uuid.uuid4())
    publish_raw(
        services.settings,
        b'{"not": "closed',
        content_type="application/json",
        headers=proto2_headers(job_id, "demo.add"),
    )
    job = dead(client, job_id)
    assert job["error_type"] in {"UndecodableMessage", "InvalidMessage"}
