"""Dashboard pages over a ledger of a million jobs: server time per page.

Seeds the run's ledger with ``--ledger-jobs`` jobs (1,000,000 by default) spread over the last
seven days: 20 tasks on 4 queues, 95 % succeeded, 3 % failed, 1 % dead, the rest cancelled,
queued, scheduled or running, with arguments, errors and run times — one INSERT … SELECT, so
the counting triggers aggregate it as they would any batch. Then it asks the dashboard (the
real FastAPI app, in this process, no network) for each page ``--repeats`` times and reports
the median and worst server time. Target: every page under 200 ms.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.report import Figure, percentile
from bench.stack import Stack

TARGET_MS = 200.0
TASKS = 20
QUEUES = ("default", "high", "low", "reports")

SEED = """
INSERT INTO conveyor_jobs (
  id, task, state, queue, args, kwargs, attempt, worker, root_id, created_at, queued_at,
  started_at, finished_at, updated_at, error_type, error_message, result)
SELECT id, task, state, queue, args, '{}'::jsonb,
       CASE WHEN state IN ('queued', 'scheduled') THEN 0 ELSE 1 END, 'bench@seed', id, created,
       created, CASE WHEN state IN ('queued', 'scheduled') THEN NULL ELSE created END,
       CASE WHEN state IN ('succeeded', 'failed', 'dead', 'cancelled')
            THEN created + make_interval(secs => 0.05 + (i % 97) / 10.0) END,
       created,
       CASE WHEN state IN ('failed', 'dead') THEN 'ValueError' END,
       CASE WHEN state IN ('failed', 'dead') THEN 'bad input in row ' || i END,
       CASE WHEN state = 'succeeded' THEN jsonb_build_object('rows', i % 1000) END
FROM (
  SELECT i, created, uuidv7(created - now()) AS id,
         'bench.task_' || (i % %(tasks)s) AS task,
         (ARRAY[%(queues)s])[1 + (i % %(tasks)s) %% %(nqueues)s] AS queue,
         jsonb_build_array(i, 'customer-' || (i % 5000)) AS args,
         CASE WHEN i %% 100 < 95 THEN 'succeeded' WHEN i %% 100 < 98 THEN 'failed'
              WHEN i %% 100 = 98 THEN 'dead'
              ELSE (ARRAY['cancelled', 'queued', 'scheduled', 'running'])[1 + (i / 100) %% 4]
         END AS state
  FROM (SELECT i, now() - make_interval(secs => 604800.0 * i / %(n)s) AS created
        FROM generate_series(%(first)s, %(last)s) AS i) AS t
) AS s
"""


@dataclass
class Page:
    name: str
    path: str
    times_ms: list[float]
    status: int


def seed(stack: Stack, n: int, chunk: int = 200_000) -> float:
    """Fill the ledger with ``n`` jobs; seconds taken."""
    started = time.monotonic()
    queues = ", ".join(f"'{q}'" for q in QUEUES)
    sql = (
        SEED.replace("%(tasks)s", str(TASKS))
        .replace("%(queues)s", queues)
        .replace("%(nqueues)s", str(len(QUEUES)))
        .replace("%(n)s", str(n))
        .replace("%%", "%")
    )
    with stack.pg() as conn:
        for first in range(0, n, chunk):
            last = min(n, first + chunk) - 1
            conn.execute(sql.replace("%(first)s", str(first)).replace("%(last)s", str(last)))
            print(f"  seeded {last + 1:,} of {n:,} jobs", file=sys.stderr)
        conn.execute("VACUUM ANALYZE conveyor_jobs")
        conn.execute("VACUUM ANALYZE conveyor_job_stats")
    return time.monotonic() - started


def pages(client: Any) -> list[tuple[str, str]]:
    """The pages to time; the second jobs page follows the first one's cursor."""
    first = client.get("/api/v1/jobs?limit=50").json()
    cursor = first.get("next_cursor") or ""
    return [
        ("overview, last hour", "/"),
        ("overview, 24 hours", "/?range=24h"),
        ("overview, 7 days", "/?range=7d"),
        ("jobs, newest", "/jobs"),
        ("jobs, next page", f"/jobs?cursor={cursor}"),
        ("jobs, state=failed", "/jobs?state=failed"),
        ("jobs, task", "/jobs?task=bench.task_7"),
        ("jobs, queue + state", "/jobs?queue=low&state=succeeded"),
        ("jobs, text search", "/jobs?q=customer-4242"),
        ("dead letters", "/dlq"),
        ("queues", "/queues"),
        ("tasks", "/tasks"),
        ("API: GET /api/v1/jobs", "/api/v1/jobs?limit=50"),
    ]


def run(stack: Stack, n: int, repeats: int) -> tuple[float, list[Page]]:
    from fastapi.testclient import TestClient

    from conveyor.api import create_app

    print(f"seeding {n:,} jobs", file=sys.stderr)
    seeded = seed(stack, n)
    results: list[Page] = []
    with TestClient(create_app(stack.settings)) as client:
        for name, path in pages(client):
            times: list[float] = []
            status = 0
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                status = r.status_code
            results.append(Page(name, path, times[1:], status))  # the first warms caches
            print(f"  {name}: {percentile(times[1:], 50):.1f} ms", file=sys.stderr)
    return seeded, results


def figures(seeded: float, results: list[Page], n: int) -> list[Figure]:
    out = [Figure("dashboard", f"seed {n:,} jobs", f"{seeded:.0f} s")]
    for page in results:
        p50, worst = percentile(page.times_ms, 50), max(page.times_ms)
        value = f"{p50:.1f} ms (max {worst:.1f})" + (
            "" if page.status == 200 else f" HTTP {page.status}"
        )
        out.append(
            Figure(
                "dashboard",
                page.name,
                value,
                f"< {TARGET_MS:.0f} ms",
                page.status == 200 and worst < TARGET_MS,
            )
        )
    return out
