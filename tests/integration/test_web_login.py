"""The dashboard's users and CSRF protection against the real ledger and Redis: password login,
roles on the pages, disabled users and changed passwords ending sessions, the brute-force
throttle (per username and real client address, a per-user ceiling that slows but never locks
the user out, `conveyor users unlock`), and every state-changing form refused without its
token."""

from __future__ import annotations

import secrets
import subprocess
import sys
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
from conveyor.testing.services import wait_for

HTML = {"Accept": "text/html"}
PASSWORD = "correct horse battery"


def auth_settings(settings: Settings, **update: Any) -> Settings:
    secret = SecretStr(secrets.token_urlsafe(48))
    return settings.model_copy(
        update={"auth": "required", "secret_key": secret, "auth_cache_seconds": 0.0, **update}
    )


@pytest.fixture(scope="module")
def app(settings: Settings) -> Any:
    return create_app(auth_settings(settings, **THROTTLE))


# Three free failures per (username, address), then 60 s, 120 s, ...; a ceiling no test here
# reaches (test_the_ceiling_slows_many_addresses_but_not_the_user has its own app).
THROTTLE: dict[str, Any] = {
    "login_free_failures": 3,
    "login_backoff_seconds": 60.0,
    "login_user_ceiling": 1000,
}


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


def at(app: Any, address: str) -> TestClient:
    """A client whose connection comes from ``address``."""
    return TestClient(app, client=(address, 40000))


def test_failures_slow_one_address_not_the_user(app: Any, ledger: Any) -> None:
    """Issue 11 item 6: bad passwords from one address no longer lock the account; the right
    password from another address still works, and other names are untouched."""
    name = make_user(ledger, "admin")
    with at(app, "198.51.100.1") as attacker, at(app, "198.51.100.2") as owner:
        for _ in range(3):
            assert log_in(attacker, name, "not the password").status_code == 401
        held = log_in(attacker, name, PASSWORD)  # not even checked: the address must wait
        assert held.status_code == 429 and "from your address" in held.text
        assert 50 <= int(held.headers["retry-after"]) <= 60
        assert log_in(owner, name, PASSWORD).status_code == 303
        other = make_user(ledger, "viewer")
        assert log_in(attacker, other, PASSWORD).status_code == 303


def test_the_delay_grows_and_then_lets_the_address_try_again(
    settings: Settings, ledger: Any
) -> None:
    quick = {**THROTTLE, "login_free_failures": 2, "login_backoff_seconds": 1.0}
    name = make_user(ledger, "viewer")
    with at(create_app(auth_settings(settings, **quick)), "198.51.100.9") as c:
        for _ in range(2):
            assert log_in(c, name, "wrong").status_code == 401
        assert log_in(c, name, PASSWORD).status_code == 429
        # 1 s after the last failure the address may try again; a failure doubles the delay.
        wait_for(lambda: log_in(c, name, "wrong").status_code == 401, timeout=10, interval=0.2)
        held = log_in(c, name, PASSWORD)
        assert held.status_code == 429 and int(held.headers["retry-after"]) == 2
        wait_for(lambda: log_in(c, name, PASSWORD).status_code == 303, timeout=10, interval=0.2)
        assert log_in(c, name, "wrong").status_code == 401  # a success starts it afresh


def test_the_ceiling_slows_many_addresses_but_not_the_user(settings: Settings, ledger: Any) -> None:
    """Past the per-user ceiling, addresses the user never logged in from share one password
    check per interval; the user's own address is not held at all, and from a new address the
    user gets in after a short wait."""
    ceiling = {**THROTTLE, "login_user_ceiling": 5, "login_ceiling_interval_seconds": 5.0}
    app = create_app(auth_settings(settings, **ceiling))
    name = make_user(ledger, "admin")
    with at(app, "192.0.2.200") as home:
        assert log_in(home, name, PASSWORD).status_code == 303
    for i in range(5):  # a botnet: one guess from each of many addresses
        with at(app, f"203.0.113.{i + 1}") as bot:
            assert log_in(bot, name, "guess").status_code == 401
    with at(app, "203.0.113.50") as first, at(app, "203.0.113.51") as second:
        assert log_in(first, name, "guess").status_code == 401  # takes the interval's check
        slowed = log_in(second, name, "guess")
        assert slowed.status_code == 429 and "logins are slowed" in slowed.text
        assert int(slowed.headers["retry-after"]) == 5
    with at(app, "192.0.2.200") as home:  # the user's own address: straight in
        assert log_in(home, name, PASSWORD).status_code == 303
    with at(app, "192.0.2.201") as travelling:  # a new address: in, after a short wait
        wait_for(
            lambda: log_in(travelling, name, PASSWORD).status_code == 303,
            timeout=30,
            interval=1.0,
            message="the user to get a turn past the ceiling",
        )


def test_the_throttle_counts_the_real_client_behind_a_trusted_proxy(
    settings: Settings, ledger: Any
) -> None:
    """Behind a trusted proxy the address is X-Forwarded-For's; from anyone else that header
    is ignored, so rotating it does not buy more guesses."""
    app = create_app(auth_settings(settings, trusted_proxies=["10.0.0.0/8"], **THROTTLE))
    name = make_user(ledger, "viewer")
    with at(app, "10.0.0.1") as proxy:
        for _ in range(3):
            client = {"X-Forwarded-For": "198.51.100.77"}
            proxy.headers.update(client)
            assert log_in(proxy, name, "wrong").status_code == 401
        assert log_in(proxy, name, PASSWORD).status_code == 429
        proxy.headers.update({"X-Forwarded-For": "198.51.100.78"})  # the user, via the proxy
        assert log_in(proxy, name, PASSWORD).status_code == 303
    spoofer_name = make_user(ledger, "viewer")
    with at(app, "192.0.2.66") as spoofer:
        for i in range(4):
            spoofer.headers.update({"X-Forwarded-For": f"198.18.0.{i + 1}"})
            expected = 401 if i < 3 else 429
            assert log_in(spoofer, spoofer_name, "wrong").status_code == expected, i


def test_users_unlock_clears_the_throttle(services: Any, app: Any, ledger: Any) -> None:
    name = make_user(ledger, "operator")
    with at(app, "198.51.100.20") as c:
        for _ in range(3):
            assert log_in(c, name, "wrong").status_code == 401
        assert log_in(c, name, PASSWORD).status_code == 429
        done = conveyor_cli("users", "unlock", name.upper(), env=services.env())
        assert done.returncode == 0, done.stderr
        assert f"unlocked {name}" in done.stderr and "1 address" in done.stderr
        assert log_in(c, name, PASSWORD).status_code == 303
    missing = conveyor_cli("users", "unlock", "nobody-here", env=services.env())
    assert missing.returncode == 1 and "no user named 'nobody-here'" in missing.stderr


def conveyor_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], env=env, text=True, capture_output=True,
        timeout=120,
    )  # fmt: skip


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
