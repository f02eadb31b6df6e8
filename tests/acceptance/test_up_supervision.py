"""`conveyor up` supervises its children: a worker that dies is started again while the API
stays up, the Workers page shows the restart, and Ctrl-C still stops everything."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import psutil

from conveyor.embedded.process import free_port
from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    from conftest import ConveyorUp


def _worker_child(up: ConveyorUp) -> psutil.Process | None:
    """The worker `conveyor up` started (its direct child), once it is running."""
    assert up.proc is not None
    for child in psutil.Process(up.proc.pid).children():
        try:
            if "worker1@%h" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_up_restarts_a_killed_worker_and_keeps_the_api(
    conveyor_up: Callable[..., ConveyorUp],
) -> None:
    port = free_port()
    up = conveyor_up("up-supervision.log", "--port", str(port))
    # `--port` wins over CONVEYOR_API_PORT (which the fixture sets to another port).
    up.url = f"http://127.0.0.1:{port}"
    up.wait_ready()
    first = wait_for(lambda: _worker_child(up), timeout=30, message="the worker child")
    wait_for(
        lambda: any(w["alive"] and w["pid"] == first.pid for w in up.get("/api/v1/workers")),
        timeout=60,
        interval=0.3,
        message="the worker's heartbeat",
    )
    up.descendants()  # remember its pool process: it must not outlive the test either

    first.send_signal(signal.SIGKILL)

    def replaced() -> psutil.Process | None:
        # The API answers all along.
        assert httpx.get(f"{up.url}/healthz", timeout=5).status_code == 200
        child = _worker_child(up)
        return child if child is not None and child.pid != first.pid else None

    second = wait_for(replaced, timeout=60, interval=0.3, message="a new worker child")
    wait_for(
        lambda: any(w["alive"] and w["pid"] == second.pid for w in up.get("/api/v1/workers")),
        timeout=60,
        interval=0.3,
        message="the new worker's heartbeat",
    )
    assert up.submit("demo.add", 2, 3)

    def page_shows_restart() -> str | None:
        page = httpx.get(f"{up.url}/workers", timeout=10)
        assert page.status_code == 200, page.text[:500]
        return page.text if 'data-child="worker1" data-restarts="1"' in page.text else None

    page = wait_for(page_shows_restart, timeout=30, interval=0.5, message="the restart shown")
    assert "SIGKILL" in page
    log = up.log_path.read_text(errors="replace")
    assert f"worker1 (pid {first.pid}) exited (SIGKILL)" in log, log[-3000:]

    assert up.interrupt(group=True, timeout=60) == 0, f"see {up.log_path}"
    left = up.left_running()
    assert left == [], f"left running after Ctrl-C: {left}"
