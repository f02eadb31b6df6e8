"""The workers page against real workers: heartbeats listed, a pool grown and shrunk through
Celery's remote control, a worker shut down after a confirmation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conveyor.testing.services import Process, wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def heartbeat(client: Any, hostname: str) -> dict[str, Any] | None:
    for w in client.get("/api/v1/workers").json():
        if w["hostname"] == hostname:
            return dict(w)
    return None


def test_workers_page_and_pool_control(client: Any) -> None:
    me = next(w for w in client.get("/api/v1/workers").json() if w["alive"])
    hostname, size = me["hostname"], me["processes"]
    page = client.get("/workers")
    assert page.status_code == 200
    assert f'data-worker="{hostname}"' in page.text and "alive" in page.text
    assert me["rss_bytes"] > 0

    r = client.post(f"/workers/{hostname}/pool", data={"op": "grow"}, headers=SAME_ORIGIN)
    assert r.status_code == 200 and "add a pool process" in r.text
    wait_for(
        lambda: (heartbeat(client, hostname) or {}).get("processes") == size + 1,
        timeout=30,
        message="the pool to grow by one",
    )
    client.post(f"/workers/{hostname}/pool", data={"op": "shrink"}, headers=SAME_ORIGIN)
    wait_for(
        lambda: (heartbeat(client, hostname) or {}).get("processes") == size,
        timeout=30,
        message="the pool to shrink back",
    )
    missing = client.post("/workers/nobody@nowhere/pool", data={"op": "grow"}, headers=SAME_ORIGIN)
    assert missing.status_code == 404


def test_shutdown_after_confirmation(services: Any, client: Any, artifacts: Path) -> None:
    name = f"shutdown-{os.getpid()}@test"
    worker = Process(
        ["worker", "-c", "1", "-n", name, "-Q", "default"], services.env(), artifacts / "shut.log"
    ).start()
    try:
        wait_for(lambda: heartbeat(client, name), timeout=60, message="the worker's heartbeat")
        ask = client.post(f"/workers/{name}/shutdown", headers=SAME_ORIGIN)
        assert ask.status_code == 200 and "Shut down" in ask.text
        assert worker.proc is not None and worker.proc.poll() is None  # not before confirming
        done = client.post(
            f"/workers/{name}/shutdown", data={"confirmed": "true"}, headers=SAME_ORIGIN
        )
        assert done.status_code == 200 and "shut down" in done.text
        assert worker.proc.wait(timeout=60) == 0
        assert heartbeat(client, name) is None  # it said goodbye
    finally:
        worker.stop()


def test_workers_page_lists_what_conveyor_up_supervises(services: Any, client: Any) -> None:
    import json

    import redis

    from conveyor.cli.supervisor import Child, Supervisor
    from conveyor.ledger import events as ev

    child = Child(f"worker-{os.getpid()}", ["worker"], restarts=2, last_exit="SIGKILL")
    child.restart_at = 0.0  # waiting to be started again: no process now
    supervisor = Supervisor([child], {}, services.settings.redis_url, lambda m, lv: None)
    supervisor.publish()
    try:
        page = client.get("/workers").text
        assert f'data-child="{child.name}" data-restarts="2"' in page
        row = page.split(f'data-child="{child.name}"', 1)[1].split("</tr>", 1)[0]
        assert "restarting" in row and "SIGKILL" in row

        # A supervisor that stopped rewriting its record (killed, not stopped) shows as gone.
        r = redis.Redis.from_url(services.settings.redis_url)
        field = f"{supervisor.host}/{child.name}"
        record = json.loads(r.hget(ev.SUPERVISED_KEY, field) or "{}")
        r.hset(ev.SUPERVISED_KEY, field, json.dumps({**record, "updated_at": 0}))
        row = client.get("/workers").text.split(f'data-child="{child.name}"', 1)[1]
        assert "gone" in row.split("</tr>", 1)[0]
    finally:
        supervisor.forget()
    assert f'data-child="{child.name}"' not in client.get("/workers").text
