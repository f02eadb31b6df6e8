"""What task code calls while it runs: ``progress()`` and ``check_cancelled()``."""

from __future__ import annotations

import time
from typing import Any

from celery import current_task

from conveyor.errors import JobCancelled
from conveyor.ledger.events import PROGRESS
from conveyor.runtime.context import runtime_of

# Per process: job id -> (monotonic time of last report, last step). Keeps chatty loops from
# turning into a Redis call per iteration.
_last: dict[str, tuple[float, str | None]] = {}


def progress(
    current: float,
    total: float | None = None,
    *,
    step: str | None = None,
    message: str | None = None,
) -> None:
    """Report the running job's progress; raises JobCancelled if its cancel was requested.

    Safe to call as often as you like: reports closer together than
    ``CONVEYOR_PROGRESS_MIN_INTERVAL`` are dropped, except the final one and step changes.
    Outside a worker (a plain function call) it does nothing.
    """
    task: Any = current_task
    if task is None or task.request.id is None or task.request.called_directly:
        return
    rt = runtime_of(task.app)
    job_id = task.request.id
    now = time.monotonic()
    last_at, last_step = _last.get(job_id, (0.0, None))
    final = total is not None and current >= total
    if not final and step == last_step and now - last_at < rt.settings.progress_min_interval:
        return
    if len(_last) > 10_000:
        _last.clear()
    _last[job_id] = (now, step)
    event = {
        "k": PROGRESS,
        "id": job_id,
        "ts": time.time(),
        "current": current,
        "total": total,
        "step": step,
        "message": message,
    }
    if rt.progress(event):
        raise JobCancelled(f"job {job_id} was cancelled")


def check_cancelled() -> None:
    """Raise JobCancelled if the running job's cancel was requested."""
    task: Any = current_task
    if task is None or task.request.id is None or task.request.called_directly:
        return
    if runtime_of(task.app).is_cancelled(task.request.id):
        raise JobCancelled(f"job {task.request.id} was cancelled")
