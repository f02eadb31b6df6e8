"""``POST /api/v1/jobs``: requests per second and latency of the REST API's submit.

``conveyor api`` (uvicorn) runs against the run's PostgreSQL and broker, with 1 and then 2
uvicorn worker processes; ``bench.loadgen`` drives it from a separate process. No Celery worker
runs: the published jobs wait in the queue, so only the submit path is measured (validate,
one transaction for the job and outbox rows, publish, delete the outbox row).

Two measurements per server:

- closed loop, 32 connections: the highest rate the API sustains (its latencies are queueing
  time, ≈ 32 / rate by Little's law, so they are reported but not judged);
- open loop at the target rate (1,500/s): p50/p99 latency from when each request was due.
  If the API cannot sustain that rate, the latency is taken at half its measured maximum
  instead (moderate load), and the target is reported missed.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import dataclass

from bench.apps import consumed_queues, reference
from bench.machine import CpuWindow
from bench.report import Figure
from bench.stack import Stack, free_port, wait_until

TARGET_RATE = 1500.0
TARGET_P99_MS = 20.0
CONCURRENCY = 32


@dataclass
class Load:
    rate: float  # completed requests per second
    p50_ms: float
    p99_ms: float
    errors: int
    missed: int
    non_202: int
    offered: float | None  # open loop: the rate asked for
    foreign_cores: float


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _drive(stack: Stack, url: str, options: list[str], duration: float) -> Load:
    gen = stack.child("loadgen", ["bench.loadgen", url, "--duration", str(duration), *options])
    window = CpuWindow().start()
    with gen:
        assert gen.proc is not None
        if gen.proc.wait(timeout=duration + 120) != 0:
            gen.check()
    foreign = window.stop()
    out = json.loads(gen.log_path.read_text().strip().splitlines()[-1])
    gen.log_path.unlink()
    status = {int(k): v for k, v in out["status"].items()}
    return Load(
        rate=out["completed"] / out["seconds"],
        p50_ms=out["p50_ms"],
        p99_ms=out["p99_ms"],
        errors=out["errors"],
        missed=out["missed"],
        non_202=sum(v for k, v in status.items() if k != 202),
        offered=None,
        foreign_cores=foreign,
    )


@dataclass
class ApiResult:
    workers: int
    closed: Load
    open: Load


def measure(stack: Stack, workers: int, duration: float) -> ApiResult:
    stack.reset(consumed_queues(reference("conveyor", stack.settings, stack.prefix)), {})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = stack.child(
        f"api-{workers}", ["conveyor", "api", "--port", str(port), "--workers", str(workers)]
    )
    with api:
        wait_until(lambda: _healthy(base), 60, "the API to answer /healthz", 0.1, (api,))
        url = base + "/api/v1/jobs"
        closed = _drive(stack, url, ["--concurrency", str(CONCURRENCY)], duration)
        # Let the server settle; the open loop must not start behind a backlog.
        time.sleep(1.0)
        rate = TARGET_RATE if closed.rate >= TARGET_RATE else round(0.5 * closed.rate)
        opened = _drive(stack, url, ["--rate", str(rate)], duration)
        opened.offered = rate
    return ApiResult(workers, closed, opened)


def run(stack: Stack, duration: float, log: bool = True) -> list[ApiResult]:
    results = []
    for workers in (1, 2):
        result = measure(stack, workers, duration)
        results.append(result)
        if log:
            c, o = result.closed, result.open
            print(
                f"  api --workers {workers}: {c.rate:,.0f} req/s at {CONCURRENCY} concurrent "
                f"(p50 {c.p50_ms:.1f} ms, p99 {c.p99_ms:.1f} ms); open loop {o.offered:,.0f}/s: "
                f"p50 {o.p50_ms:.1f} ms, p99 {o.p99_ms:.1f} ms; errors {c.errors + o.errors}, "
                f"non-202 {c.non_202 + o.non_202}; others used "
                f"{max(c.foreign_cores, o.foreign_cores):.2f} cores",
                file=sys.stderr,
                flush=True,
            )
    return results


def figures(results: list[ApiResult]) -> list[Figure]:
    out = []
    for r in results:
        section = f"POST /api/v1/jobs (conveyor api --workers {r.workers})"
        c, o = r.closed, r.open
        out.append(
            Figure(
                section,
                f"requests/s, {CONCURRENCY} concurrent",
                f"{c.rate:,.0f}",
                f">= {TARGET_RATE:,.0f}",
                c.rate >= TARGET_RATE and c.errors == 0 and c.non_202 == 0,
            )
        )
        out.append(
            Figure(section, f"p50 / p99 ms, {CONCURRENCY} concurrent", _ms(c.p50_ms, c.p99_ms))
        )
        sustained = o.offered == TARGET_RATE and o.missed == 0 and o.errors == 0
        out.append(
            Figure(
                section,
                f"p50 / p99 ms, open loop at {o.offered:,.0f}/s",
                _ms(o.p50_ms, o.p99_ms),
                f"p99 < {TARGET_P99_MS:g} at {TARGET_RATE:,.0f}/s",
                sustained and o.p99_ms < TARGET_P99_MS,
            )
        )
    return out


def _ms(p50: float, p99: float) -> str:
    return f"{p50:.1f} / {p99:.1f}"
