"""The assess pack through the product: API, broker, two worker processes, ledger.

``conveyor api``, ``conveyor worker -c 2`` (two pool processes) and ``conveyor recorder`` run
as child processes with only the assess pack on, against the run's PostgreSQL and Redis.

- **start under load**: 50 assessments are created (the startup example, one analyzer each,
  so the runs they start stay small), then 50 threads, released together by a barrier, each
  send ``POST /assessments/{id}/start`` once; the latency of each answer (202) is timed.
  Target: p99 < 50 ms.
- **enterprise end to end**: the enterprise example (about 1,000 instances), all ten
  analyzers, timed from ``POST …/start`` until the assessment reads ``completed`` (its report
  stored); with the slowest analyzers' own durations.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.catalog import _ok, _worker_alive
from bench.report import Figure, median, percentile
from bench.stack import Child, Stack, free_port, wait_until

BASE = "/api/v1/assess"
CONCURRENT = 50
ENTERPRISE_RUNS = 2


@dataclass
class AssessResult:
    start_ms: list[float] = field(default_factory=list)
    sequential_ms: list[float] = field(default_factory=list)
    enterprise_s: list[float] = field(default_factory=list)
    instances: int = 0
    slowest: list[tuple[str, float]] = field(default_factory=list)
    partial: bool = False


def _created(client: httpx.Client, example: str, analyzers: list[str] | None = None) -> str:
    body: dict[str, Any] = {"example": example}
    if analyzers:
        body["analyzers"] = analyzers
    resp = client.post(f"{BASE}/examples/{example}/assessments", json=body)
    if resp.status_code != 201:
        raise RuntimeError(f"create refused: {resp.status_code} {resp.text}")
    return str(resp.json()["id"])


def _until_ended(client: httpx.Client, assessment_id: str, timeout: float = 900) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = client.get(f"{BASE}/assessments/{assessment_id}").json()
        if out["status"] not in ("created", "running"):
            return out
        time.sleep(0.05)
    raise RuntimeError(f"assessment {assessment_id} still running after {timeout} s")


def _concurrent_starts(base: str, ids: list[str]) -> list[float]:
    barrier = threading.Barrier(len(ids))

    def one(assessment_id: str) -> float:
        with httpx.Client(base_url=base, timeout=60) as client:
            client.get("/healthz")  # the connection is open before the barrier
            barrier.wait()
            started = time.perf_counter()
            resp = client.post(f"{BASE}/assessments/{assessment_id}/start")
            elapsed = (time.perf_counter() - started) * 1000
        if resp.status_code != 202:
            raise RuntimeError(f"start refused: {resp.status_code} {resp.text}")
        return elapsed

    with ThreadPoolExecutor(len(ids)) as pool:
        return list(pool.map(one, ids))


def run(stack: Stack) -> AssessResult:
    result = AssessResult()
    env = {**stack.env(), "CONVEYOR_APP": "conveyor.demo:app", "CONVEYOR_PACKS": "assess"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = stack.home
    api = Child("assess-api", ["conveyor", "api", "--port", str(port)], env, home / "a-api.log")
    worker = Child(
        "assess-worker",
        ["conveyor", "worker", "-c", "2", "--loglevel", "WARNING"],
        env,
        home / "a-worker.log",
    )
    recorder = Child("assess-recorder", ["conveyor", "recorder"], env, home / "a-rec.log")
    with api, worker, recorder, httpx.Client(base_url=base, timeout=120) as client:
        wait_until(lambda: _ok(base + "/healthz"), 60, "the API", 0.1, (api,))
        wait_until(lambda: _worker_alive(base), 60, "the worker's heartbeat", 0.2, (worker,))
        # One warm-up run: the API and the workers import and connect once.
        warm = _created(client, "startup")
        client.post(f"{BASE}/assessments/{warm}/start").raise_for_status()
        _until_ended(client, warm)
        ids = [_created(client, "startup", ["cto"]) for _ in range(CONCURRENT)]
        result.start_ms = _concurrent_starts(base, ids)
        for assessment_id in ids:
            _until_ended(client, assessment_id)
        ids = [_created(client, "startup", ["cto"]) for _ in range(CONCURRENT)]
        for assessment_id in ids:  # one at a time: what a start costs without a queue
            started = time.perf_counter()
            client.post(f"{BASE}/assessments/{assessment_id}/start").raise_for_status()
            result.sequential_ms.append((time.perf_counter() - started) * 1000)
        print(
            f"  {CONCURRENT} concurrent starts p50/p99: {percentile(result.start_ms, 50):.1f} /"
            f" {percentile(result.start_ms, 99):.1f} ms",
            file=sys.stderr,
        )
        for assessment_id in ids:  # let them drain before the end-to-end runs
            _until_ended(client, assessment_id)
        for _ in range(ENTERPRISE_RUNS):
            assessment_id = _created(client, "enterprise")
            started = time.perf_counter()
            client.post(f"{BASE}/assessments/{assessment_id}/start").raise_for_status()
            done = _until_ended(client, assessment_id)
            seconds = time.perf_counter() - started
            if done["status"] != "completed":
                raise RuntimeError(f"enterprise assessment {done['status']}: {done['error']}")
            result.enterprise_s.append(seconds)
            result.partial = result.partial or bool(done["partial"])
            durations = [(a["name"], a["duration_s"] or 0.0) for a in done["analyzers"]]
            result.slowest = sorted(durations, key=lambda d: -d[1])[:3]
            print(f"  enterprise end to end: {seconds:.2f} s", file=sys.stderr, flush=True)
        listed = client.get(f"{BASE}/examples").json()["items"]
        result.instances = next(e["instances"] for e in listed if e["name"] == "enterprise")
    return result


def figures(r: AssessResult) -> list[Figure]:
    section = "assess pack (API, two worker processes)"
    p99 = percentile(r.start_ms, 99)
    slowest = ", ".join(f"{n} {s:.2f} s" for n, s in r.slowest)
    runs = " / ".join(f"{s:.2f}" for s in r.enterprise_s)
    return [
        Figure(
            section,
            f"POST …/start, {CONCURRENT} concurrent, p50 / p99",
            f"{percentile(r.start_ms, 50):.1f} / {p99:.1f} ms",
            "p99 < 50 ms",
            p99 < 50,
        ),
        Figure(
            section,
            f"POST …/start, one at a time ({CONCURRENT}), p50 / p99",
            f"{percentile(r.sequential_ms, 50):.1f} / {percentile(r.sequential_ms, 99):.1f} ms",
        ),
        Figure(
            section,
            f"enterprise example ({r.instances:,} instances), start → report, median",
            f"{median(r.enterprise_s):.2f} s" + (" (partial!)" if r.partial else ""),
        ),
        Figure(section, "enterprise example, each run", f"{runs} s"),
        Figure(section, "enterprise example, slowest analyzers", slowest),
    ]
