"""A worker is SIGKILLed in the middle of a workflow: once a new worker starts, the workflow
completes with every result as if nothing happened — a spec workflow (driven from the ledger)
and a canvas sent from code (a chord whose header loses a task)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack(open_stack: Callable[..., Any]) -> Iterator[Any]:
    with open_stack("workflows", own_broker=False) as s:
        yield s


def kill_worker(stack: Any, name: str) -> None:
    """SIGKILL a worker's pool children and then the worker itself: nothing is acknowledged,
    nothing said goodbye."""
    worker = stack.workers.pop(name)
    assert worker.proc is not None
    for child in psutil.Process(worker.proc.pid).children(recursive=True):
        child.kill()
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)


def workflow(stack: Any, workflow_id: str) -> dict[str, Any]:
    r = stack.http.get(f"/api/v1/workflows/{workflow_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def until_running(stack: Any, workflow_id: str, steps: int) -> None:
    """Wait until ``steps`` nodes are running at once (a kill then hits work in flight)."""

    def check() -> bool:
        states = [n["state"] for n in workflow(stack, workflow_id)["nodes"]]
        return states.count("running") >= steps

    wait_for(check, timeout=60, interval=0.05, message=f"{steps} nodes running")


def until_ended(stack: Any, workflow_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        out = workflow(stack, workflow_id)
        return out if out["state"] != "running" else None

    done: dict[str, Any] = wait_for(check, timeout=180, message="the workflow to end")
    return done


def result(stack: Any, job_id: str) -> Any:
    return stack.http.get(f"/api/v1/jobs/{job_id}/result").json()["result"]


def outcomes(stack: Any, job_id: str) -> list[str]:
    return [a["outcome"] for a in stack.job(job_id)["attempts"]]


def test_spec_workflow_completes_after_its_worker_is_killed(stack: Any) -> None:
    stack.start_worker("first", "-c", "2")
    slow = {"seconds": 3}
    steps = [
        {"name": "A", "task": "demo.step", "args": [1], "kwargs": {"seconds": 0.2}},
        {"name": "B", "task": "demo.step", "kwargs": {"add": 10, **slow}, "after": ["A"],
         "pass_result": True},
        {"name": "C", "task": "demo.step", "kwargs": {"add": 20, **slow}, "after": ["A"],
         "pass_result": True},
        {"name": "D", "task": "demo.merge", "kwargs": {"seconds": 0}, "after": ["B", "C"],
         "pass_result": True},
    ]  # fmt: skip
    r = stack.http.post("/api/v1/workflows", json={"name": "chaos", "steps": steps})
    assert r.status_code == 202, r.text
    wf_id = r.json()["id"]
    until_running(stack, wf_id, 2)  # B and C, mid-sleep
    kill_worker(stack, "first")
    stack.start_worker("second", "-c", "2")
    done = until_ended(stack, wf_id)
    assert done["state"] == "succeeded", done
    nodes = {n["step"]: n for n in done["nodes"]}
    assert result(stack, nodes["D"]["job_id"]) == 34
    assert outcomes(stack, nodes["B"]["job_id"]) == ["lost", "succeeded"]
    assert outcomes(stack, nodes["C"]["job_id"]) == ["lost", "succeeded"]
    assert outcomes(stack, nodes["A"]["job_id"]) == ["succeeded"]
    stack.stop_worker("second")


def test_canvas_completes_after_its_worker_is_killed(stack: Any) -> None:
    stack.start_worker("third", "-c", "2")
    code = (
        "from celery import chain, group\n"
        "from conveyor.demo import merge, step\n"
        "r = chain(step.s(1, seconds=0.2), group(step.s(add=10, seconds=3),"
        " step.s(add=20, seconds=3)), merge.s(seconds=0)).apply_async()\n"
        "print(r.id)\n"
    )
    last = python_last_line(code, stack.env())

    def known() -> str | None:
        r = stack.http.get(f"/api/v1/jobs/{last}")
        return r.json()["workflow_id"] if r.status_code == 200 else None

    # The callback's id is known from the first message; its job exists once it is sent. Find
    # the workflow through the first step instead: the newest canvas workflow.
    def newest() -> str | None:
        items = stack.http.get("/api/v1/workflows", params={"source": "canvas"}).json()["items"]
        return items[0]["id"] if items else None

    wf_id = wait_for(newest, timeout=30, message="the canvas workflow")
    until_running(stack, wf_id, 2)
    kill_worker(stack, "third")
    stack.start_worker("fourth", "-c", "2")
    done = until_ended(stack, wf_id)
    assert done["state"] == "succeeded", done
    assert known() == wf_id
    assert result(stack, last) == 34
    lost = [n for n in done["nodes"] if "lost" in outcomes(stack, n["job_id"])]
    assert len(lost) == 2
    stack.stop_worker("fourth")


def test_a_retried_canvas_completes_after_its_worker_is_killed(stack: Any) -> None:
    """A retried canvas is driven from the ledger: a re-run step whose worker dies is sent
    again as a plain job, without the chain its first message carried, so the steps after it
    run once (from the ledger), not twice (once more from the carried chain)."""
    stack.start_worker("fifth", "-c", "2")
    code = (
        "from celery import chain\n"
        "from conveyor.demo import add, sleep\n"
        "r = chain(sleep.si(4), add.si(1, 2), add.s(100)).apply_async()\n"
        "print(r.parent.parent.id)\n"
    )
    first = python_last_line(code, stack.env())

    def sleeping() -> str | None:
        r = stack.http.get(f"/api/v1/jobs/{first}")
        ok = r.status_code == 200 and r.json()["state"] == "running"
        return r.json()["workflow_id"] if ok else None

    wf_id = wait_for(sleeping, timeout=60, message="the first step to run")
    assert stack.http.post(f"/api/v1/workflows/{wf_id}/cancel").status_code == 200
    until_ended(stack, wf_id)
    r = stack.http.post(f"/api/v1/workflows/{wf_id}/retry")
    assert r.status_code == 202, r.text
    rerun = next(n["job_id"] for n in r.json()["nodes"] if n["step"] == first)

    def rerun_sleeping() -> bool:
        return bool(stack.job(rerun)["state"] == "running")

    wait_for(rerun_sleeping, timeout=60, interval=0.05, message="the re-run to sleep")
    kill_worker(stack, "fifth")
    stack.start_worker("sixth", "-c", "2")
    done = until_ended(stack, wf_id)
    assert done["state"] == "succeeded", done
    assert outcomes(stack, rerun) == ["lost", "succeeded"]
    jobs = stack.http.get("/api/v1/jobs", params={"workflow": wf_id, "limit": 50}).json()["items"]
    for args, value in (([1, 2], 3), ([3, 100], 103)):
        ran = [j for j in jobs if j["task"] == "demo.add" and j["args"] == args]
        assert len(ran) == 1, (args, ran)  # once, not once more from the carried chain
        assert result(stack, ran[0]["id"]) == value
    stack.stop_worker("sixth")
