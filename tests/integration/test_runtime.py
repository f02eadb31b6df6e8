"""Runtime behaviour through real workers: priorities, workflows, send_task, big results."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conveyor.testing.services import Process, python_last_line, wait_for

pytestmark = pytest.mark.broker


def ledger_rows(settings: Any, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    engine.dispose()
    return list(rows)


ON_RABBITMQ = os.environ.get("CONVEYOR_TEST_BROKER_URL", "").startswith("amqp")


@pytest.mark.skipif(
    ON_RABBITMQ,
    reason="RabbitMQ delivers round-robin across queues; Conveyor documents per-message "
    "priority (x-max-priority) as the RabbitMQ mechanism, tested below",
)
def test_priority_queues_drain_highest_first(services: Any, client: Any, artifacts: Any) -> None:
    names = ["t-critical", "t-high", "t-default", "t-low"]
    env = {**services.env(), "CONVEYOR_QUEUES": json.dumps(names)}
    # Publish lowest first, with no worker on these queues yet.
    code = (
        "from conveyor.demo import add\n"
        f"names = {names!r}\n"
        "ids = []\n"
        "for q in reversed(names):\n"
        "    for i in range(4):\n"
        "        ids.append((q, add.apply_async((i, 0), queue=q).id))\n"
        "import json; print(json.dumps(ids))\n"
    )
    published = json.loads(python_last_line(code, env))
    worker = Process(
        ["worker", "-c", "1", "-n", f"prio-{os.getpid()}@%h", "-Q", ",".join(names)],
        env,
        artifacts / "prio-worker.log",
    ).start()
    try:
        ids = [job_id for _, job_id in published]

        def all_done() -> list[Any] | None:
            rows = ledger_rows(
                services.settings,
                "SELECT id::text, queue, started_at FROM conveyor_jobs "
                "WHERE id::text = ANY(:ids) AND state = 'succeeded'",
                ids=ids,
            )
            return rows if len(rows) == len(ids) else None

        rows = wait_for(all_done, timeout=60, message="prioritised jobs to finish")
    finally:
        worker.stop()
        if ON_RABBITMQ:
            from kombu import Connection

            with Connection(services.settings.broker_url) as conn:
                for name in names:
                    conn.default_channel.queue_delete(name)
    order = [queue for _, queue, _ in sorted(rows, key=lambda r: r[2])]
    assert order == [q for q in names for _ in range(4)], order


def test_chain_records_parent_and_root(services: Any, client: Any) -> None:
    code = (
        "from celery import chain\n"
        "from conveyor.demo import add\n"
        "r = chain(add.s(1, 2), add.s(10), add.s(100)).delay()\n"
        "print(r.id)\n"
    )
    last_id = python_last_line(code, services.env())

    def finished() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{last_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "succeeded" else None

    last = wait_for(finished, timeout=30, message="chain to finish")
    root = last["root_id"]
    members = client.get("/api/v1/jobs", params={"root_id": root}).json()["items"]
    assert len(members) == 3
    by_id = {m["id"]: m for m in members}
    first = by_id[root]
    assert first["parent_id"] is None and first["args"] == [1, 2]
    middle = next(m for m in members if m["parent_id"] == root)
    assert last["parent_id"] == middle["id"]
    assert client.get(f"/api/v1/jobs/{last_id}/result").json()["result"] == 113
    assert [c["id"] for c in client.get(f"/api/v1/jobs/{root}").json()["children"]] == [
        middle["id"]
    ]


def test_chord_completes_with_results_kept_only_in_the_ledger(services: Any, client: Any) -> None:
    """Results are not written to the Redis result backend by default; a chord still joins
    its header's results (the backend's chord counter gets them) and its body runs."""
    code = (
        "from celery import chord\n"
        "from conveyor.demo import add, echo\n"
        "r = chord([add.s(i, i) for i in range(4)])(echo.s())\n"
        "print(r.id)\n"
    )
    body_id = python_last_line(code, services.env())

    def finished() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{body_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "succeeded" else None

    wait_for(finished, timeout=30, message="chord body to finish")
    result = client.get(f"/api/v1/jobs/{body_id}/result").json()["result"]
    assert sorted(result["args"][0]) == [0, 2, 4, 6]


def test_async_result_get_with_stored_results(services: Any, client: Any, artifacts: Any) -> None:
    """CONVEYOR_STORE_RESULTS=true in the caller and the worker: AsyncResult.get() works, as
    for an app that relies on Celery's result backend."""
    code = (
        "from conveyor.demo import add\n"
        "print(add.apply_async((20, 22), queue='t-results').get(timeout=30))\n"
    )
    env = {
        **services.env(),
        "CONVEYOR_STORE_RESULTS": "true",
        "CONVEYOR_QUEUES": '["t-results", "default"]',
    }
    worker = Process(
        ["worker", "-c", "1", "-n", f"results-{os.getpid()}@%h", "-Q", "t-results"],
        env,
        artifacts / "results-worker.log",
    ).start()
    try:
        assert python_last_line(code, env) == "42"
    finally:
        worker.stop()


