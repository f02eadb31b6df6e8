"""The dashboard's users and CSRF protection against the real ledger and Redis: password login,
roles on the pages, disabled users and changed passwords ending sessions, the brute-force
lockout, and every state-changing form refused without its token."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from conveyor.api import create_app
from conveyor.config import Settings
from conveyor.ledger import users
from conveyor.testing.dashboard import csrf_token, log_in

HTML = {"Accept": "text/html"}
PASSWORD = "correct horse battery"


def auth_settings(settings: Settings, **update: Any) -> Settings:
    secret = SecretStr(secrets.token_urlsafe(48))
    return settings.model_copy(
        update={"auth": "required", "secret_key": secret, "auth_cache_seconds": 0.0, **update}
    )


@pytest.fixture(scope="module")
def app(settings: Settings) -> Any:
    return create_app(auth_settings(settings, login_max_failures=3, login_lockout_seconds=60))


@pytest.fixture
def browser(app: Any) -> Iterator[TestClient]:
    """A fresh client (its own cookie jar) on the auth-enabled app."""
    with TestClient(app) as c:
        yield c


def make_user(ledger: Any, role: str, password: str = PASSWORD) -> str:
    name = f"{role}-{secrets.token_hex(4)}"
    with ledger.begin() as conn:
        users.create_user(conn, name, password, role)
    return name


def test_password_login_names_the_user_and_role_and_records_it(
    browser: TestClient, ledger: Any
) -> None:
    name = make_user(ledger, "operator")
    form = browser.get("/login")
    assert 'name="username"' in form.text and 'name="password"' in form.text
    assert "Log in with an API key" in form.text and 'name="csrf_token"' in form.text
    pre = form.headers["set-cookie"]
    assert pre.startswith("conveyor_csrf=") and "HttpOnly" in pre and "SameSite=strict" in pre

    r = log_in(browser, name.upper(), PASSWORD)  # usernames ignore case
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("conveyor_session=") and "HttpOnly" in cookie
    assert PASSWORD not in cookie and name not in cookie  # the cookie names the user by id
    page = browser.get("/jobs", headers=HTML)
    assert page.status_code == 200 and name in page.text and "operator" in page.text
    assert "Log out" in page.text
    with ledger.connect() as conn:
        assert (users.get_user(conn, name) or pytest.fail()).last_login_at is not None


def test_wrong_password_unknown_and_disabled_users_get_one_answer(
    browser: TestClient, ledger: Any
) -> None:
    name = make_user(ledger, "viewer")
    gone = make_user(ledger, "viewer")
    with ledger.begin() as conn:
        users.disable_user(conn, gone)
    answers = [
        log_in(browser, name, PASSWORD + "x"),
        log_in(browser, f"nobody-{secrets.token_hex(4)}", PASSWORD),
        log_in(browser, gone, PASSWORD),
    ]
    for r in answers:
        assert r.status_code == 401 and "Login refused: wrong username or password." in r.text
        assert "conveyor_session" not in r.headers.get("set-cookie", "")
    assert log_in(browser, name, "").status_code == 400


def test_repeated_failures_lock_the_username_out(browser: TestClient, ledger: Any) -> None:
    name = make_user(ledger, "viewer")
    for _ in range(3):
        assert log_in(browser, name, "not the password").status_code == 401
    locked = log_in(browser, name, PASSWORD)  # even the right password, for the lockout
    assert locked.status_code == 401 and "too many failed logins" in locked.text
    other = make_user(ledger, "viewer")  # other names are not affected
    assert log_in(browser, other, PASSWORD).status_code == 303


def test_disabling_a_user_or_changing_the_password_ends_their_sessions(
    app: Any, ledger: Any
) -> None:
    name = make_user(ledger, "viewer")
    with TestClient(app) as c:
        assert log_in(c, name, PASSWORD).status_code == 303
        assert c.get("/jobs", headers=HTML).status_code == 200
        with ledger.begin() as conn:
            users.disable_user(conn, name)
        out = c.get("/jobs", headers=HTML, follow_redirects=False)
        assert out.status_code == 303 and "/login" in out.headers["location"]
        assert log_in(c, name, PASSWORD).status_code == 401
        with ledger.begin() as conn:
            users.enable_user(conn, name)
    with TestClient(app) as c:
        assert log_in(c, name, PASSWORD).status_code == 303
        with ledger.begin() as conn:
            users.set_password(conn, name, "a brand new password")
        assert c.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303
        assert log_in(c, name, "a brand new password").status_code == 303


def test_forms_without_a_valid_csrf_token_are_refused(app: Any, ledger: Any) -> None:
    name = make_user(ledger, "admin")
    job = f"/jobs/{uuid.uuid4()}/cancel"  # unknown: a request past the checks gets a 404
    with TestClient(app) as c, TestClient(app) as other:
        assert log_in(c, name, PASSWORD).status_code == 303
        assert log_in(other, name, PASSWORD).status_code == 303
        mine, theirs = csrf_token(c, "/jobs"), csrf_token(other, "/jobs")
        assert mine != theirs  # bound to each session
        for data in ({}, {"csrf_token": ""}, {"csrf_token": theirs}, {"csrf_token": "0" * 64}):
            r = c.post(job, data=data, headers=HTML)
            assert r.status_code == 403, data
            assert "CSRF token missing or invalid" in r.text and "nothing was changed" in r.text
        assert c.post(job, data={"csrf_token": mine}, headers=HTML).status_code == 404
        assert c.post(job, headers={"X-CSRF-Token": mine, **HTML}).status_code == 404
        # The same-origin check still applies, token or not.
        cross = c.post(job, data={"csrf_token": mine}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and "Cross-site request refused" in cross.text
        # Logging out changes the token: one from before no longer works.
        assert c.post("/logout", data={"csrf_token": mine}).status_code == 200  # the login page
        assert log_in(c, name, PASSWORD).status_code == 303
        assert c.post(job, data={"csrf_token": mine}, headers=HTML).status_code == 403


def test_login_itself_needs_the_pre_session_token(browser: TestClient, ledger: Any) -> None:
    name = make_user(ledger, "viewer")
    form = {"username": name, "password": PASSWORD}
    forged = browser.post("/login", data=form, headers=HTML, follow_redirects=False)
    assert forged.status_code == 403 and "CSRF token" in forged.text
    assert "conveyor_session" not in forged.headers.get("set-cookie", "")
    with TestClient(browser.app) as attacker:  # a token from another browser's cookie
        stolen = csrf_token(attacker)
    r = browser.post("/login", data={**form, "csrf_token": stolen}, follow_redirects=False)
    assert r.status_code == 403
    assert log_in(browser, name, PASSWORD).status_code == 303


@pytest.mark.broker
def test_a_viewer_cannot_cancel_and_an_operator_can(
    app: Any, client: TestClient, ledger: Any
) -> None:
    job = client.post("/api/v1/jobs", json={"task": "testing.block", "args": [30]}).json()
    page = f"/jobs/{job['id']}"
    with TestClient(app) as c:
        assert log_in(c, make_user(ledger, "viewer"), PASSWORD).status_code == 303
        shown = c.get(page, headers=HTML)
        assert shown.status_code == 200 and "viewer" in shown.text
        assert f"{page}/cancel" not in shown.text  # no Cancel button
        r = c.post(f"{page}/cancel", data={"csrf_token": csrf_token(c, page)}, headers=HTML)
        assert r.status_code == 403 and "role viewer" in r.text and "jobs:write" in r.text
    assert client.get(f"/api/v1{page}").json()["cancel_requested"] is False
    with TestClient(app) as c:
        assert log_in(c, make_user(ledger, "operator"), PASSWORD).status_code == 303
        shown = c.get(page, headers=HTML)
        assert f"{page}/cancel" in shown.text
        r = c.post(
            f"{page}/cancel",
            data={"csrf_token": csrf_token(c, page)},
            headers=HTML,
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
    assert client.get(f"/api/v1{page}").json()["cancel_requested"] is True


def test_open_dashboard_still_checks_tokens(settings: Settings) -> None:
    """With auth off (development) there is no login, but a form still needs its token: a
    pre-session cookie and the token bound to it."""
    with TestClient(create_app(settings)) as c:
        job = f"/jobs/{uuid.uuid4()}/cancel"
        assert c.post(job, headers=HTML).status_code == 403
        token = csrf_token(c, "/jobs")
        assert c.cookies.get("conveyor_csrf")
        assert c.post(job, data={"csrf_token": token}, headers=HTML).status_code == 404


def test_a_disabled_users_session_ends_within_the_cache_time(
    settings: Settings, ledger: Any
) -> None:
    """Users are cached per process for CONVEYOR_AUTH_CACHE_SECONDS, like keys: a disabled
    user's session keeps working until the entry is stale, then ends."""
    name = make_user(ledger, "viewer")
    app = create_app(auth_settings(settings, auth_cache_seconds=2.0))
    with TestClient(app) as c:
        assert log_in(c, name, PASSWORD).status_code == 303
        assert c.get("/jobs", headers=HTML).status_code == 200  # now cached
        with ledger.begin() as conn:
            users.disable_user(conn, name)
        assert c.get("/jobs", headers=HTML, follow_redirects=False).status_code == 200
        time.sleep(2.1)
        assert c.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303
