"""Global limits at task start: what the START script needs to know, and sending a job back
to wait for its turn (see ``conveyor.core.limits`` for how tasks declare limits)."""

from __future__ import annotations

from typing import Any

from celery import Task

from conveyor.config import Settings
from conveyor.core.limits import LimitSpec
from conveyor.ledger import events as ev
from conveyor.runtime.context import LimitArgs, publishing_recorded_job, runtime_of

# Concurrency-limit key each running job holds a claim on (freed when its attempt ends).
claims: dict[str, str] = {}
_NO_SPEC = object()


def limit_spec(task: Task, settings: Settings) -> LimitSpec | None:
    """The task's global limits: options on the task, else ``CONVEYOR_LIMITS[task name]``."""
    cached = getattr(task, "_conveyor_limit_spec", _NO_SPEC)
    if cached is _NO_SPEC:
        options = {
            name: getattr(task, name)
            for name in ("global_rate_limit", "rate_burst", "limit_key", "max_concurrency")
            if getattr(task, name, None) is not None
        }
        cached = LimitSpec.from_options(options or settings.limits.get(task.name, {}))
        task._conveyor_limit_spec = cached
    return cached  # type: ignore[return-value]


def limit_args(task: Task, spec: LimitSpec, args: Any, kwargs: Any) -> LimitArgs:
    key = f"{task.name}:{spec.key_value(task.run, args or (), kwargs or {})}"
    hard_limit = task.time_limit or task.app.conf.task_time_limit or 3600
    interval = 1000.0 / spec.rate_per_second if spec.rate_per_second else 0.0
    return LimitArgs(
        concurrency_key=ev.LIMIT_KEY + "conc:" + key if spec.max_concurrency else "",
        concurrency_max=spec.max_concurrency or 0,
        concurrency_ttl_ms=int(hard_limit * 1000) + 5000,
        rate_key=ev.LIMIT_KEY + "rate:" + key if spec.rate_per_second else "",
        interval_ms=interval,
        tolerance_ms=interval * (spec.burst - 1),
        has_slot=bool(task.request.get("conveyor_slot")),
    )


def wait_for_limit(
    task: Task, task_id: str, args: Any, kwargs: Any, countdown: float, slot: bool
) -> None:
    """Send the job back to its queue to start after ``countdown`` seconds, without counting
    an attempt; the current delivery is then acknowledged (raise Ignore)."""
    req = task.request
    rt = runtime_of(task.app)
    delivery = req.delivery_info or {}
    token = publishing_recorded_job.set(True)
    try:
        task.apply_async(
            args,
            kwargs,
            task_id=task_id,
            countdown=countdown,
            queue=delivery.get("routing_key"),
            priority=rt.transport_priority(delivery.get("priority")),
            headers={
                "conveyor_slot": "1" if slot else "",
                "conveyor_waits": int(req.get("conveyor_waits") or 0) + 1,
            },
            parent_id=req.parent_id,
            root_id=req.root_id,
        )
    finally:
        publishing_recorded_job.reset(token)
