"""Global limits at task start: what the START script needs to know, and sending a job back
to wait for its turn (see ``conveyor.core.limits`` for how tasks declare limits); and every
limit a task runs under, as ``GET /tasks``, ``conveyor tasks`` and the Tasks page show it."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from celery import Task

from conveyor.config import Settings
from conveyor.core.limits import LimitSpec
from conveyor.ledger import events as ev
from conveyor.runtime.context import LimitArgs, Runtime, publishing_recorded_job, runtime_of

# A job whose turn is this close waits for it in its pool process rather than going back to
# the broker: a round trip there and back costs more than that on a busy machine, and every
# start that comes late pushes the next one later (the limit would hold, the rate would not).
INLINE_WAIT_MS = 250
INLINE_WAIT_TOTAL_S = 1.0

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


def attempt_cap(task: Task) -> int | None:
    """Deliveries a job may have before it is dead: ``max_attempts`` on the task, else its
    retries plus one; a job that keeps killing its worker stops there instead of looping."""
    explicit = getattr(task, "max_attempts", None)
    if explicit is not None:
        return int(explicit)
    return task.max_retries + 1 if task.max_retries is not None else None


def task_limits(task: Task, settings: Settings) -> dict[str, Any]:
    """Every limit ``task`` runs under: Celery's per-worker rate limit, Conveyor's global rate
    and concurrency limits, time limits, the attempt cap, and the retry policy that really
    applies (``None`` when nothing retries it automatically: Celery's ``max_retries`` then
    only bounds explicit ``self.retry()`` calls)."""
    spec = limit_spec(task, settings)
    conf = task.app.conf
    retry_on = tuple(getattr(task, "autoretry_for", None) or ())
    retry = None
    if retry_on and task.max_retries != 0:
        backoff = getattr(task, "retry_backoff", False)
        retry = {
            "on": [cls.__name__ for cls in retry_on],
            "max_retries": task.max_retries,
            # Celery: backoff True means 1 s, doubling; False means a fixed default delay.
            "backoff": int(backoff) if backoff else None,
            "backoff_max": getattr(task, "retry_backoff_max", None) if backoff else None,
            "jitter": bool(getattr(task, "retry_jitter", False)) if backoff else False,
            "delay": None if backoff else task.default_retry_delay,
        }
    rate = spec.rate_per_second if spec else None
    declared = settings.limits.get(task.name, {})
    rate_text = getattr(task, "global_rate_limit", None) or declared.get(
        "global_rate_limit", declared.get("rate")
    )
    return {
        "rate_limit": task.rate_limit,
        "global_rate_limit": str(rate_text) if rate else None,
        "rate_burst": spec.burst if spec and rate else None,
        "limit_key": spec.key_argument if spec else None,
        "max_concurrency": spec.max_concurrency if spec else None,
        "soft_time_limit": task.soft_time_limit or conf.task_soft_time_limit,
        "time_limit": task.time_limit or conf.task_time_limit,
        "max_attempts": attempt_cap(task),
        "retry": retry,
    }


def limits_summary(limits: dict[str, Any]) -> list[str]:
    """``task_limits`` in a few short phrases, for a table cell."""
    parts = []
    if limits.get("global_rate_limit"):
        burst = limits.get("rate_burst") or 1
        parts.append(
            f"{limits['global_rate_limit']} global" + (f", burst {burst}" if burst > 1 else "")
        )
    if limits.get("max_concurrency"):
        key = limits.get("limit_key")
        parts.append(f"{limits['max_concurrency']} at once" + (f" per {key}" if key else ""))
    elif limits.get("limit_key") and limits.get("global_rate_limit"):
        parts[-1] += f" per {limits['limit_key']}"
    if limits.get("rate_limit"):
        parts.append(f"{limits['rate_limit']} per worker")
    soft, hard = limits.get("soft_time_limit"), limits.get("time_limit")
    if soft or hard:
        parts.append(" / ".join(f"{k} {v:g} s" for k, v in (("soft", soft), ("hard", hard)) if v))
    retry = limits.get("retry")
    if retry is None:
        parts.append("no retries")
    else:
        times = "∞" if retry["max_retries"] is None else retry["max_retries"]
        wait = (
            f"backoff {retry['backoff']} to {retry['backoff_max']} s"
            if retry["backoff"]
            else f"{retry['delay']} s apart"
        )
        noun = "retry" if times == 1 else "retries"
        parts.append(f"{times} {noun} on {', '.join(retry['on'])}, {wait}")
    return parts


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


def start(
    rt: Runtime,
    event: dict[str, Any],
    cap: int | None,
    held: LimitArgs | None,
    *,
    nonce: str = "",
    resend: bool = False,
) -> tuple[int, int]:
    """``Runtime.start`` under the job's limits, waiting here for a rate turn that is at most
    INLINE_WAIT_MS away. A RATE_WAIT outcome means the job holds a reserved turn further off."""
    outcome, value = rt.start(event, cap, held, nonce=nonce, resend=resend)
    deadline = time.monotonic() + INLINE_WAIT_TOTAL_S
    while (
        outcome == ev.RATE_WAIT
        and held is not None
        and value <= INLINE_WAIT_MS
        and time.monotonic() + value / 1000.0 < deadline
    ):
        time.sleep(value / 1000.0)
        held = replace(held, has_slot=True)  # the first check reserved this job's turn
        event["ts"] = time.time()
        outcome, value = rt.start(event, cap, held, nonce=nonce, resend=resend)
    return outcome, value


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
