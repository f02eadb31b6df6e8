"""A database server run as a child process: started on a free port, known to be ours, stopped.

What the embedded PostgreSQL and Redis launchers have in common lives here: picking a port and
retrying when another process takes it first, the server log, the pid file a killed parent
leaves behind, the wait until the server is ready, and the stop that escalates to SIGKILL.
`ChildServer` holds that life cycle; a launcher says only how to prepare, what to run and how
to tell that the server is ready.

Servers run in a session of their own: a Ctrl-C in the terminal must not stop them before the
processes that write to them. Whoever started them stops them, last and explicitly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import psutil

from conveyor.errors import EmbeddedServiceError

HOST = "127.0.0.1"
LOG_TAIL_BYTES = 4000
PORT_ATTEMPTS = 3


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    The port is only free at the moment of the call; `ChildServer` retries with another one
    when the server reports that the address is taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(log_path: Path, since: int = 0, limit: int = LOG_TAIL_BYTES) -> str:
    """Return at most the last `limit` bytes written to `log_path` after byte offset `since`."""
    try:
        with log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since, size - limit))
            return log.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def read_pid_file(pid_file: Path) -> int | None:
    """Return the pid on the first line of `pid_file`, None if it is missing or garbled."""
    try:
        return int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def serves_dir(proc: psutil.Process, name: str, data_dir: Path) -> bool:
    """Tell whether `proc` is a live process called `name` working in `data_dir`.

    PostgreSQL and Redis both change into their data directory, so the working directory
    identifies which server a process belongs to; the command line is the fallback when the
    working directory cannot be read. A pid reused by an unrelated process answers False.
    """
    try:
        if not str(proc.name()).startswith(name) or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        try:
            return Path(str(proc.cwd())).resolve() == data_dir
        except (psutil.AccessDenied, OSError):
            return str(data_dir) in " ".join(str(part) for part in proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        # Alive, named like the server and not ours to inspect: assume the worst.
        return True


def pid_serves_dir(pid: int, name: str, data_dir: Path) -> bool:
    """Like `serves_dir`, for a pid read from a pid file."""
    try:
        return serves_dir(psutil.Process(pid), name, data_dir)
    except psutil.NoSuchProcess:
        return False


def kill_strays(name: str, data_dir: Path, grace: float = 3.0) -> None:
    """Kill every process called `name` still working in `data_dir`.

    A server killed with SIGKILL leaves its children behind (PostgreSQL's backends exit only
    when they notice); starting a new server beside them would let two write the same files.
    """
    strays = [p for p in psutil.process_iter() if serves_dir(p, name, data_dir)]
    if not strays:
        return
    _, alive = psutil.wait_procs(strays, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)


def spawn(
    args: list[str],
    log_path: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    account: pwd.struct_passwd | None = None,
    new_session: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `args` with stdout and stderr appended to `log_path`; return the process and the
    log offset its output starts at (for `log_tail`).

    `account` drops root to that user and all of its groups; None runs as ourselves.
    """
    with log_path.open("ab") as log:
        since = log.tell()
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=new_session,
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
        )
    return proc, since


def stop_child(proc: subprocess.Popen[bytes], first_signal: signal.Signals, timeout: float) -> None:
    """Stop a child server: `first_signal`, wait up to `timeout`, then SIGKILL it and its children.

    A server killed with SIGKILL leaves its own children orphaned; they are killed too, so that
    nothing keeps using the data directory.
    """
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first_signal)
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedServiceError(
            f"process {proc.pid} did not exit even after SIGKILL; "
            f"inspect it with `ps -p {proc.pid}`"
        ) from exc


class PortTaken(Exception):
    """The server could not bind its port; another process took it after we picked it."""


class Lifecycle(ABC):
    """Something started by `start()` and stopped by `stop()`; ``with`` does both."""

    @abstractmethod
    def start(self) -> object:
        """Start it; calling it again while it runs is a no-op."""

    @abstractmethod
    def stop(self, timeout: float = 10) -> None:
        """Stop it within about `timeout` seconds; calling it again is a no-op."""

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


