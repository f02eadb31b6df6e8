"""The queues page, and purging a queue: the waiting jobs are cancelled in the ledger (so the
reconciler, which republishes only jobs still `queued`, never brings them back) and the
broker's queue is emptied."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from conveyor.runtime.queues import broker_queue_stats
from conveyor.testing.client import submit, until_state
from conveyor.testing.services import python_last_line

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
QUEUE = "default"


def test_purge_cancels_waiting_jobs_and_empties_the_queue(services: Any, client: Any) -> None:
    # A queue no worker consumes, so its jobs wait in the broker; named for this run, since a
    # machine's RabbitMQ outlives test sessions.
    name = f"t-purge-{uuid.uuid4().hex[:8]}"
    env = {
        **services.env(),
        "CONVEYOR_QUEUES": json.dumps(["critical", "high", "default", "low", name]),
    }
    code = (
        "from conveyor.control import Control\n"
        "from conveyor.demo import app\n"
        "from conveyor.ledger.db import make_engine\n"
        "from conveyor.runtime.context import runtime_of\n"
        "c = Control(app, make_engine(runtime_of(app).settings.database_url))\n"
        f"ids = [str(c.submit('demo.add', [i, i], queue='{name}')[0]['id']) for i in range(5)]\n"
        "import json; print(json.dumps(ids))\n"
    )
    ids = json.loads(python_last_line(code, env))
    app, control = client.app.state.services.app, client.app.state.services.control
    try:
        assert broker_queue_stats(app, [name])[0].depth == 5
        assert {client.get(f"/api/v1/jobs/{i}").json()["state"] for i in ids} == {"queued"}
        assert control.purge_queue(name) == 5
        assert broker_queue_stats(app, [name])[0].depth == 0
        for job_id in ids:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            assert job["state"] == "cancelled" and job["cancel_requested"]
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(name)


def test_queues_page_and_purge_confirmation(client: Any) -> None:
    job = submit(client, "demo.add", 1, 1)
    until_state(client, job["id"], "succeeded")
    page = client.get("/queues")
    assert page.status_code == 200
    for name in ("critical", "high", "default", "low"):
        assert f'data-queue="{name}"' in page.text
    # The queue that just ran a job shows a throughput above zero.
    default_row = page.text.split('data-queue="default"', 1)[1].split("</tr>", 1)[0]
    rate = re.search(r'data-field="throughput">([0-9.]+)', default_row)
    assert rate is not None and float(rate.group(1)) > 0
    ask = client.post(f"/queues/{QUEUE}/purge", headers=SAME_ORIGIN)
    assert ask.status_code == 200 and "cannot be undone" in ask.text
    missing = client.post("/queues/nope/purge", headers=SAME_ORIGIN)
    assert missing.status_code == 404
    refused = client.post(
        f"/queues/{QUEUE}/purge",
        data={"confirmed": "true"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status_code == 403
