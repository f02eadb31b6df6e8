from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.testing.receiver import Receiver
from conveyor.testing.services import Process, ServiceSet, provision_services


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A real HTTP server recording what Conveyor sends out (webhooks). Conveyor refuses to
    send to 127.0.0.1 unless allowed: the test API and worker allow this one address and port
    (CONVEYOR_EGRESS_ALLOW), as an operator allows an internal receiver."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def services(receiver: Receiver) -> Iterator[ServiceSet]:
    home = Path(tempfile.mkdtemp(prefix="conveyor-test-"))
    try:
        with provision_services(home, egress_allow=[receiver.allow_entry]) as svc:
            yield svc
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(services: ServiceSet):  # type: ignore[no-untyped-def]
    return services.settings


@pytest.fixture(scope="module")
def ledger(settings):  # type: ignore[no-untyped-def]
    """An engine on the test ledger, for tests that read or write rows directly. Per module
    and pre-pinged: chaos tests restart PostgreSQL, which kills pooled connections."""
    from sqlalchemy import create_engine

    engine = create_engine(settings.database_url or "", pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("CONVEYOR_TEST_ARTIFACTS", "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def runtime(services: ServiceSet, artifacts: Path) -> Iterator[dict[str, Process]]:
    """A real worker (prefork, 2 processes) and a recorder, as child processes."""
    env = services.env()
    procs = {
        "worker": Process(
            ["worker", "-c", "2", "-n", f"testworker-{os.getpid()}@%h"],
            env,
            artifacts / "worker.log",
        ).start(),
        "recorder": Process(["recorder"], env, artifacts / "recorder.log").start(),
    }
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture(scope="session")
def client(settings, runtime):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from conveyor.api import create_app
    from conveyor.testing.dashboard import carry_csrf
    from conveyor.testing.services import wait_for

    with TestClient(create_app(settings)) as c:
        wait_for(
            lambda: any(w["alive"] for w in c.get("/api/v1/workers").json()),
            timeout=60,
            message="the test worker's first heartbeat",
        )
        # Dashboard forms need the session's CSRF token; this client sends it as a header.
        yield carry_csrf(c)


@pytest.fixture
def fresh_schedules(ledger):  # type: ignore[no-untyped-def]
    """Removes the schedules users made once the test is over (code-declared ones stay)."""
    from sqlalchemy import text

    yield
    with ledger.begin() as conn:
        conn.execute(text("DELETE FROM conveyor_schedules WHERE source = 'user'"))
