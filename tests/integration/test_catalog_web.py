"""The catalog's dashboard pages render and act (server side; the browser test drives them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.packs import psycopg_url
from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.receiver import Receiver
from conveyor.testing.services import truncate, wait_for


@pytest.fixture()
def web(settings: Any, client: Any) -> Iterator[Any]:
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        truncate(conn, "catalog_products", "catalog_imports", "catalog_webhooks")
    yield client


def test_nav_and_pages(web: Any) -> None:
    home = web.get("/catalog/products")
    assert home.status_code == 200
    for label in ("Products", "Imports", "Webhooks"):
        assert f">{label}</a>" in home.text
    assert "No products yet" in home.text
    assert web.get("/catalog/imports").status_code == 200
    assert web.get("/catalog/webhooks").status_code == 200
    assert web.get("/catalog/imports/not-a-uuid").status_code == 404
    assert web.get("/catalog/webhooks/12345").status_code == 404


def test_upload_import_page_products_and_delete_all(web: Any, tmp_path: Path) -> None:
    path = write_sample(tmp_path / "w.csv", 1_000, dirty=True, bad_every=100)
    resp = web.post(
        "/catalog/imports/upload?filename=w.csv",
        content=path.read_bytes(),
        headers={"Content-Type": "text/csv", "Accept": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    page_url = resp.json()["url"]
    page = web.get(page_url)
    assert page.status_code == 200 and "w.csv" in page.text
    wait_for(lambda: 'id="import-summary"' in web.get(page_url).text, timeout=60, message="done")
    done = web.get(page_url).text
    assert "Skipped rows" in done and "skipped.csv" in done
    report = web.get(page_url + "/skipped.csv")
    assert report.status_code == 200 and report.text.startswith("row,reason,excerpt")
    refused = web.post(
        "/catalog/imports/upload", content=b"", headers={"Accept": "application/json"}
    )
    assert refused.status_code == 422 and "empty" in refused.json()["detail"]

    listing = web.get("/catalog/products", params={"name": "lamp"})
    assert listing.status_code == 200 and "data-sku=" in listing.text
    add = web.post("/catalog/products", data={"sku": "WEB-1", "name": "Web", "active": "on"})
    assert add.status_code == 200 and "Added WEB-1." in add.text
    dup = web.post("/catalog/products", data={"sku": "web-1", "name": "Again"})
    assert "already exists" in dup.text
    confirm = web.post("/catalog/products-delete-all")
    assert "This deletes" in confirm.text and "cannot be undone" in confirm.text
    gone = web.post("/catalog/products-delete-all", data={"confirmed": "true"})
    assert "Deleted all" in gone.text and "No products yet" in gone.text


def test_webhook_pages(web: Any, receiver: Receiver) -> None:
    refused = web.post(
        "/catalog/webhooks",
        data={"url": "http://127.0.0.1:9/x", "events": ["product.created"], "description": "d"},
    )
    assert "the webhook URL is refused: 127.0.0.1 is a loopback address" in refused.text
    receiver.script["/web-down"] = [(503, b"internal detail")]
    added = web.post(
        "/catalog/webhooks",
        data={"url": receiver.url + "/web-down", "events": ["product.created"], "description": "d"},
    )
    assert "signing secret, shown only now: whsec_" in added.text
    hook_id = added.text.split('data-webhook="')[1].split('"')[0]
    tested = web.post(f"/catalog/webhooks/{hook_id}/test")
    assert f"Test of webhook {hook_id} failed: HTTP 503" in tested.text
    assert "internal detail" not in tested.text
    assert web.get(f"/catalog/webhooks/{hook_id}").status_code == 200
    toggled = web.post(f"/catalog/webhooks/{hook_id}/toggle")
    assert "disabled." in toggled.text
    assert "cannot be undone" in web.post(f"/catalog/webhooks/{hook_id}/delete").text
    deleted = web.post(f"/catalog/webhooks/{hook_id}/delete", data={"confirmed": "true"})
    assert "No webhooks yet" in deleted.text


def test_upload_without_script_carries_its_token_in_the_url(web: Any, tmp_path: Path) -> None:
    """The no-script upload is a multipart form: its body is the file, streamed to disk by
    the route, so its CSRF token travels in the form's action URL instead of the body."""
    page = web.get("/catalog/imports", headers={"Accept": "text/html"}).text
    action = page.split('enctype="multipart/form-data" action="', 1)[1].split('"', 1)[0]
    action = action.replace("&amp;", "&")
    assert "csrf_token=" in action
    path = write_sample(tmp_path / "plain.csv", 50)
    files = {"file": ("plain.csv", path.read_bytes(), "text/csv")}
    token = web.headers.pop("X-CSRF-Token")
    try:
        refused = web.post("/catalog/imports/upload", files=files, follow_redirects=False)
        assert refused.status_code == 403 and "CSRF token" in refused.text
        sent = web.post(action, files=files, follow_redirects=False)
        assert sent.status_code == 303, sent.text
        assert "/catalog/imports/" in sent.headers["location"]
    finally:
        web.headers["X-CSRF-Token"] = token