class ChildServer(Lifecycle):
    """A server on 127.0.0.1 with its files in `data_dir`, run as a child process.

    A subclass sets the class attributes and implements `url`, `_command` and `_is_ready`;
    `_prepare` (binaries, data directory) and `_child_env` are optional hooks.
    """

    kind: ClassVar[str]
    """The server's name in messages: "PostgreSQL"."""
    process_name: ClassVar[str]
    """What the process is called, to recognise it from a pid file: "postgres"."""
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    """The signal that makes the server shut down cleanly."""
    ready_means: ClassVar[str]
    """What the server does once ready, for the timeout message: "accept connections"."""
    poll_interval: ClassVar[float] = 0.05

    def __init__(
        self,
        data_dir: Path,
        *,
        log_path: Path,
        pid_file: Path,
        port: int | None,
        durable: bool,
        start_timeout: float,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.pid_file = pid_file
        self.durable = durable
        self.start_timeout = start_timeout
        self._requested_port = port
        self._port: int | None = None
        # The port of the last run: a server started again comes back where its clients, which
        # keep their URL, will reconnect.
        self._last_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._account: pwd.struct_passwd | None = None

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL clients connect to; EmbeddedServiceError when the server is not running."""

    @property
    def running(self) -> bool:
        """True while the server process started by `start()` is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None or not self.running:
            raise EmbeddedServiceError(f"embedded {self.kind} on {self.data_dir} is not running")
        return self._port

    @property
    def pid(self) -> int | None:
        """Pid of the server process while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self) -> str:
        """Start the server, wait until it is ready and return its URL.

        Calling it on a running server is a no-op. Started again after `stop()`, the server
        comes back on the port it had, so clients that kept its URL reconnect to it.
        """
        if self.running:
            return self.url
        self._prepare()
        self._clear_stale_pid_file()
        fixed = self._requested_port or self._last_port
        attempts = 1 if fixed is not None else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = fixed or free_port()
            try:
                self._launch(port)
            except PortTaken as exc:
                if attempt == attempts:
                    hint = (
                        "another process took the port this server had before it was stopped; "
                        "stop that process or create a new server on a free port"
                        if self._requested_port is None and fixed is not None
                        else "choose another port or leave it unset to pick a free one"
                    )
                    raise EmbeddedServiceError(
                        f"embedded {self.kind} could not bind {HOST}:{port}, it is in use; {hint}"
                    ) from exc
                continue
            self._last_port = port
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10) -> None:
        """Stop the server with its `stop_signal`; SIGKILL it after `timeout` seconds.
        Calling it again, or before `start()`, is a no-op."""
        if self._proc is None:
            return
        stop_child(self._proc, self.stop_signal, timeout)
        self._proc = None
        self._port = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r}, pid={self.pid}, port={self._port})"

    # --- what a server defines ---

    def _prepare(self) -> None:
        """Get the binaries and the data directory ready; runs before every start."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    @abstractmethod
    def _command(self, port: int) -> list[str]:
        """The command line that runs the server in the foreground on `port`."""

    @abstractmethod
    def _is_ready(self, port: int) -> bool:
        """True once the server on `port` serves clients and is the one we started (another
        process may have taken the port between `free_port()` and our bind)."""

    def _child_env(self) -> dict[str, str] | None:
        """The server's environment; None inherits ours."""
        return None

    # --- the life cycle ---

    def _clear_stale_pid_file(self) -> None:
        if not self.pid_file.exists():
            return
        pid = read_pid_file(self.pid_file)
        if pid is not None and pid_serves_dir(pid, self.process_name, self.data_dir):
            # Two servers on one data directory would interleave their writes.
            raise EmbeddedServiceError(
                f"another {self.kind} server (pid {pid}) is running on {self.data_dir}; stop it "
                f"(`kill -{self.stop_signal.name.removeprefix('SIG')} {pid}`) or use another "
                "data directory"
            )
        kill_strays(self.process_name, self.data_dir)
        self.pid_file.unlink(missing_ok=True)

    def _launch(self, port: int) -> None:
        started = time.monotonic()
        self._proc, since = spawn(
            self._command(port),
            self.log_path,
            cwd=self.data_dir,
            env=self._child_env(),
            account=self._account,
            new_session=True,
        )
        self._port = port
        try:
            self._wait_ready(port, since, started + self.start_timeout)
        except BaseException:
            self.stop(timeout=5)
            raise

    def _wait_ready(self, port: int, since: int, deadline: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = log_tail(self.log_path, since)
                if "Address already in use" in tail:
                    raise PortTaken(port)
                raise EmbeddedServiceError(
                    f"embedded {self.kind} on {self.data_dir} exited with code {code} while "
                    f"starting; server log ({self.log_path}):\n{tail}"
                )
            if self._is_ready(port):
                return
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"embedded {self.kind} on {self.data_dir} did not {self.ready_means} "
                    f"within {self.start_timeout:g} s; server log ({self.log_path}):\n"
                    f"{log_tail(self.log_path, since)}"
                )
            time.sleep(self.poll_interval)