def send_task_elsewhere(services: Any, call: str) -> str:
    """The id of ``app.<call>`` (a ``send_task``) made in a process without the task code;
    the id is printed as JSON (any string Celery accepts)."""
    code = (
        "import json\n"
        "import conveyor\n"
        # Production mode: the same queues as the worker's, without the task's code.
        "app = conveyor.create_celery('elsewhere')\n"
        f"print(json.dumps(app.{call}.id))\n"
    )
    return str(json.loads(python_last_line(code, services.env())))


def test_send_task_from_a_process_without_the_task_code(services: Any, client: Any) -> None:
    job_id = send_task_elsewhere(services, "send_task('demo.add', args=[7, 8])")

    def done() -> Any:
        r = client.get(f"/api/v1/jobs/{job_id}/result")
        return r.json() if r.status_code == 200 and r.json()["ready"] else None

    assert wait_for(done, timeout=30, message="send_task job")["result"] == 15


def test_large_results_are_stored_by_reference(client: Any, settings: Any) -> None:
    big = "x" * 200_000
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "args": [big]})
    job_id = r.json()["id"]

    def done() -> Any:
        body = client.get(f"/api/v1/jobs/{job_id}/result").json()
        return body if body["ready"] else None

    result = wait_for(done, timeout=30, message="big result")
    assert result["result"] == {"args": [big], "kwargs": {}}
    (ref,) = ledger_rows(settings, "SELECT result_ref FROM conveyor_jobs WHERE id = :id", id=job_id)
    assert ref[0] == f"blob:{job_id}"


def test_payload_over_the_cap_is_413(client: Any, settings: Any) -> None:
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "args": ["y" * 2_000_000]})
    assert r.status_code == 413
    assert "CONVEYOR_PAYLOAD_MAX_BYTES" in r.json()["detail"]


def test_message_priority_orders_jobs_within_a_queue(
    services: Any, client: Any, artifacts: Any
) -> None:
    queue = f"t-prio-{os.getpid()}"
    env = {**services.env(), "CONVEYOR_QUEUES": json.dumps([queue])}
    code = (
        "from conveyor.demo import add\n"
        "ids = []\n"
        "for p in [0, 3, 9, 1, 6, 9, 0, 3]:\n"
        f"    ids.append((p, add.apply_async((p, 0), queue={queue!r}, priority=p).id))\n"
        "import json; print(json.dumps(ids))\n"
    )
    published = json.loads(python_last_line(code, env))
    worker = Process(
        ["worker", "-c", "1", "-n", f"qprio-{os.getpid()}@%h", "-Q", queue],
        env,
        artifacts / "qprio-worker.log",
    ).start()
    try:
        ids = [job_id for _, job_id in published]

        def all_done() -> list[Any] | None:
            rows = ledger_rows(
                services.settings,
                "SELECT id::text, priority, started_at FROM conveyor_jobs "
                "WHERE id::text = ANY(:ids) AND state = 'succeeded'",
                ids=ids,
            )
            return rows if len(rows) == len(ids) else None

        rows = wait_for(all_done, timeout=60, message="prioritised jobs to finish")
    finally:
        worker.stop()
        if ON_RABBITMQ:
            from kombu import Connection

            with Connection(services.settings.broker_url) as conn:
                conn.default_channel.queue_delete(queue)
    started = [priority for _, priority, _ in sorted(rows, key=lambda r: r[2])]
    assert started == sorted(started, reverse=True), started


