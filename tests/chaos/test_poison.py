"""Poison messages through the broker: refused, dead-lettered with the reason and the message
as it arrived, the worker alive (the same process) and still working, on Redis and RabbitMQ;
and a pickle is never deserialised (a canary file proves it)."""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from datetime import UTC, datetime
from decimal import Decimal
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


def publish_raw(
    settings: Any,
    body: bytes,
    *,
    content_type: str,
    headers: dict[str, Any],
    content_encoding: str | None = None,
) -> None:
    # The same transport options as the workers (the Redis transport's key separator), and
    # the session's own default queue (CONVEYOR_TASK_DEFAULT_QUEUE keeps runs on a shared
    # RabbitMQ apart).
    options = celery_config(settings)["broker_transport_options"]
    if content_encoding is None:
        content_encoding = "binary" if content_type != "application/json" else "utf-8"
    with Connection(settings.broker_url, transport_options=options) as conn:
        producer = conn.Producer()
        producer.publish(
            body,
            exchange=Exchange("conveyor", type="direct"),
            routing_key=settings.task_default_queue,
            content_type=content_type,
            content_encoding=content_encoding,
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


# --- every kind of malformed message, one at a time, with a real worker ---------------------

MARK = "{mark}"  # replaced by a marker unique to each case, to find its dead letter


def good_body(first: Any = MARK) -> Any:
    return [[first], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


# name -> (headers changes (None value = header removed), body, content type, encoding)
KOMBU_CASES: dict[str, tuple[dict[str, Any], Any, str, str | None]] = {
    "body is an object": ({}, {"a": MARK}, "application/json", None),
    "body has two parts": ({}, [[MARK], {}], "application/json", None),
    "body is a string": ({}, MARK, "application/json", None),
    "args is an object": ({}, [{"m": MARK}, {}, {}], "application/json", None),
    "kwargs is a list": ({}, [[MARK], [1], {}], "application/json", None),
    "options is a string": ({}, [[MARK], {}, "x"], "application/json", None),
    "callbacks is a string": ({}, [[MARK], {}, {"callbacks": "x"}], "application/json", None),
    "chord is a list": ({}, [[MARK], {}, {"chord": [1]}], "application/json", None),
    "timelimit is text": ({"timelimit": "abc"}, good_body(), "application/json", None),
    "timelimit of texts": ({"timelimit": ["abc", "def"]}, good_body(), "application/json", None),
    "timelimit of three": ({"timelimit": [1, 2, 3]}, good_body(), "application/json", None),
    "timelimit negative": ({"timelimit": [-1, None]}, good_body(), "application/json", None),
    "retries is text": ({"retries": "x"}, good_body(), "application/json", None),
    "retries negative": ({"retries": -1}, good_body(), "application/json", None),
    "eta is not a date": ({"eta": "not a date"}, good_body(), "application/json", None),
    "eta is a number": ({"eta": 12345}, good_body(), "application/json", None),
    "eta is empty": ({"eta": ""}, good_body(), "application/json", None),
    "expires is not a date": ({"expires": "soon"}, good_body(), "application/json", None),
    "expires is a list": ({"expires": [1]}, good_body(), "application/json", None),
    "id is a number": ({"id": 123}, good_body(), "application/json", None),
    "id is missing": ({"id": None}, good_body(), "application/json", None),
    "id is empty": ({"id": ""}, good_body(), "application/json", None),
    "task is a number": ({"task": 42}, good_body(), "application/json", None),
    "task has a NUL": ({"task": "demo.add\x00evil"}, good_body(), "application/json", None),
    "task is unknown": ({"task": "no.such.task"}, good_body(), "application/json", None),
    "argsrepr is a number": ({"argsrepr": 5}, good_body(), "application/json", None),
    "kwargsrepr is a list": ({"kwargsrepr": ["x"]}, good_body(), "application/json", None),
    "root_id is a number": ({"root_id": 5}, good_body(), "application/json", None),
    "parent_id is an object": ({"parent_id": {"a": 1}}, good_body(), "application/json", None),
    "ignore_result is text": ({"ignore_result": "yes"}, good_body(), "application/json", None),
    "content type is text": ({}, good_body(), "text/plain", "utf-8"),
    "content type is pickle": ({}, good_body(), "application/x-python-serialize", "binary"),
    "compression is bogus": (
        {"compression": "application/x-gzip"},
        good_body(),
        "application/json",
        None,
    ),
    "body is not JSON": ({}, b"this is not json " + MARK.encode(), "application/json", None),
    "body is not UTF-8": ({}, b"\xff\xfe\x00 " + MARK.encode(), "application/json", None),
    "no headers": ({"*": None}, good_body(), "application/json", None),
    "protocol 1 args is text": (
        {"*": None},
        {"task": "demo.add", "id": "v1-" + MARK, "args": MARK, "kwargs": {}},
        "application/json",
        None,
    ),
}

REDIS_CASES: dict[str, bytes] = {
    "entry is not JSON": b"this is not json " + MARK.encode(),
    "entry is not UTF-8": b"\xff\xfe\x00 " + MARK.encode(),
    "entry is an object": json.dumps({"a": MARK}).encode(),
    "entry is a list": json.dumps([MARK]).encode(),
    "entry body is not base64": json.dumps(
        {
            "body": "!!" + MARK,
            "headers": {},
            "properties": {
                "body_encoding": "base64",
                "delivery_tag": "t",
                "delivery_info": {"exchange": "conveyor", "routing_key": "x"},
            },
        }
    ).encode(),
    "entry headers is a list": json.dumps(
        {
            "body": MARK,
            "headers": [1],
            "properties": {
                "delivery_tag": "t",
                "delivery_info": {"exchange": "conveyor", "routing_key": "x"},
            },
        }
    ).encode(),
    "entry over 64 KiB": MARK.encode() + b"x" * 70_000,
}


def _marked(value: Any, mark: str) -> Any:
    if isinstance(value, bytes):
        return value.replace(MARK.encode(), mark.encode())
    return json.loads(json.dumps(value).replace(MARK, mark))


@pytest.fixture(scope="module")
def worker_pid(client: Any, runtime: Any) -> int:
    proc = runtime["worker"].proc
    assert proc is not None and proc.poll() is None
    return int(proc.pid)


def _is_amqp(settings: Any) -> bool:
    return str(settings.broker_url or "").startswith(("amqp", "pyamqp"))


def _dead_letter_with(client: Any, mark: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = client.get("/api/v1/dlq", params={"q": mark})
        items = r.json()["items"] if r.status_code == 200 else []
        return items[0] if items else None

    found = wait_for(check, timeout=30, message=f"a dead letter mentioning {mark}")
    return client.get(f"/api/v1/jobs/{found['id']}").json()  # type: ignore[no-any-return]


def _still_working(client: Any, runtime: Any, pid: int) -> None:
    proc = runtime["worker"].proc
    assert proc is not None and proc.poll() is None, "the worker exited"
    assert proc.pid == pid, "the worker was replaced"
    job = client.post("/api/v1/jobs", json={"task": "demo.add", "args": [2, 3]}).json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "succeeded",
        timeout=60,
        message="a good job after the poison message",
    )


@pytest.mark.parametrize("case", list(KOMBU_CASES))
def test_malformed_message_is_dead_lettered(
    services: Any, client: Any, runtime: Any, worker_pid: int, case: str
) -> None:
    changes, body, content_type, encoding = KOMBU_CASES[case]
    mark = f"poison-{uuid.uuid4().hex[:12]}"
    headers = proto2_headers(str(uuid.uuid4()), "demo.echo")
    if "*" in changes:
        headers = {}
    for name, value in changes.items():
        if value is None:
            headers.pop(name, None)
        elif name != "*":
            headers[name] = value
    raw = _marked(body, mark)
    publish_raw(
        services.settings,
        raw if isinstance(raw, bytes) else json.dumps(raw).encode(),
        content_type=content_type,
        content_encoding=encoding,
        headers=headers,
    )
    job = _dead_letter_with(client, mark)
    assert job["state"] == "dead"
    assert job["error_type"] in {"UndecodableMessage", "InvalidMessage", "UnknownTask"}, job
    assert job["error_message"], job
    assert job["raw_message"] is not None and mark in job["raw_message"]["body_text"], job
    # On the dashboard: in the dead letters, and the job page shows the message as it arrived.
    assert job["id"] in client.get("/dlq", params={"q": mark}).text
    page = client.get(f"/jobs/{job['id']}").text
    assert "Message as it arrived" in page and mark in page
    _still_working(client, runtime, worker_pid)


@pytest.mark.parametrize("case", list(REDIS_CASES))
def test_unreadable_redis_entry_is_dead_lettered(
    services: Any, client: Any, runtime: Any, worker_pid: int, case: str
) -> None:
    if _is_amqp(services.settings):
        pytest.skip("a raw Redis list entry; RabbitMQ has no such thing")
    import redis

    mark = f"poison-{uuid.uuid4().hex[:12]}"
    entry = _marked(REDIS_CASES[case], mark)
    redis.Redis.from_url(services.settings.broker_url).lpush(
        services.settings.task_default_queue, entry
    )
    job = _dead_letter_with(client, mark)
    assert job["error_type"] == "UndecodableMessage", job
    raw = job["raw_message"]
    assert raw["size"] == len(entry), raw
    assert base64.b64decode(raw["body_base64"]) == entry[: 64 * 1024]
    assert raw["truncated"] is (len(entry) > 64 * 1024)
    _still_working(client, runtime, worker_pid)


# Raw AMQP: what only an AMQP client can send — no content type at all, and header values of
# values of table types JSON has no word for (timestamps, decimals) or of the wrong kind.
AMQP_CASES: dict[str, tuple[dict[str, Any] | None, str | None]] = {
    "no content type, no headers": (None, None),
    "id is a timestamp": ({"id": datetime(2026, 1, 1, tzinfo=UTC)}, "application/json"),
    "retries is a decimal": ({"retries": Decimal("1.5")}, "application/json"),
    "task is an array": ({"task": ["demo.add"]}, "application/json"),
    "timelimit is a table": ({"timelimit": {"hard": 1}}, "application/json"),
}


@pytest.mark.parametrize("case", list(AMQP_CASES))
def test_malformed_amqp_message_is_dead_lettered(
    services: Any, client: Any, runtime: Any, worker_pid: int, case: str
) -> None:
    if not _is_amqp(services.settings):
        pytest.skip("raw AMQP properties; run with CONVEYOR_TEST_BROKER_URL=amqp://…")
    changes, content_type = AMQP_CASES[case]
    mark = f"poison-{uuid.uuid4().hex[:12]}"
    headers = None
    if changes is not None:
        headers = {**proto2_headers(str(uuid.uuid4()), "demo.echo"), **changes}
    with Connection(services.settings.broker_url) as conn:
        channel = conn.default_channel
        message = channel.prepare_message(
            json.dumps(good_body(mark)).encode(),
            content_type=content_type,
            content_encoding="utf-8" if content_type else None,
            headers=headers,
        )
        channel.basic_publish(
            message, exchange="conveyor", routing_key=services.settings.task_default_queue
        )
    job = _dead_letter_with(client, mark)
    assert job["error_type"] in {"UndecodableMessage", "InvalidMessage"}, job
    assert mark in job["raw_message"]["body_text"], job
    _still_working(client, runtime, worker_pid)
