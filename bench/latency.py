"""Enqueue→start latency on an idle system.

A Conveyor worker (``conveyor worker -c 2``) and the recorder run; a driver process submits one
``bench.noop`` job at a time and waits until the ledger shows it ``succeeded`` before the next,
so every job meets an idle worker. Per job it records:

- submit→start: from just before the submit call to the job's ``started_at`` in the ledger
  (the worker's clock when the task began; same machine, same clock);
- the submit call itself;
- submit→visible: until the ledger row reads ``succeeded`` (what a client polling sees).

Two submit paths: ``Control.submit`` (what ``POST /api/v1/jobs`` and ``conveyor submit`` run:
job + outbox rows in one transaction, publish, outbox row removed) and a plain ``.delay()`` on
the installed app (the drop-in path: publish, ``queued`` event to the stream).

The driver runs as ``python -m bench.latency N`` and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.apps import TASK, consumed_queues, reference
from bench.report import Figure, percentile
from bench.stack import BenchError, Stack, wait_until

TARGET_P50_MS = 5.0
WARMUP = 10


@dataclass
class Path:
    name: str
    start_ms: list[float]  # submit -> started_at
    call_ms: list[float]  # the submit call
    visible_ms: list[float]  # submit -> ledger says succeeded


def _drive(n: int) -> dict[str, dict[str, list[float]]]:
    """The driver's work: ``n`` jobs per path, one at a time."""
    import psycopg

    from bench.conveyor_app import app
    from conveyor.control import Control
    from conveyor.ledger.db import make_engine
    from conveyor.runtime.context import runtime_of

    settings = runtime_of(app).settings
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=2)
    control = Control(app, engine)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    task = app.tasks[TASK]

    def submit_control() -> str:
        row, _ = control.submit(TASK)
        return str(row["id"])

    def submit_delay() -> str:
        return str(task.delay().id)

    out: dict[str, dict[str, list[float]]] = {}
    with psycopg.connect(url, autocommit=True) as conn:

        def finished(job_id: str) -> tuple[float, float] | None:
            row = conn.execute(
                "SELECT extract(epoch FROM started_at)::float8, state FROM conveyor_jobs "
                "WHERE id = %s",
                (job_id,),
            ).fetchone()
            if row is None or row[1] != "succeeded":
                return None
            return float(row[0]), time.time()

        for name, submit in (("Control.submit", submit_control), (".delay()", submit_delay)):
            lists: dict[str, list[float]] = {"start": [], "call": [], "visible": []}
            for i in range(WARMUP + n):
                t0 = time.time()
                job_id = submit()
                t1 = time.time()
                deadline = t0 + 30
                while (done := finished(job_id)) is None:
                    if time.time() > deadline:
                        raise BenchError(f"job {job_id} did not finish within 30 s")
                    time.sleep(0.001)
                if i >= WARMUP:
                    started, seen = done
                    lists["start"].append((started - t0) * 1000)
                    lists["call"].append((t1 - t0) * 1000)
                    lists["visible"].append((seen - t0) * 1000)
                time.sleep(0.02)  # idle again: the worker is back waiting on the broker
            out[name] = lists
    engine.dispose()
    return out


def _worker_ready(stack: Stack) -> bool:
    from conveyor.ledger.events import WORKERS_KEY

    client = stack.redis()
    try:
        return bool(client.hlen(WORKERS_KEY))
    finally:
        client.close()


def run(stack: Stack, n: int, log: bool = True) -> list[Path]:
    stack.reset(consumed_queues(reference("conveyor", stack.settings, stack.prefix)), {})
    queues = ",".join(consumed_queues(reference("conveyor", stack.settings, stack.prefix)))
    options = ["-P", "prefork", "-c", "2", "-n", "bench-latency@%h", "--loglevel", "WARNING"]
    worker = stack.child("worker-latency", ["conveyor", "worker", *options, "-Q", queues])
    recorder = stack.child("recorder-latency", ["conveyor", "recorder"])
    with worker, recorder:
        wait_until(lambda: _worker_ready(stack), 60, "the worker", 0.1, (worker, recorder))
        time.sleep(1.0)  # mingle and the pool settle
        driver = stack.child("latency-driver", ["bench.latency", str(n)])
        with driver:
            assert driver.proc is not None
            if driver.proc.wait(timeout=60 + n) != 0:
                driver.check()
        data: dict[str, dict[str, list[float]]] = json.loads(
            driver.log_path.read_text().strip().splitlines()[-1]
        )
    paths = [Path(name, d["start"], d["call"], d["visible"]) for name, d in data.items()]
    if log:
        for p in paths:
            print(
                f"  {p.name}: submit→start p50 {percentile(p.start_ms, 50):.2f} ms, "
                f"p99 {percentile(p.start_ms, 99):.2f} ms; submit call p50 "
                f"{percentile(p.call_ms, 50):.2f} ms; visible in ledger p50 "
                f"{percentile(p.visible_ms, 50):.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    return paths


def figures(paths: list[Path]) -> list[Figure]:
    out = []
    for p in paths:
        section = f"enqueue→start, idle ({p.name}, {len(p.start_ms)} jobs)"
        p50 = percentile(p.start_ms, 50)
        target = p.name == "Control.submit"
        out.append(
            Figure(
                section,
                "submit→start p50 / p99 ms",
                f"{p50:.2f} / {percentile(p.start_ms, 99):.2f}",
                f"p50 < {TARGET_P50_MS:g}" if target else "",
                p50 < TARGET_P50_MS if target else None,
            )
        )
        out.append(Figure(section, "submit call p50 / p99 ms", _pair(p.call_ms)))
        out.append(Figure(section, "submit→succeeded in ledger p50 / p99 ms", _pair(p.visible_ms)))
    return out


def _pair(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 99):.1f}"


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    n = int(args[0]) if args else 200
    result: Any = _drive(n)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