# Task ids Celery accepts that are not a UUID in its usual form (and one that is, in capitals).
ODD_TASK_IDS = {
    "order number": "order-{n}",
    "capital UUID": "{N}-0000-4000-8000-0000000000AB",  # capitals even when {N} is all digits
    "UUID in braces": "{{{N}-0000-4000-8000-000000000000}}",
    "spaces and unicode": "\u0437\u0430\u043a\u0430\u0437 {n} \u00b7 \u03b1",
    "query characters": "a?b#c&d=e+f-{n}",
    # (AMQP carries the task id as the correlation id too, a short string of at most 255 bytes)
    "long": "x" * 240 + "{n}",
    "NUL": "nul\x00{n}",
}


@pytest.mark.parametrize("case", list(ODD_TASK_IDS))
def test_any_task_id_celery_accepts_is_recorded(services: Any, client: Any, case: str) -> None:
    from urllib.parse import quote

    token = os.urandom(4).hex()
    task_id = ODD_TASK_IDS[case].format(n=token, N=token.upper())
    call = f"send_task('demo.add', args=[7, 8], task_id={task_id!r})"
    assert send_task_elsewhere(services, call) == task_id

    def done() -> Any:
        r = client.get(f"/api/v1/jobs/{quote(task_id, safe='')}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "succeeded" else None

    job = wait_for(done, timeout=30, message=f"job {task_id[:40]!r} in the ledger")
    canonical = task_id.lower() if case == "capital UUID" else None
    assert job["id"] == (canonical or job["id"])
    assert job["external_id"] == task_id.replace("\x00", "\\x00")
    assert job["attempts"] and job["attempts"][0]["outcome"] == "succeeded"
    result = client.get(f"/api/v1/jobs/{quote(task_id, safe='')}/result").json()
    assert result["result"] == 15
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["external_id"] == job["external_id"]
    page = client.get(f"/jobs/{quote(task_id, safe='')}")
    assert page.status_code == 200


def test_events_postgresql_refuses_are_recorded_escaped(services: Any, client: Any) -> None:
    # NUL and a lone surrogate: JSON carries them, Celery runs the task, PostgreSQL's jsonb
    # refuses both.
    job_id = send_task_elsewhere(
        services, "send_task('demo.echo', args=['nul\\x00', 'lone\\ud800'])"
    )

    def done() -> Any:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "succeeded" else None

    job = wait_for(done, timeout=30, message="the job with unstorable arguments")
    assert job["args"] == ["nul\\x00", "lone\\ud800"]


def test_unrecordable_events_are_counted(services: Any, client: Any) -> None:
    import redis

    from conveyor.ledger import events as ev

    def counted() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("conveyor_events_unrecordable_total "):
                return float(line.split()[1])
        raise AssertionError("conveyor_events_unrecordable_total is not exported")

    before = counted()
    events = redis.Redis.from_url(services.settings.redis_url)
    events.xadd(ev.STREAM, {"e": b"not an event"})
    events.xadd(ev.STREAM, {"e": json.dumps({"k": "no-such-state", "id": "x", "ts": 1})})
    wait_for(lambda: counted() >= before + 2, timeout=30, message="the unrecordable events count")


def test_job_with_a_task_id_that_is_not_a_uuid_is_terminated_on_cancel(
    services: Any, client: Any
) -> None:
    # Celery's revoke must get the task id it knows, not the ledger id derived from it.
    task_id = f"blocker-{os.urandom(4).hex()}"
    send_task_elsewhere(services, f"send_task('testing.block', args=[60], task_id={task_id!r})")

    def state(wanted: str) -> Any:
        r = client.get(f"/api/v1/jobs/{task_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] == wanted else None

    wait_for(lambda: state("running"), timeout=30, message="the blocking job to run")
    assert client.post(f"/api/v1/jobs/{task_id}/cancel").json()["cancel_requested"]
    # The cancel grace is 2 s in tests; then the reconciler sends SIGTERM through revoke.
    job = wait_for(lambda: state("cancelled"), timeout=30, message="the job to be terminated")
    assert job["attempts"][-1]["outcome"] == "cancelled"
