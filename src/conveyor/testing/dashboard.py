"""Driving the dashboard from tests without a browser: its CSRF token and its login form.

Every state-changing dashboard request needs the CSRF token of the browser's session (see
``conveyor.web.csrf``). A test client gets one the way a browser does, from a rendered form,
and then sends it as the ``X-CSRF-Token`` header or a ``csrf_token`` form field.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_token(client: Any, path: str = "/login") -> str:
    """The CSRF token in the first form of ``path`` as ``client`` (keeping its cookies) sees it.

    ``/login`` has a form whenever auth is on; with auth off it leads to the jobs page, whose
    bulk-action form carries the token too.
    """
    page = client.get(path, headers={"Accept": "text/html"})
    found = _TOKEN.search(page.text)
    if found is None:
        raise AssertionError(f"no CSRF token in {path} ({page.status_code}): {page.text[:300]}")
    return found.group(1)


def log_in(client: Any, username: str, password: str, next: str = "/jobs") -> Any:
    """Post the login form as a browser would (token included); the response, not followed."""
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "next": next,
            "csrf_token": csrf_token(client),
        },
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )


def carry_csrf(client: Any, path: str = "/jobs") -> Any:
    """Make ``client`` send its CSRF token with every request from now on; returns it."""
    client.headers["X-CSRF-Token"] = csrf_token(client, path)
    return client
