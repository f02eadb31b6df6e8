"""`conveyor up` run as a user runs it, for the acceptance tests that need the whole stack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import psutil
import pytest

from conveyor.embedded.process import free_port
from conveyor.testing.services import wait_for


class ConveyorUp:
    """`python -m conveyor up -c 1` as a subprocess with nothing configured but its home and
    API port, so it starts its own embedded PostgreSQL and Redis under `home`.

    It runs in a session of its own, as a shell runs a job, so that `interrupt()` can signal its
    whole process group the way a terminal does without reaching pytest.
    """

    def __init__(
        self, home: Path, port: int, cwd: Path, log_path: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.args = args
        self.home = home
        self.port = port
        self.cwd = cwd
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update({"CONVEYOR_HOME": str(self.home), "CONVEYOR_API_PORT": str(self.port)})
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "up", "-c", "1", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 90) -> Self:
        """Wait until ``GET /readyz`` answers 200; fail early if `conveyor up` exits."""
        proc = self._running()

        def ready() -> bool:
            code = proc.poll()
            assert code is None, f"conveyor up exited with {code}; see {self.log_path}"
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, interval=0.3, message="conveyor up to be ready")
        return self

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def submit(self, task: str, *args: Any, **kwargs: Any) -> str:
        """POST a job and return its id."""
        response = httpx.post(
            f"{self.url}/api/v1/jobs", json={"task": task, "args": args, "kwargs": kwargs}
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def descendants(self) -> list[psutil.Process]:
        """Every process running under `conveyor up` now, the embedded servers included (they
        have sessions of their own but are still its children). `left_running()` checks all
        that were ever seen here."""
        try:
            found = psutil.Process(self._running().pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for proc in found:
            self._seen.setdefault(proc.pid, proc)
        return found

    def interrupt(self, *, group: bool, timeout: float = 60) -> int:
        """SIGINT and `conveyor up`'s exit code. ``group=True`` signals its whole process group,
        as a terminal's Ctrl-C does; ``group=False`` only `conveyor up`, as ``kill -INT`` does."""
        proc = self._running()
        self.descendants()
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        return proc.wait(timeout)

    def left_running(self, timeout: float = 10) -> list[tuple[int, str]]:
        """(pid, name) of each process seen under `conveyor up` still alive after `timeout`."""
        _, alive = psutil.wait_procs(list(self._seen.values()), timeout=timeout)
        left = []
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                left.append((proc.pid, proc.name()))
        return left

    def kill(self) -> None:
        """Kill `conveyor up` and everything seen under it; for teardown after a failure."""
        if self.proc is not None and self.proc.poll() is None:
            self.descendants()
            self.proc.kill()
            self.proc.wait()
        for proc in self._seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def _running(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, "start() first"
        return self.proc


@pytest.fixture
def conveyor_up(tmp_path: Path, artifacts: Path) -> Iterator[Callable[..., ConveyorUp]]:
    """Start `conveyor up` with its output in ``artifacts/<log_name>`` (and any more options:
    ``conveyor_up("up.log", "--log-format", "json")``).

    Every start within one test uses the same home and API port, so a second start is a
    restart. Whatever is still running at the end of the test is killed.
    """
    home = tmp_path / "home"
    port = free_port()
    started: list[ConveyorUp] = []

    def start(log_name: str, *args: str) -> ConveyorUp:
        up = ConveyorUp(home, port, cwd=tmp_path, log_path=artifacts / log_name, args=args)
        up.start()
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()
