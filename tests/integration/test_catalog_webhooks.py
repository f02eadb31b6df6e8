"""Webhooks through the API and a real worker, received by a real local HTTP server: signed
deliveries, retries after failures, the test button, one event per import, disabling."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.embedded.process import free_port
from conveyor.packs import psycopg_url
from conveyor.packs.catalog.events import verify
from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.services import wait_for

API = "/api/v1/catalog"


class Receiver:
    """An HTTP server that records every POST and answers from a script of status codes."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}  # path -> statuses to answer, then 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                statuses = receiver.script.get(self.path) or [200]
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]


@pytest.fixture()
def receiver(settings: Any) -> Iterator[Receiver]:
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("TRUNCATE catalog_products, catalog_webhooks, catalog_imports CASCADE")
    r = Receiver()
    yield r
    r.server.shutdown()


def add_hook(client: Any, url: str, events: list[str]) -> dict[str, Any]:
    resp = client.post(f"{API}/webhooks", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.text
    hook: dict[str, Any] = resp.json()
    assert hook["secret"].startswith("whsec_")
    return hook


def test_product_changes_are_delivered_signed(client: Any, receiver: Receiver) -> None:
    hook = add_hook(
        client, receiver.url + "/a", ["product.created", "product.updated", "product.deleted"]
    )
    assert "secret" not in client.get(f"{API}/webhooks/{hook['id']}").json() or (
        client.get(f"{API}/webhooks/{hook['id']}").json()["secret"] is None
    )
    made = client.post(f"{API}/products", json={"sku": "W-1", "name": "Whisk"}).json()
    client.patch(f"{API}/products/{made['id']}", json={"name": "Whisk 2"})
    client.delete(f"{API}/products/{made['id']}")
    wait_for(lambda: len(receiver.on("/a")) == 3, timeout=30, message="three deliveries")
    bodies = []
    for req in receiver.on("/a"):
        h = req["headers"]
        assert verify(hook["secret"], h["X-Conveyor-Timestamp"], req["body"],
                      h["X-Conveyor-Signature"])  # fmt: skip
        assert not verify("whsec_wrong", h["X-Conveyor-Timestamp"], req["body"],
                          h["X-Conveyor-Signature"])  # fmt: skip
        body = json.loads(req["body"])
        assert h["X-Conveyor-Event"] == body["event"]
        bodies.append(body)
    assert sorted(b["event"] for b in bodies) == [
        "product.created",
        "product.deleted",
        "product.updated",
    ]
    assert {b["data"]["sku"] for b in bodies} == {"W-1"}
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


def test_failed_deliveries_are_retried_with_backoff(client: Any, receiver: Receiver) -> None:
    receiver.script["/flaky"] = [500, 503, 200]
    hook = add_hook(client, receiver.url + "/flaky", ["product.created"])
    client.post(f"{API}/products", json={"sku": "R-1", "name": "Retry"})
    wait_for(lambda: len(receiver.on("/flaky")) == 3, timeout=60, message="third attempt")
    ids = {json.loads(r["body"])["id"] for r in receiver.on("/flaky")}
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


def test_the_test_button_reports_code_and_time(client: Any, receiver: Receiver) -> None:
    hook = add_hook(client, receiver.url + "/t", ["product.created"])
    ok = client.post(f"{API}/webhooks/{hook['id']}/test").json()
    assert ok["ok"] is True and ok["status_code"] == 200 and ok["response_ms"] >= 0
    assert json.loads(receiver.on("/t")[0]["body"])["event"] == "webhook.test"
    receiver.script["/down"] = [502]
    down = add_hook(client, receiver.url + "/down", ["product.created"])
    bad = client.post(f"{API}/webhooks/{down['id']}/test").json()
    assert bad["ok"] is False and bad["status_code"] == 502 and "HTTP 502" in bad["error"]
    closed = add_hook(client, f"http://127.0.0.1:{free_port()}/x", ["product.created"])
    refused = client.post(f"{API}/webhooks/{closed['id']}/test").json()
    assert refused["ok"] is False and refused["status_code"] is None and refused["error"]
    assert client.post(f"{API}/webhooks/999999/test").status_code == 404


def test_an_import_fires_one_event_and_disabled_hooks_get_none(
    client: Any, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_hook(client, receiver.url + "/imports",
                    ["import.completed", "product.created", "product.updated"])  # fmt: skip
    off = add_hook(client, receiver.url + "/off", ["import.completed"])
    resp = client.patch(f"{API}/webhooks/{off['id']}", json={"enabled": False})
    assert resp.json()["enabled"] is False
    path = write_sample(tmp_path / "p.csv", 2_000)
    imp = client.post(f"{API}/imports", content=path.read_bytes(),
                      headers={"Content-Type": "text/csv"}).json()  # fmt: skip
    wait_for(lambda: len(receiver.on("/imports")) == 1, timeout=60, message="import.completed")
    body = json.loads(receiver.on("/imports")[0]["body"])
    assert body["event"] == "import.completed"
    assert body["data"]["import_id"] == imp["id"] and body["data"]["inserted"] == 2_000
    assert receiver.on("/off") == []
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
def test_unusable_urls_are_refused(client: Any, receiver: Receiver, url: str) -> None:
    resp = client.post(f"{API}/webhooks", json={"url": url, "events": ["product.created"]})
    assert resp.status_code == 422, resp.text


def test_deliveries_whose_sender_died_are_swept(
    client: Any, receiver: Receiver, settings: Any
) -> None:
    """A change committed with its delivery recorded, then the process died before submitting
    the job: the beat's sweeper sends it, once."""
    add_hook(client, receiver.url + "/swept", ["product.created"])
    made = client.post(f"{API}/products", json={"sku": "SWEEP-1", "name": "Sent"}).json()
    wait_for(lambda: len(receiver.on("/swept")) == 1, timeout=30, message="the normal delivery")
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
    wait_for(lambda: len(receiver.on("/swept")) == 2, timeout=30, message="the swept delivery")
    assert json.loads(receiver.on("/swept")[1]["body"])["data"]["sku"] == "ORPHAN-1"
    assert sweep() == {"sent": 0}  # noted as sent: never twice
