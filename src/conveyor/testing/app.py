"""The demo app plus tasks that misbehave on purpose, for tests that break things for real.

Point a worker at it with ``CONVEYOR_APP=conveyor.testing.app:app``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conveyor.demo import app

__all__ = ["app"]


@app.task(name="testing.crash", max_retries=2)
def crash() -> None:
    """Kill the process running it, every time: the job must end dead, not loop."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="testing.crash_once")
def crash_once(marker: str) -> str:
    """Kill the process running it the first time (``marker`` is a file path), then succeed."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@app.task(name="testing.block")
def block(seconds: float = 60.0) -> float:
    """Sleep without ever checking for cancellation: only termination stops it."""
    time.sleep(seconds)
    return seconds


@app.task(
    name="testing.doomed",
    autoretry_for=(ValueError,),
    max_retries=1,
    default_retry_delay=0.1,
)
def doomed(x: int) -> int:
    """Fail (and be retried once, then dead) for negative ``x``; double it otherwise."""
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")
    return 2 * x


@app.task(name="testing.rated", global_rate_limit="5/s")
def rated(n: int) -> int:
    """At most five starts a second across every worker."""
    return n


@app.task(name="testing.per_customer", limit_key="customer", max_concurrency=2)
def per_customer(customer: str, seconds: float = 0.5) -> str:
    """At most two running at once for the same customer, across every worker."""
    time.sleep(seconds)
    return customer


def _leave_note(task: object, job_id: str, args: list[object], kwargs: dict[str, object]) -> None:
    Path(str(kwargs["note"])).write_text(f"cleaned up after {job_id}")


@app.task(name="testing.overrun", soft_time_limit=1, time_limit=3, on_soft_timeout=_leave_note)
def overrun(note: str, stubborn: bool = False) -> None:
    """Run past the soft time limit; a stubborn run also ignores it, until the hard limit."""
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            if not stubborn:
                raise
