"""What the benchmarks ran on, and how busy the rest of the machine was meanwhile.

The machine is shared (test suites may run beside a benchmark), so each measurement records
the CPU time used by processes outside the benchmark's own process tree during its window;
a figure taken while others used the cores is flagged rather than silently reported.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import psutil


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(extra: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs: CPU, cores, RAM, OS, Python and the library versions."""
    ram = psutil.virtual_memory().total / 2**30
    rows = [
        ("CPU", _cpu_model()),
        ("cores", f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical)"),
        ("RAM", f"{ram:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        (
            "libraries",
            ", ".join(
                f"{name} {version(name)}"
                for name in ("celery", "kombu", "redis", "SQLAlchemy", "psycopg", "uvicorn")
            ),
        ),
    ]
    rows += list((extra or {}).items())
    return rows


def code_fingerprint(root: Path) -> str:
    """A short hash of the Python sources under ``root``: which code the figures belong to."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def _own_seconds() -> float:
    """CPU time of this process and all its descendants."""
    return tree_seconds(psutil.Process().pid)


def tree_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and all its descendants, live or already reaped (a reaped
    process's time is in its parent's ``children_*`` counters)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass  # exited meanwhile: its time reaches its parent's counters once reaped
    return total


def _self_seconds() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


@dataclass
class CpuWindow:
    """CPU used between ``start()`` and ``stop()``: by each named process tree of the benchmark
    (``components``: name -> pid), by the benchmark process itself, and by everything else."""

    components: dict[str, int] = field(default_factory=dict)
    busy0: float = 0.0
    own0: float = 0.0
    wall0: float = 0.0
    parts0: dict[str, float] = field(default_factory=dict)
    foreign_cores: float = 0.0  # average number of cores others kept busy
    seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds per component
    _external: list[str] = field(default_factory=list)

    def start(self) -> CpuWindow:
        mine = {p.pid for p in psutil.Process().children(recursive=True)}
        # Components outside our tree (a local RabbitMQ) are not "others": subtract them too.
        self._external = [name for name, pid in self.components.items() if pid not in mine]
        self.parts0 = {name: tree_seconds(pid) for name, pid in self.components.items()}
        self.parts0["bench"] = _self_seconds()
        self.busy0, self.own0, self.wall0 = _busy_seconds(), _own_seconds(), time.monotonic()
        return self

    def stop(self) -> float:
        wall = max(time.monotonic() - self.wall0, 1e-9)
        busy = _busy_seconds() - self.busy0
        own = _own_seconds() - self.own0
        self.seconds = {
            name: tree_seconds(pid) - self.parts0[name] for name, pid in self.components.items()
        }
        self.seconds["bench"] = _self_seconds() - self.parts0["bench"]
        external = sum(self.seconds[name] for name in self._external)
        self.foreign_cores = max(0.0, (busy - own - external) / wall)
        return self.foreign_cores
