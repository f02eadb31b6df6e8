"""The factory's dashboard pages render and act (server side; the browser test drives them),
and the verification page opens without a session on a dashboard that requires one."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from conveyor.api import create_app
from conveyor.config import Settings
from conveyor.packs.factory.batches import BatchSpec, create_batch
from conveyor.packs.factory.config import FactorySettings
from conveyor.testing.forgery import altered_token
from conveyor.testing.services import wait_for

HTML = {"Accept": "text/html"}


def batch_status(client: Any, batch_id: str) -> str:
    return str(client.get(f"/api/v1/factory/batches/{batch_id}").json()["status"])


def test_pages_render_and_a_batch_is_created_from_the_form(client: Any) -> None:
    page = client.get("/factory/batches")
    assert page.status_code == 200
    assert ">Batches</a>" in page.text and ">Verify</a>" in page.text
    assert 'id="new-batch"' in page.text and 'name="csrf_token"' in page.text
    form = {"product_count": "1,200", "product_name": "Form widget", "category": "tools"}
    r = client.post("/factory/batches/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    batch_id = r.headers["location"].rsplit("/", 1)[1]
    wait_for(lambda: batch_status(client, batch_id) == "completed", timeout=60)
    page = client.get(f"/factory/batches/{batch_id}")
    assert page.status_code == 200
    assert "Form widget" in page.text and 'id="download-csv"' in page.text
    root = client.get(f"/api/v1/factory/batches/{batch_id}").json()["merkle_root"]
    assert root in page.text
    assert 'id="retry-batch"' not in page.text  # completed: nothing to retry
    listing = client.get("/factory/batches", params={"status": "completed"})
    assert batch_id in listing.text
    csv = client.get(f"/factory/batches/{batch_id}/products.csv")
    assert csv.status_code == 200 and len(csv.text.splitlines()) == 1201
    assert client.get(f"/factory/batches/{batch_id}/ended").json()["ended"] is True


def test_the_form_refuses_bad_input_with_a_reason(client: Any) -> None:
    for count in ("0", "many", "99999999999"):
        form = {"product_count": count, "product_name": "W", "category": "c"}
        r = client.post("/factory/batches/new", data=form, follow_redirects=False)
        assert r.status_code == 303 and "error=product_count" in r.headers["location"], count
    assert client.get("/factory/batches/not-a-uuid").status_code == 404
    assert client.get(f"/factory/batches/{uuid.uuid4()}").status_code == 404


@pytest.fixture(scope="module")
def locked(settings: Settings) -> Iterator[TestClient]:
    """The app with logins required, and no session: a consumer's phone."""
    locked_settings = settings.model_copy(
        update={"auth": "required", "secret_key": SecretStr(secrets.token_urlsafe(48))}
    )
    with TestClient(create_app(locked_settings)) as c:
        yield c


def test_verify_page_is_public(client: Any, locked: TestClient) -> None:
    made = client.post(
        "/api/v1/factory/batches",
        json={"product_count": 300, "product_name": "Public", "category": "c"},
    ).json()
    wait_for(lambda: batch_status(client, made["batch_id"]) == "completed", timeout=60)
    token = client.get(f"/api/v1/factory/batches/{made['batch_id']}/products").json()["items"][7][
        "token"
    ]
    # The dashboard itself asks for a login …
    r = locked.get("/factory/batches", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and "/login" in r.headers["location"]
    # … the verification page and its JSON twin do not.
    page = locked.get(f"/verify/{token}", headers=HTML)
    assert page.status_code == 200 and 'data-authentic="true"' in page.text
    assert "Public" in page.text and made["batch_id"] in page.text
    assert len(re.findall(r"<li>[0-9a-f]{64}</li>", page.text)) >= 8  # 300 leaves: 9 levels
    assert "Log out" not in page.text and "/jobs" not in page.text
    assert locked.get(f"/api/v1/factory/verify/{token}").json()["authentic"] is True
    form = locked.get("/verify", params={"token": token}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"].endswith(f"/verify/{token}")
    for bad in ("garbage", altered_token(token), "dev." + "A" * 54, "dev.a%2Fb", "a/b"):
        page = locked.get(f"/verify/{bad}", headers=HTML)
        assert page.status_code == 200 and 'data-authentic="false"' in page.text, bad
    assert locked.get("/verify", headers=HTML).status_code == 200


def test_a_failed_batch_shows_its_error_and_retries_from_the_page(
    client: Any, settings: Settings
) -> None:
    engine = create_engine(str(settings.database_url))
    try:
        # Signed with a key the worker's keyring lacks: the products step fails.
        lost = FactorySettings(token_keys={"gone": SecretStr("x" * 40)}, token_kid="gone")
        batch_id = create_batch(engine, BatchSpec(500, "Keyless", "c"), lost)
        page = client.get(f"/factory/batches/{batch_id}")
        assert 'id="retry-batch"' in page.text  # pending with no job: it may be started
        r = client.post(f"/factory/batches/{batch_id}/retry", follow_redirects=False)
        assert r.status_code == 303 and "notice=" in r.headers["location"]
        wait_for(lambda: batch_status(client, str(batch_id)) == "failed", timeout=60)
        page = client.get(f"/factory/batches/{batch_id}")
        assert 'id="batch-error"' in page.text and "no longer in" in page.text
        assert 'id="retry-batch"' in page.text
        with engine.begin() as conn:  # the key is back (here: the batch moves to one we have)
            conn.execute(
                text("UPDATE factory_batches SET token_kid = 'dev' WHERE id = :b"), {"b": batch_id}
            )
        r = client.post(f"/factory/batches/{batch_id}/retry", follow_redirects=False)
        assert r.status_code == 303
        wait_for(lambda: batch_status(client, str(batch_id)) == "completed", timeout=60)
        again = client.post(f"/factory/batches/{batch_id}/retry", follow_redirects=False)
        assert "error=" in again.headers["location"]  # completed: nothing to retry
    finally:
        engine.dispose()
