"""Real PostgreSQL, Redis and a broker for tests: embedded by default, the machine's own
services when ``CONVEYOR_TEST_DATABASE_URL`` / ``_REDIS_URL`` / ``_BROKER_URL`` say so.

Each test session gets a database of its own, so runs never see each other's jobs.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from conveyor.config import Settings
from conveyor.embedded import EmbeddedPostgres, EmbeddedRedis
from conveyor.ledger.migrate import upgrade

TEST_APP = "conveyor.testing.app:app"


@dataclass
class ServiceSet:
    settings: Settings
    stack: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "CONVEYOR_DATABASE_URL": s.database_url or "",
            "CONVEYOR_REDIS_URL": s.redis_url or "",
            "CONVEYOR_BROKER_URL": s.broker_url or "",
            "CONVEYOR_HOME": str(s.home),
            "CONVEYOR_ENV": "test",
            "CONVEYOR_APP": s.app,
            "CONVEYOR_HEARTBEAT_INTERVAL": str(s.heartbeat_interval),
            "CONVEYOR_RECONCILE_INTERVAL": str(s.reconcile_interval),
            "CONVEYOR_CANCEL_GRACE": str(s.cancel_grace),
            "CONVEYOR_EGRESS_ALLOW": ",".join(s.egress_allow),
        }


def _fresh_database(server_url: str) -> str:
    url = make_url(server_url)
    name = f"conveyor_test_{secrets.token_hex(4)}"
    dsn = url.set(drivername="postgresql", database=url.database or "postgres")
    with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def provision_services(home: Path, egress_allow: list[str] | None = None) -> Iterator[ServiceSet]:
    """Services for a test session; ``egress_allow``: the internal receivers (test HTTP
    servers) Conveyor may send to, as ``CONVEYOR_EGRESS_ALLOW`` entries."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        db = os.environ.get("CONVEYOR_TEST_DATABASE_URL")
        if not db:
            pg = EmbeddedPostgres(home / "postgres", durable=False)
            db = pg.start()
            started.append(pg)
        redis_url = os.environ.get("CONVEYOR_TEST_REDIS_URL")
        if not redis_url:
            rd = EmbeddedRedis(home / "redis", durable=False)
            redis_url = rd.start()
            started.append(rd)
        broker = os.environ.get("CONVEYOR_TEST_BROKER_URL") or redis_url
        database_url = _fresh_database(db)
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            broker_url=broker,
            home=home,
            env="test",
            app=TEST_APP,
            # Fast failure detection, so recovery tests take seconds, not minutes.
            heartbeat_interval=1.0,
            reconcile_interval=0.5,
            cancel_grace=2.0,
            egress_allow=egress_allow or [],
        )
        yield ServiceSet(settings=settings, stack=started)
    finally:
        for server in reversed(started):
            server.stop()


class Process:
    """A `conveyor` subcommand running as a real child process."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 20) -> None:
        from conveyor.cli.stack import stop_children

        if self.proc is not None:
            stop_children([self.proc], grace=timeout)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_api(
    env: dict[str, str], log: Path, *, workers: int = 1, timeout: float = 60
) -> tuple[Process, str]:
    """`conveyor api` on a free port as a child process, once it answers ``/healthz``:
    (the process, its base URL)."""
    import httpx

    from conveyor.embedded.process import free_port

    port = free_port()
    api = Process(["api", "--port", str(port), "--workers", str(workers)], env, log).start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert api.proc is not None and api.proc.poll() is None, f"conveyor api exited; see {log}"
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=timeout, message=f"conveyor api on port {port}")
    except BaseException:
        api.stop()
        raise
    return api, base


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def python_last_line(code: str, env: dict[str, str], timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter (another process, as a real client would be) and
    return the last line it printed."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.stdout.strip().splitlines()[-1]


def truncate(conn: psycopg.Connection[Any], *tables: str, attempts: int = 10) -> None:
    """``TRUNCATE … CASCADE`` the tables, again after a deadlock: the session's worker may still
    be finishing an earlier test's jobs on them (a webhook delivery, an import), and a TRUNCATE
    queued behind those can deadlock with them."""
    for attempt in range(attempts):
        try:
            conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
            if not conn.autocommit:
                conn.commit()
            return
        except psycopg.errors.DeadlockDetected:
            if not conn.autocommit:
                conn.rollback()
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
