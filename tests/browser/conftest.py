"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
`conveyor api` run as a subprocess with auth required, a real worker and recorder, and a
viewer, an operator and an admin user created with `conveyor users create`.

Chromium comes from the system (`/usr/bin/chromium`, installed by `.ci/run`); without it these
tests skip locally and fail under CI=true. Screenshots of every page a test visits are saved
under `artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.testing.services import start_api

CHROMIUM = Path(os.environ.get("CONVEYOR_TEST_CHROMIUM", "/usr/bin/chromium"))
# Without the networking flags Chromium keeps trying to reach Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (make test installs it)"
    else:
        if CHROMIUM.exists():
            return
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


PASSWORD = "browser test password"


@dataclass
class Dashboard:
    url: str
    env: dict[str, str]
    keys: dict[str, str]  # role -> API key
    users: dict[str, str]  # role -> username, each with the password below
    screenshots: Path
    password: str = PASSWORD

    def api(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=10
        )

    def submit(self, task: str, *args: Any, **kwargs: Any) -> str:
        with self.api() as client:
            r = client.post("/api/v1/jobs", json={"task": task, "args": args, "kwargs": kwargs})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        with self.api() as client:
            body: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        return body


def _create_key(env: dict[str, str], name: str, scope: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "keys", "create", name, "--scope", scope],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _create_user(env: dict[str, str], role: str) -> str:
    name = f"browser-{role}-{secrets.token_hex(4)}"
    command = ["users", "create", name, "--role", role, "--password-stdin"]
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", *command],
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return name


@pytest.fixture(scope="session")
def dashboard(services: Any, runtime: Any, artifacts: Path) -> Iterator[Dashboard]:
    _require_chromium()
    env = {
        **services.env(),
        "CONVEYOR_AUTH": "required",
        "CONVEYOR_SECRET_KEY": secrets.token_urlsafe(48),
        "CONVEYOR_AUTH_CACHE_SECONDS": "0",
    }
    keys = {
        "admin": _create_key(env, f"browser-admin-{secrets.token_hex(4)}", "admin"),
        "viewer": _create_key(env, f"browser-viewer-{secrets.token_hex(4)}", "jobs:read"),
    }
    users = {role: _create_user(env, role) for role in ("viewer", "operator", "admin")}
    api, url = start_api(env, artifacts / "browser-api.log")
    try:
        shots = artifacts / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        yield Dashboard(url, env, keys, users, shots)
    finally:
        api.stop()


@pytest.fixture(scope="module")
def browser(dashboard: Dashboard) -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it
    # is open, which would break later tests that call asyncio.run().
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def login_page(browser: Any, dashboard: Dashboard) -> Any:
    """A fresh browser context on the login page, where a visit to the jobs list sends it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(dashboard.url + "/jobs")
    assert "/login" in page.url  # no session: sent to the login page
    return page


def log_in(browser: Any, dashboard: Dashboard, role: str) -> Any:
    """A fresh browser context logged in as the ``role`` user through the login form."""
    page = login_page(browser, dashboard)
    page.fill("#login-password input[name=username]", dashboard.users[role])
    page.fill("#login-password input[name=password]", PASSWORD)
    page.click("#login-password button[type=submit]")
    page.wait_for_url("**/jobs**")
    return page


@pytest.fixture
def anonymous_page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    page = login_page(browser, dashboard)
    yield page
    page.context.close()


@pytest.fixture
def admin_page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    page = log_in(browser, dashboard, "admin")
    yield page
    page.context.close()


@pytest.fixture
def operator_page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    page = log_in(browser, dashboard, "operator")
    yield page
    page.context.close()


@pytest.fixture
def viewer_page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    page = log_in(browser, dashboard, "viewer")
    yield page
    page.context.close()
