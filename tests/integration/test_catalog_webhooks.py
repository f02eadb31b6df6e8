"""Webhooks through the API and a real worker, received by a real local HTTP server: signed
deliveries, retries after failures, the test button, one event per import, disabling."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.packs import psycopg_url
from conveyor.packs.catalog.events import verify
from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.receiver import Receiver
from conveyor.testing.services import truncate, wait_for

API = "/api/v1/catalog"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")


@pytest.fixture()
def hooks(settings: Any, receiver: Receiver) -> Iterator[Receiver]:
    """The session's receiver (the one internal address the API and worker may send to,
    CONVEYOR_EGRESS_ALLOW) with empty catalog tables and no requests recorded yet."""
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        truncate(conn, "catalog_products", "catalog_webhooks", "catalog_imports")
    receiver.reset()
    yield receiver
    receiver.reset()


def add_hook(client: Any, url: str, events: list[str]) -> dict[str, Any]:
    resp = client.post(f"{API}/webhooks", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.text
    hook: dict[str, Any] = resp.json()
    assert hook["secret"].startswith("whsec_")
    return hook


def test_product_changes_are_delivered_signed(client: Any, hooks: Receiver) -> None:
    hook = add_hook(
        client, hooks.url + "/a", ["product.created", "product.updated", "product.deleted"]
    )
    assert "secret" not in client.get(f"{API}/webhooks/{hook['id']}").json() or (
        client.get(f"{API}/webhooks/{hook['id']}").json()["secret"] is None
    )
    made = client.post(f"{API}/products", json={"sku": "W-1", "name": "Whisk"}).json()
    client.patch(f"{API}/products/{made['id']}", json={"name": "Whisk 2"})
    client.delete(f"{API}/products/{made['id']}")
    wait_for(lambda: len(hooks.on("/a")) == 3, timeout=30, message="three deliveries")
    bodies = []
    for req in hooks.on("/a"):
        h = req.headers
        assert verify(hook["secret"], h["X-Conveyor-Timestamp"], req.body,
                      h["X-Conveyor-Signature"])  # fmt: skip
        assert not verify("whsec_wrong", h["X-Conveyor-Timestamp"], req.body,
                          h["X-Conveyor-Signature"])  # fmt: skip
        body = json.loads(req.body)
        assert h["X-Conveyor-Event"] == body["event"]
        bodies.append(body)
    assert sorted(b["event"] for b in bodies) == [
        "product.created",
        "product.deleted",
        "product.updated",
    ]
    assert {b["data"]["sku"] for b in bodies} == {"W-1"}
    # Every time in a payload is ISO 8601 with T, in UTC, the event's and the product's alike.
    created = bodies[0]["data"]["created_at"]
    for stamp in [created, *(b["created_at"] for b in bodies)]:
        assert ISO_UTC.fullmatch(stamp), stamp
    log = client.get(f"{API}/webhooks/{hook['id']}/deliveries").json()
    wait_for(
        lambda: all(
            d["state"] == "succeeded"
            for d in client.get(f"{API}/webhooks/{hook['id']}/deliveries").json()
        ),
        timeout=10,
        message="delivery log to say succeeded",
    )
    assert len(log) == 3 and {d["status_code"] for d in log} <= {200, None}


def test_failed_deliveries_are_retried_with_backoff(client: Any, hooks: Receiver) -> None:
    hooks.script["/flaky"] = [(500, b""), (503, b""), (200, b"")]
    hook = add_hook(client, hooks.url + "/flaky", ["product.created"])
    client.post(f"{API}/products", json={"sku": "R-1", "name": "Retry"})
    wait_for(lambda: len(hooks.on("/flaky")) == 3, timeout=60, message="third attempt")
    ids = {json.loads(r.body)["id"] for r in hooks.on("/flaky")}
    assert len(ids) == 1  # the same delivery, tried three times

    def settled() -> dict[str, Any] | None:
        log = client.get(f"{API}/webhooks/{hook['id']}/deliveries").json()
        return log[0] if log and log[0]["state"] == "succeeded" else None

    delivery = wait_for(settled, timeout=10, message="the delivery to succeed")
    assert delivery["attempts"] == 3 and delivery["status_code"] == 200
    job = wait_for(
        lambda: (
            (j := client.get(f"/api/v1/jobs/{delivery['job_id']}").json())["state"] == "succeeded"
            and j
        ),
        timeout=10,
        message="the delivery job to be recorded as succeeded",
    )
    assert job["attempt"] == 3  # one job, retried: Conveyor's retries, not new jobs


def test_the_test_button_reports_code_and_time(client: Any, hooks: Receiver) -> None:
    hook = add_hook(client, hooks.url + "/t", ["product.created"])
    ok = client.post(f"{API}/webhooks/{hook['id']}/test").json()
    assert ok["ok"] is True and ok["status_code"] == 200 and ok["response_ms"] >= 0
    assert json.loads(hooks.on("/t")[0].body)["event"] == "webhook.test"
    assert client.post(f"{API}/webhooks/999999/test").status_code == 404


SECRET_BODY = b"INTERNAL-ONLY secret=hunter2"


def test_the_test_button_and_the_log_never_show_the_receivers_body(
    client: Any, hooks: Receiver
) -> None:
    hooks.script["/down"] = [(502, SECRET_BODY)]
    down = add_hook(client, hooks.url + "/down", ["product.created"])
    bad = client.post(f"{API}/webhooks/{down['id']}/test")
    assert bad.json()["ok"] is False and bad.json()["status_code"] == 502
    assert bad.json()["error"] == "HTTP 502"
    page = client.post(f"/catalog/webhooks/{down['id']}/test")
    assert "failed: HTTP 502" in page.text
    log = client.get(f"{API}/webhooks/{down['id']}/deliveries")
    assert [d["error"] for d in log.json()] == ["HTTP 502", "HTTP 502"]
    for text in (bad.text, page.text, log.text, client.get(f"/catalog/webhooks/{down['id']}").text):
        assert "hunter2" not in text and "INTERNAL-ONLY" not in text


@pytest.fixture()
def internal() -> Iterator[Receiver]:
    """A second local server, on a port CONVEYOR_EGRESS_ALLOW does not list: an internal
    service (Redis, PostgreSQL, an admin endpoint) a webhook must not reach."""
    server = Receiver()
    server.script["/"] = [(500, SECRET_BODY)]
    server.start()
    yield server
    server.stop()


# The URLs of issue 11 item 4; {port} is the internal server's.
INTERNAL_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://localhost:{port}/",
    "http://0:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f.1:{port}/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://user:pass@127.0.0.1:{port}/",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_destinations_are_refused_when_saved(
    client: Any, hooks: Receiver, internal: Receiver, url: str
) -> None:
    target = url.format(port=internal.port)
    resp = client.post(f"{API}/webhooks", json={"url": target, "events": ["product.created"]})
    assert resp.status_code == 422, resp.text
    assert "the webhook URL is refused" in resp.text
    hook = add_hook(client, hooks.url + "/fine", ["product.created"])
    changed = client.patch(f"{API}/webhooks/{hook['id']}", json={"url": target})
    assert changed.status_code == 422, changed.text
    assert internal.received == []


def _stored_url(settings: Any, hook_id: int, url: str) -> None:
    """A URL saved before the check existed (or whose name now resolves elsewhere)."""
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("UPDATE catalog_webhooks SET url = %s WHERE id = %s", (url, hook_id))


def test_a_refused_destination_is_refused_at_send_time_too(
    client: Any, settings: Any, hooks: Receiver, internal: Receiver
) -> None:
    hook = add_hook(client, hooks.url + "/a", ["product.created"])
    _stored_url(settings, hook["id"], f"{internal.url}/")
    tested = client.post(f"{API}/webhooks/{hook['id']}/test").json()
    assert tested["ok"] is False and tested["status_code"] is None
    assert tested["error"].startswith("refused: 127.0.0.1 is a loopback address")
    # A delivery job: dead at once (a retry would be refused again), the reason in the log.
    client.post(f"{API}/products", json={"sku": "SSRF-1", "name": "Probe"})

    def settled() -> dict[str, Any] | None:
        log = client.get(f"{API}/webhooks/{hook['id']}/deliveries").json()
        done = [d for d in log if d["event"] == "product.created" and d["state"] == "dead"]
        return done[0] if done else None

    dead = wait_for(settled, timeout=30, message="the refused delivery to be dead")
    assert dead["attempts"] == 1 and dead["error"].startswith("refused: ")
    assert internal.received == []


def test_an_import_fires_one_event_and_disabled_hooks_get_none(
    client: Any, hooks: Receiver, tmp_path: Path
) -> None:
    hook = add_hook(client, hooks.url + "/imports",
                    ["import.completed", "product.created", "product.updated"])  # fmt: skip
    off = add_hook(client, hooks.url + "/off", ["import.completed"])
    resp = client.patch(f"{API}/webhooks/{off['id']}", json={"enabled": False})
    assert resp.json()["enabled"] is False
    path = write_sample(tmp_path / "p.csv", 2_000)
    imp = client.post(f"{API}/imports", content=path.read_bytes(),
                      headers={"Content-Type": "text/csv"}).json()  # fmt: skip
    wait_for(lambda: len(hooks.on("/imports")) == 1, timeout=60, message="import.completed")
    body = json.loads(hooks.on("/imports")[0].body)
    assert body["event"] == "import.completed"
    assert body["data"]["import_id"] == imp["id"] and body["data"]["inserted"] == 2_000
    assert hooks.on("/off") == []
    assert client.get(f"{API}/webhooks/{off['id']}/deliveries").json() == []
    listed = {h["id"]: h for h in client.get(f"{API}/webhooks").json()}
    assert listed[hook["id"]]["deliveries"] == 1
    assert (
        client.patch(f"{API}/webhooks/{hook['id']}", json={"events": ["nope"]}).status_code == 422
    )
    assert client.post(f"{API}/webhooks", json={"url": "ftp://x", "events": []}).status_code == 422
    rotated = client.patch(f"{API}/webhooks/{hook['id']}", json={"rotate_secret": True}).json()
    assert rotated["secret"] and rotated["secret"] != hook["secret"]
    assert client.delete(f"{API}/webhooks/{hook['id']}").status_code == 204
    assert client.get(f"{API}/webhooks/{hook['id']}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://[",
        "http://host:port/x",
        "ftp://x/y",
        "http:///x",
        "http://" + "a" * 70 + ".com/",  # a label over 63 characters
        "http://a..b/",  # an empty label
        "http://xn--a/",  # punycode that does not decode
    ],
)
def test_unusable_urls_are_refused(client: Any, hooks: Receiver, url: str) -> None:
    resp = client.post(f"{API}/webhooks", json={"url": url, "events": ["product.created"]})
    assert resp.status_code == 422, resp.text


def test_deliveries_whose_sender_died_are_swept(
    client: Any, hooks: Receiver, settings: Any
) -> None:
    """A change committed with its delivery recorded, then the process died before submitting
    the job: the beat's sweeper sends it, once."""
    add_hook(client, hooks.url + "/swept", ["product.created"])
    made = client.post(f"{API}/products", json={"sku": "SWEEP-1", "name": "Sent"}).json()
    wait_for(lambda: len(hooks.on("/swept")) == 1, timeout=30, message="the normal delivery")
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        sent = conn.execute(
            "SELECT count(*) FROM catalog_webhook_deliveries WHERE job_id IS NOT NULL"
        ).fetchone()
        assert sent is not None and sent[0] >= 1  # dispatch notes the job it submitted
        # What a crash between commit and submit leaves: a pending delivery with no job.
        conn.execute(
            "INSERT INTO catalog_webhook_deliveries (webhook_id, event, payload, created_at)"
            " SELECT id, 'product.created', %s::jsonb, now() - interval '3 minutes'"
            " FROM catalog_webhooks",
            (json.dumps({"sku": "ORPHAN-1", "id": made["id"]}),),
        )

    def sweep() -> dict[str, Any]:
        job = client.post("/api/v1/jobs", json={"task": "catalog.sweep_deliveries"}).json()

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/api/v1/jobs/{job['id']}/result").json()
            return body if body["ready"] else None

        done = wait_for(finished, timeout=30, message="the sweep job")
        assert done["state"] == "succeeded", done
        result: dict[str, Any] = done["result"]
        return result

    assert sweep() == {"sent": 1}
    wait_for(lambda: len(hooks.on("/swept")) == 2, timeout=30, message="the swept delivery")
    assert json.loads(hooks.on("/swept")[1].body)["data"]["sku"] == "ORPHAN-1"
    assert sweep() == {"sent": 0}  # noted as sent: never twice
