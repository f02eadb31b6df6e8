"""Pausing a queue: every worker stops taking its jobs, also a worker started while it is
paused, and takes them again once it is resumed; jobs submitted meanwhile wait, none is lost."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.testing.client import submit, until_state
from conveyor.testing.services import Process, wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
QUEUE = "low"


def paused_on(client: Any, hostname_prefix: str) -> list[str] | None:
    for w in client.get("/api/v1/workers").json():
        if w["alive"] and w["hostname"].startswith(hostname_prefix):
            return list(w.get("paused_queues", []))
    return None


def test_pause_holds_jobs_across_workers_until_resumed(
    client: Any, services: Any, artifacts: Path
) -> None:
    try:
        r = client.post(f"/api/v1/queues/{QUEUE}/pause")
        assert r.status_code == 200 and r.json() == {"name": QUEUE, "paused": True, "changed": True}
        assert client.post(f"/api/v1/queues/{QUEUE}/pause").json()["changed"] is False
        wait_for(
            lambda: paused_on(client, "testworker-") == [QUEUE],
            timeout=15,
            message="the test worker to stop consuming the paused queue",
        )
        queues = {q["name"]: q for q in client.get("/api/v1/queues").json()}
        assert queues[QUEUE]["paused"] and not queues["default"]["paused"]

        job = client.post(
            "/api/v1/jobs", json={"task": "demo.add", "args": [1, 2], "queue": QUEUE}
        ).json()
        other = submit(client, "demo.add", 3, 4)  # the other queues keep running
        until_state(client, other["id"], "succeeded")

        # A worker started while the queue is paused does not take its jobs either.
        extra = Process(
            ["worker", "-c", "1", "-Q", QUEUE, "-n", f"pausetest-{os.getpid()}@%h"],
            services.env(),
            artifacts / "pause-worker.log",
        ).start()
        try:
            wait_for(
                lambda: paused_on(client, "pausetest-") == [QUEUE],
                timeout=60,
                message="the late worker to honour the pause",
            )
            time.sleep(2)  # two heartbeats: time enough to take the job, were it not paused
            assert client.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "queued"
            page = client.get("/queues").text
            assert f'data-queue="{QUEUE}" data-paused="true"' in page

            resumed = client.post(
                f"/queues/{QUEUE}/pause", data={"op": "resume"}, headers=SAME_ORIGIN
            )
            assert resumed.status_code == 200 and f"Resumed {QUEUE}" in resumed.text
            until_state(client, job["id"], "succeeded", timeout=30)
            wait_for(
                lambda: paused_on(client, "pausetest-") == [],
                timeout=15,
                message="the late worker to consume again",
            )
        finally:
            extra.stop()
    finally:
        client.post(f"/api/v1/queues/{QUEUE}/resume")
    wait_for(lambda: paused_on(client, "testworker-") == [], timeout=15, message="resumed")

    missing = client.post("/api/v1/queues/nope/pause")
    assert missing.status_code == 404 and "no queue named 'nope'" in missing.json()["detail"]
    odd = client.post(f"/queues/{QUEUE}/pause", data={"op": "sleep"}, headers=SAME_ORIGIN)
    assert odd.status_code == 400
