"""How requests reach the API: the API docs switch, HSTS over https, and forwarded headers
believed only from CONVEYOR_TRUSTED_PROXIES — in the app, and through `conveyor api`'s real
uvicorn (whose own rule would trust 127.0.0.1)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from conveyor.api import create_app
from conveyor.config import Settings
from conveyor.embedded.process import free_port
from conveyor.testing.services import wait_for

SECRET = SecretStr(secrets.token_urlsafe(48))
DOCS = ("/docs", "/redoc", "/openapi.json")
HSTS = "strict-transport-security"


def production(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"env": "production", "secret_key": SECRET, **update})


@pytest.mark.parametrize(
    ("env", "api_docs", "served"),
    [
        ("production", None, False),
        ("production", True, True),
        ("development", None, True),
        ("test", None, True),
        ("development", False, False),
    ],
)
def test_api_docs_follow_the_setting(
    settings: Settings, env: str, api_docs: bool | None, served: bool
) -> None:
    s = settings.model_copy(update={"env": env, "secret_key": SECRET, "api_docs": api_docs})
    with TestClient(create_app(s)) as c:
        for url in DOCS:
            assert c.get(url).status_code == (200 if served else 404), (env, api_docs, url)
        assert c.get("/healthz").status_code == 200


def test_hsts_only_over_https(settings: Settings) -> None:
    app = create_app(production(settings))
    with TestClient(app, base_url="https://testserver") as c:
        assert c.get("/healthz").headers[HSTS] == "max-age=31536000"
        assert c.get("/api/v1/jobs").headers[HSTS] == "max-age=31536000"  # errors too
    with TestClient(app) as c:
        assert HSTS not in c.get("/healthz").headers
    off = create_app(production(settings, hsts_max_age=0))
    with TestClient(off, base_url="https://testserver") as c:
        assert HSTS not in c.get("/healthz").headers


def test_forwarded_headers_count_only_from_trusted_proxies(settings: Settings) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    app = create_app(production(settings, trusted_proxies=["10.0.0.0/8", "::1"]))
    with TestClient(app, client=("10.1.2.3", 40000)) as proxy:
        assert proxy.get("/healthz", headers=forwarded).headers[HSTS]
    for peer in ("192.0.2.9", "11.0.0.1", "testclient"):
        with TestClient(app, client=(peer, 40000)) as stranger:
            assert HSTS not in stranger.get("/healthz", headers=forwarded).headers, peer
    nobody = create_app(production(settings))  # the default trusts no peer at all
    with TestClient(nobody, client=("127.0.0.1", 40000)) as local:
        assert HSTS not in local.get("/healthz", headers=forwarded).headers


def test_trusted_proxies_setting_is_checked() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 192.0.2.1").trusted_proxies == [  # type: ignore[arg-type]
        "10.0.0.0/8",
        "192.0.2.1",
    ]
    with pytest.raises(ValidationError, match="not an IP address or CIDR network"):
        Settings(trusted_proxies="proxy.example.com")  # type: ignore[arg-type]


@contextmanager
def conveyor_api(services: Any, **extra: str) -> Iterator[str]:
    """`conveyor api` in production mode, as a real process; its base URL."""
    port = free_port()
    env = {**services.env(), "CONVEYOR_ENV": "production", "CONVEYOR_API_PORT": str(port)}
    env.update({"CONVEYOR_SECRET_KEY": SECRET.get_secret_value(), **extra})
    env.pop("CONVEYOR_AUTH", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=90, interval=0.3, message="conveyor api to answer")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_conveyor_api_believes_only_its_trusted_proxies(services: Any) -> None:
    """Through the real server: from 127.0.0.1, uvicorn's own default would believe
    X-Forwarded-Proto; Conveyor believes it only when CONVEYOR_TRUSTED_PROXIES names the peer.
    Production also keeps its API docs to itself."""
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with conveyor_api(services) as base:
        assert HSTS not in httpx.get(f"{base}/healthz", headers=forwarded).headers
        for url in DOCS:
            assert httpx.get(f"{base}{url}").status_code == 404, url
    with conveyor_api(services, CONVEYOR_TRUSTED_PROXIES="127.0.0.1/32") as base:
        r = httpx.get(f"{base}/healthz", headers=forwarded)
        assert r.headers[HSTS] == "max-age=31536000"
