"""A whole Conveyor deployment per chaos module, on servers of its own that tests may break.

The session's services (``tests/conftest.py``) are shared by every other test, so nothing here
touches them: each module opens a `ChaosStack` with its own PostgreSQL, its own Redis for job
events and, when the test stops the broker, its own Redis broker — separate from the events
Redis, so that stopping the broker does not also stop event recording. The API, the recorder
(with the outbox relay and reconciler) and the workers run as real child processes, the way
they run in production, and clients keep one URL across a server's restart (the embedded
launchers come back on the port they had).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from kombu import Connection  # type: ignore[attr-defined]
from sqlalchemy import Engine, text

from conveyor.embedded import EmbeddedPostgres, EmbeddedRedis
from conveyor.embedded.process import free_port
from conveyor.ledger.db import make_engine
from conveyor.ledger.migrate import upgrade
from conveyor.testing.services import TEST_APP, Process, wait_for

TERMINAL = ("succeeded", "failed", "cancelled", "dead")


class ChaosStack:
    """PostgreSQL, an events Redis, a broker, a recorder, an API and workers, all our own.

    ``own_broker=True`` always runs the broker as an embedded Redis this stack may stop and
    start; otherwise ``CONVEYOR_TEST_BROKER_URL`` is used when set (RabbitMQ in CI), with queue
    names unique to this stack so that concurrent runs do not share messages. ``env`` adds
    ``CONVEYOR_*`` settings for every process of the stack.
    """

    def __init__(self, name: str, root: Path, logs: Path, *, own_broker: bool, **env: str) -> None:
        self.name = name
        self.extra_env = env
        self.root = root
        self.logs = logs
        self.own_broker = own_broker
        self.queue = f"chaos-{name}-{secrets.token_hex(3)}"
        self.postgres = EmbeddedPostgres(root / "postgres", durable=False)
        self.events = EmbeddedRedis(root / "events", durable=False)
        # A broker that is restarted must keep its messages, as a production broker does.
        self.broker: EmbeddedRedis | None = None
        self.broker_url = ""
        self.database_url = ""
        self.redis_url = ""
        self.api_port = free_port()
        self.api: httpx.Client | None = None
        self.engine: Engine | None = None
        self._api_proc: Process | None = None
        self._recorder: Process | None = None
        self.workers: dict[str, Process] = {}

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> ChaosStack:
        self.database_url = self.postgres.start()
        upgrade(self.database_url)
        self.engine = make_engine(self.database_url, pool_size=2)
        self.redis_url = self.events.start()
        shared = os.environ.get("CONVEYOR_TEST_BROKER_URL")
        if self.own_broker or not shared:
            self.broker = EmbeddedRedis(self.root / "broker", durable=True)
            self.broker_url = self.broker.start()
        else:
            self.broker_url = shared
        self._recorder = Process(["recorder"], self.env(), self.log("recorder")).start()
        self.start_api()
        return self

    def stop(self) -> None:
        """Stop everything this stack started, whatever state a failed test left it in."""
        errors: list[BaseException] = []
        for proc in [*self.workers.values(), self._api_proc, self._recorder]:
            if proc is not None:
                try:
                    proc.stop(timeout=10)
                except BaseException as exc:  # keep going: the servers must stop too
                    errors.append(exc)
        if self.api is not None:
            self.api.close()
        if self.engine is not None:
            self.engine.dispose()
        if self.broker is None and self.broker_url.startswith("amqp"):
            with contextlib.suppress(Exception), self._broker_connection() as conn:
                conn.default_channel.queue_delete(self.queue)
        for server in (self.broker, self.events, self.postgres):
            if server is not None:
                try:
                    server.stop()
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(
            {
                "CONVEYOR_DATABASE_URL": self.database_url,
                "CONVEYOR_REDIS_URL": self.redis_url,
                "CONVEYOR_BROKER_URL": self.broker_url,
                "CONVEYOR_HOME": str(self.root / "home"),
                "CONVEYOR_ENV": "test",
                "CONVEYOR_APP": TEST_APP,
                "CONVEYOR_QUEUES": json.dumps([self.queue]),
                "CONVEYOR_HEARTBEAT_INTERVAL": "1.0",
                "CONVEYOR_RECONCILE_INTERVAL": "0.5",
                "CONVEYOR_CANCEL_GRACE": "2.0",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def log(self, what: str) -> Path:
        return self.logs / f"chaos-{self.name}-{what}.log"

    def start_api(self) -> None:
        args = ["api", "--host", "127.0.0.1", "--port", str(self.api_port)]
        self._api_proc = Process(args, self.env(), self.log("api")).start()
        # A short timeout: an API that hangs on a dead store fails the test instead of stalling.
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=15)

        def up() -> bool:
            assert self._api_proc is not None and self._api_proc.proc is not None
            code = self._api_proc.proc.poll()
            assert code is None, f"the API exited with {code}; see {self.log('api')}"
            try:
                return self.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30, interval=0.1, message="the chaos API to answer")

    def restart_recorder(self, **env: str) -> Process:
        """Run the recorder (with the outbox relay and reconciler) again, with env overrides."""
        if self._recorder is not None:
            self._recorder.stop()
        self._recorder = Process(["recorder"], self.env(**env), self.log("recorder")).start()
        return self._recorder

    def start_worker(self, name: str, *args: str, **env: str) -> Process:
        """A `conveyor worker` on this stack's queue; waits for its first heartbeat."""
        hostname = f"{name}-{secrets.token_hex(2)}@chaos"
        worker = Process(
            ["worker", "-n", hostname, *args], self.env(**env), self.log(f"worker-{name}")
        ).start()
        self.workers[name] = worker

        def alive() -> bool:
            assert worker.proc is not None
            assert worker.proc.poll() is None, f"worker {name} exited; see {worker.log_path}"
            workers = self.http.get("/api/v1/workers").json()
            return any(w["hostname"] == hostname and w["alive"] for w in workers)

        wait_for(alive, timeout=30, interval=0.1, message=f"worker {name}'s first heartbeat")
        return worker

    def stop_worker(self, name: str) -> None:
        self.workers.pop(name).stop()

    # --- talking to it -------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        assert self.api is not None, "the stack is not started"
        return self.api

    def submit(self, task: str, *args: Any, **body: Any) -> str:
        """POST a job (``body`` holds kwargs= / countdown= / ...); asserts the 202."""
        r = self.http.post("/api/v1/jobs", json={"task": task, "args": list(args), **body})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def sql(self, query: str, **params: Any) -> list[Any]:
        """Read the ledger directly (not through the API under test)."""
        assert self.engine is not None
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params).all())

    def states(self, ids: list[str]) -> dict[str, str]:
        rows = self.sql(
            "SELECT id::text, state FROM conveyor_jobs WHERE id::text = ANY(:ids)", ids=ids
        )
        return {job_id: state for job_id, state in rows}

    def until_all(self, ids: list[str], state: str, timeout: float = 60) -> dict[str, str]:
        """Wait until every job in ``ids`` is in ``state``; fail early on another end state."""

        def check() -> dict[str, str] | None:
            now = self.states(ids)
            wrong = {i: s for i, s in now.items() if s in TERMINAL and s != state}
            assert not wrong, f"jobs ended in the wrong state: {wrong}"
            return now if len(now) == len(ids) and set(now.values()) == {state} else None

        try:
            done: dict[str, str] = wait_for(
                check, timeout=timeout, interval=0.1, message=f"all jobs {state}"
            )
        except AssertionError:
            counts: dict[str, int] = {}
            for s in self.states(ids).values():
                counts[s] = counts.get(s, 0) + 1
            raise AssertionError(f"not all {len(ids)} jobs reached {state}: {counts}") from None
        return done

    def broker_client(self) -> redis.Redis:
        assert self.broker_url.startswith("redis"), "the broker is not a Redis"
        return redis.Redis.from_url(self.broker_url)

    def _broker_connection(self) -> Connection:
        return Connection(self.broker_url)  # type: ignore[no-untyped-call]

    def queue_depth(self) -> int:
        """Messages waiting in this stack's queue, straight from the broker."""
        with self._broker_connection() as conn:
            conn.ensure_connection(max_retries=2)
            channel = conn.default_channel
            if conn.transport.driver_type == "redis":
                client = channel.client
                keys = [self.queue, *(f"{self.queue}{channel.sep}{p}" for p in range(1, 10))]
                return sum(int(client.llen(k)) for k in keys)
            try:
                _, depth, _ = channel.queue_declare(queue=self.queue, passive=True)
            except Exception:
                return 0
            return int(depth)


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Callable[..., Any]:
    """``with open_stack("name", own_broker=True) as stack:`` — stopped even if a test fails."""

    @contextmanager
    def opener(name: str, *, own_broker: bool, **env: str) -> Iterator[ChaosStack]:
        root = tmp_path_factory.mktemp(name)
        stack = ChaosStack(name, root, artifacts, own_broker=own_broker, **env)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()

    return opener
