"""Demo tasks that `conveyor up` serves by default, so a newcomer sees jobs move.

They double as the tasks the test-suite drives through real workers.
"""

from __future__ import annotations

import random
import time
from typing import Any

from conveyor.core.retry import RetryPolicy
from conveyor.runtime.app import create_celery
from conveyor.runtime.progress import progress

app = create_celery("conveyor-demo")
# Something moves on the dashboard of a fresh `conveyor up` even before you submit anything.
app.conf.beat_schedule = {
    "demo-crunch": {"task": "demo.crunch", "schedule": 60.0, "kwargs": {"steps": 20}},
    "demo-flaky": {"task": "demo.flaky", "schedule": 30.0, "kwargs": {"fail_rate": 0.5}},
}


class FlakyError(Exception):
    """A transient failure that the `flaky` task retries."""


@app.task(name="demo.noop")
def noop() -> None:
    """Does nothing: for throughput benchmarks."""


@app.task(name="demo.add")
def add(x: int, y: int) -> int:
    """Add two integers."""
    return x + y


@app.task(name="demo.crunch")
def crunch(steps: int = 20, delay: float = 0.25) -> dict[str, Any]:
    """Work through `steps` steps of `delay` seconds, reporting progress after each."""
    for i in range(1, steps + 1):
        time.sleep(delay)
        progress(i, steps, step="crunching", message=f"step {i} of {steps}")
    return {"steps": steps, "seconds": steps * delay}


@app.task(name="demo.sleep")
def sleep(seconds: float = 1.0) -> float:
    """Sleep, checking for cancellation ten times a second."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.1, left))
        progress(seconds - max(left, 0), seconds)
    return seconds


@app.task(name="demo.fail")
def fail(message: str = "this task always fails") -> None:
    """Raise an error, for seeing failures and tracebacks."""
    raise RuntimeError(message)


@app.task(
    name="demo.flaky",
    **RetryPolicy(max_attempts=5, backoff=1, backoff_max=10, retry_on=(FlakyError,)).task_options(),
)
def flaky(fail_rate: float = 0.5) -> str:
    """Fail at random with probability `fail_rate`; retried with exponential backoff."""
    if random.random() < fail_rate:
        raise FlakyError(f"unlucky draw (fail_rate={fail_rate})")
    return "lucky"


@app.task(name="demo.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was given."""
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="demo.step")
def step(value: float = 0, add: float = 1, seconds: float = 1.0) -> float:
    """Take `seconds` (reporting progress) to add `add` to `value`: a step of the demo DAG."""
    for i in range(1, 11):
        time.sleep(seconds / 10)
        progress(i, 10, step="adding")
    return value + add


@app.task(name="demo.merge")
def merge(values: list[float], seconds: float = 1.0) -> float:
    """Take `seconds` to sum the results of the steps before it."""
    time.sleep(seconds)
    return sum(values)


# The demo diamond as a workflow spec (POST /api/v1/workflows): A, then B and C on A's result,
# then D on both of theirs. ``diamond()`` sends the same DAG with Celery's canvas.
DIAMOND: dict[str, Any] = {
    "name": "demo diamond",
    "steps": [
        {"name": "A", "task": "demo.step", "args": [1]},
        {
            "name": "B",
            "task": "demo.step",
            "kwargs": {"add": 10},
            "after": ["A"],
            "pass_result": True,
        },
        {
            "name": "C",
            "task": "demo.step",
            "kwargs": {"add": 20, "seconds": 2.0},
            "after": ["A"],
            "pass_result": True,
            "weight": 2,
        },
        {"name": "D", "task": "demo.merge", "after": ["B", "C"], "pass_result": True},
    ],
}


def diamond(seconds: float = 1.0) -> Any:
    """Send the demo diamond with Celery's canvas (a chain of A, the group of B and C, and D
    as the chord callback); Celery's AsyncResult of D. Conveyor records it as one workflow."""
    from celery import chain, group

    return chain(
        step.s(1, seconds=seconds),
        group(step.s(add=10, seconds=seconds), step.s(add=20, seconds=seconds)),
        merge.s(seconds=seconds),
    ).apply_async()
