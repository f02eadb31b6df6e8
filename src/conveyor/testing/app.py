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


@app.task(name="testing.chatty")
def chatty(word: str) -> str:
    """Log ``word`` the three ways task code does: a module logger, Celery's task logger and
    ``print`` (which a worker redirects to its log)."""
    import logging

    from celery.utils.log import get_task_logger

    logging.getLogger("testing.chatty").info("chatty says %s", word)
    get_task_logger("testing.chatty").warning("chatty warns %s", word)
    print(f"chatty prints {word}")
    return word


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


_effects_conn: dict[int, object] = {}

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS testing_effects (
    job_id uuid PRIMARY KEY,
    n integer NOT NULL,
    applications integer NOT NULL DEFAULT 1,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@app.task(name="testing.effect", bind=True)
def effect(self: object, n: int, seconds: float = 0.0) -> int:
    """Apply a side effect keyed by the job id (an upsert into ``testing_effects``, which the
    test creates first with ``EFFECTS_DDL``), so a chaos run can prove each job's effect
    landed once and count the duplicate deliveries the key absorbed."""
    import psycopg

    from conveyor.runtime.context import runtime_of

    if seconds:
        time.sleep(seconds)
    pid = os.getpid()
    conn = _effects_conn.get(pid)
    if conn is None:
        url = str(runtime_of(app).settings.database_url).replace("postgresql+psycopg", "postgresql")
        conn = psycopg.connect(url, autocommit=True)
        _effects_conn.clear()
        _effects_conn[pid] = conn
    job_id = self.request.id  # type: ignore[attr-defined]
    conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO testing_effects (job_id, n) VALUES (%s, %s) ON CONFLICT (job_id) "
        "DO UPDATE SET applications = testing_effects.applications + 1",
        (job_id, n),
    )
    return n


@app.task(name="testing.schedule_header", bind=True)
def schedule_header(self: object) -> str | None:
    """The schedule a fired job came from, as task code reads it from its message."""
    from conveyor.ledger.events import SCHEDULE_HEADER

    value = self.request.get(SCHEDULE_HEADER)  # type: ignore[attr-defined]
    return str(value) if value is not None else None


@app.task(name="testing.needs_file")
def needs_file(value: int, path: str) -> int:
    """Fail while ``path`` does not exist, then return ``value``: a step that fails until the
    test fixes what it needs (for retrying a workflow)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is not there yet")
    return value
