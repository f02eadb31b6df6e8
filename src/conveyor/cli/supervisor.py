"""`conveyor up`'s children, kept running: one that exits is started again, with backoff.

A worker killed by a poison message, an API that crashed, a recorder that lost its database:
each is restarted after a delay that doubles with every quick death (1 s, 2 s, 4 s … capped at
30 s) and starts again from 1 s once the child had stayed up for a minute, so a child that
keeps dying does not spin and one that died once comes back at once. The other children keep
running meanwhile. Each restart is logged, and the state of every child (pid, restarts, last
exit) is kept in a Redis hash that the dashboard's Workers page shows.

Stopping (Ctrl-C, SIGTERM) is the caller's: `stop()` ends every child, pending restarts
included, through `stop_children`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from conveyor.ledger import events as ev

log = logging.getLogger("conveyor.up")

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
STEADY_AFTER = 60.0
"""Seconds a child must stay up for its next death to count as a first one again."""
REFRESH = 5.0
"""Seconds between rewrites of the status record while nothing changes (its freshness)."""


def exit_text(code: int) -> str:
    """A child's exit status as a person reads it: "exit 1", "SIGKILL"."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
        return f"signal {-code}"
    return f"exit {code}"


def backoff(quick_deaths: int) -> float:
    """Seconds to wait before the next start after ``quick_deaths`` deaths in a row (≥ 1)."""
    return float(min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, quick_deaths - 1)))


@dataclass
class Child:
    """One supervised command: ``python -m conveyor <args>``."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic, for the backoff
    started_at: float | None = None  # epoch, for people
    restarts: int = 0
    quick_deaths: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None
    restart_at: float | None = None  # monotonic; set while it waits to be started again

    @property
    def running(self) -> bool:
        return self.restart_at is None and self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.proc.pid if self.running and self.proc is not None else None,
            "state": "running" if self.running else "restarting",
            "started_at": self.started_at if self.running else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


def spawn_conveyor(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m conveyor <args>`` in a process group of its own, so that whatever it leaves
    behind when it dies (a killed worker's pool processes) can be found and stopped."""
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        process_group=0,
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a dead child's process group (orphans of a killed worker)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_children(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each child, wait up to ``grace`` seconds, then kill whatever of their process
    trees is left (a worker's pool children included), so nothing outlives us."""
    tree: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            tree.extend(psutil.Process(proc.pid).children(recursive=True))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=max(0.1, deadline - time.monotonic()))
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


class Supervisor:
    """Starts the children, restarts those that exit, and records their state in Redis."""

    def __init__(
        self,
        children: list[Child],
        env: dict[str, str],
        redis_url: str | None,
        say: Callable[[str, int], None],
    ) -> None:
        self.children = children
        self.env = env
        self.say = say
        self.host = socket.gethostname()
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._written = 0.0

    def start(self) -> None:
        for child in self.children:
            self._start(child)
        self.publish()

    def poll(self) -> None:
        """One round: notice children that exited, start those whose delay is over."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                    changed = True
            elif child.proc is not None and child.proc.poll() is not None:
                self._died(child, child.proc, now)
                changed = True
        if changed or now - self._written > REFRESH:
            self.publish()

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """Every child process started, alive or not (for `stop_children`)."""
        return [c.proc for c in self.children if c.proc is not None]

    def stop(self, grace: float) -> None:
        """Stop every child (a pending restart never happens), then their groups' leftovers."""
        for child in self.children:
            child.restart_at = None
        procs = self.processes()
        stop_children(procs, grace=grace)
        for proc in procs:
            kill_group(proc)
        self.forget()

    def publish(self) -> None:
        """Write every child's state to Redis; Redis down only delays the dashboard's view."""
        self._written = time.monotonic()
        if self.redis is None:
            return
        extra = {
            "host": self.host,
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "interval": REFRESH,
        }
        fields = {self._field(c): json.dumps({**c.status(), **extra}) for c in self.children}
        with contextlib.suppress(redis.RedisError):
            self.redis.hset(ev.SUPERVISED_KEY, mapping=fields)  # type: ignore[arg-type]

    def forget(self) -> None:
        """Remove this supervisor's records (on a clean stop)."""
        if self.redis is None:
            return
        with contextlib.suppress(redis.RedisError):
            self.redis.hdel(ev.SUPERVISED_KEY, *(self._field(c) for c in self.children))
        self.redis.close()

    def _died(self, child: Child, proc: subprocess.Popen[bytes], now: float) -> None:
        kill_group(proc)
        up_for = now - child.started
        child.quick_deaths = 1 if up_for >= STEADY_AFTER else child.quick_deaths + 1
        delay = backoff(child.quick_deaths)
        child.last_exit = exit_text(proc.returncode)
        child.last_exit_at = time.time()
        child.restart_at = now + delay
        self.say(
            f"{child.name} (pid {proc.pid}) exited ({child.last_exit}) after {up_for:.0f} s; "
            f"restarting it in {delay:g} s (restart {child.restarts + 1})",
            logging.WARNING,
        )

    def _field(self, child: Child) -> str:
        return f"{self.host}/{child.name}"

    def _start(self, child: Child) -> None:
        child.proc = spawn_conveyor(child.args, self.env)
        child.started = time.monotonic()
        child.started_at = time.time()
        child.restart_at = None
