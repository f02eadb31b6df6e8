"""The factory pack end to end through the product: API, broker, worker, ledger.

``conveyor api``, ``conveyor worker -c 2`` and ``conveyor recorder`` run as child processes
with only the factory pack on, against the run's PostgreSQL and Redis. Each batch is timed
from the moment ``POST /api/v1/factory/batches`` is sent until its row says ``completed``
(written in the anchoring step's transaction: at that instant every product verifies): 1,000
products (median of several) and 1,000,000 (target ≤ 8 s, as for the pipeline alone in
``bench/factory.py``, which is the reference: the difference is what the job path costs).
Then the 1M batch's CSV is downloaded through the API (streamed from ``COPY … TO STDOUT``),
and tokens are verified over HTTP one request at a time.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field

import httpx

from bench.catalog import _ok, _worker_alive
from bench.report import Figure, median, percentile
from bench.stack import Child, Stack, free_port, wait_until

SMALL = 1_000
SMALL_RUNS = 5
BIG = 1_000_000
BIG_RUNS = 2
VERIFY_SAMPLES = 300


@dataclass
class ApiResult:
    small_s: list[float] = field(default_factory=list)
    big_s: list[float] = field(default_factory=list)
    csv_s: float = 0.0
    csv_mb: float = 0.0
    csv_rows: int = 0
    verify_ms: list[float] = field(default_factory=list)


def _batch(stack: Stack, client: httpx.Client, count: int) -> tuple[str, float]:
    started = time.perf_counter()
    resp = client.post(
        "/api/v1/factory/batches",
        json={"product_count": count, "product_name": "Widget", "category": "tools"},
    )
    if resp.status_code != 202:
        raise RuntimeError(f"batch refused: {resp.status_code} {resp.text}")
    batch_id = resp.json()["batch_id"]
    with stack.pg() as conn:
        while True:
            row = conn.execute(
                "SELECT status, error FROM factory_batches WHERE id = %s", (batch_id,)
            ).fetchone()
            assert row is not None
            if row[0] in ("completed", "failed"):
                break
            time.sleep(0.005)
    seconds = time.perf_counter() - started
    if row[0] != "completed":
        raise RuntimeError(f"batch {batch_id} failed: {row[1]}")
    return batch_id, seconds


def run(stack: Stack) -> ApiResult:
    result = ApiResult()
    env = {**stack.env(), "CONVEYOR_APP": "conveyor.demo:app", "CONVEYOR_PACKS": "factory"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = stack.home
    api = Child("factory-api", ["conveyor", "api", "--port", str(port)], env, home / "f-api.log")
    worker = Child(
        "factory-worker",
        ["conveyor", "worker", "-c", "2", "--loglevel", "WARNING"],
        env,
        home / "f-worker.log",
    )
    recorder = Child("factory-recorder", ["conveyor", "recorder"], env, home / "f-rec.log")
    with api, worker, recorder, httpx.Client(base_url=base, timeout=120) as client:
        wait_until(lambda: _ok(base + "/healthz"), 60, "the API", 0.1, (api,))
        wait_until(lambda: _worker_alive(base), 60, "the worker's heartbeat", 0.2, (worker,))
        for _ in range(SMALL_RUNS):
            result.small_s.append(_batch(stack, client, SMALL)[1])
        print(f"  1,000 products: median {median(result.small_s):.3f} s", file=sys.stderr)
        big_id = ""
        for _ in range(BIG_RUNS):
            with stack.pg() as conn:  # each run starts without the last one's WAL to flush
                conn.execute("CHECKPOINT")
            big_id, seconds = _batch(stack, client, BIG)
            result.big_s.append(seconds)
            print(f"  1,000,000 products: {seconds:.2f} s", file=sys.stderr, flush=True)
        started = time.perf_counter()
        size = lines = 0
        with client.stream("GET", f"/api/v1/factory/batches/{big_id}/products.csv") as resp:
            resp.raise_for_status()
            for block in resp.iter_bytes():
                size += len(block)
                lines += block.count(b"\n")
        result.csv_s = time.perf_counter() - started
        result.csv_mb, result.csv_rows = size / 1e6, lines - 1
        print(
            f"  CSV of {result.csv_rows:,} rows, {result.csv_mb:.0f} MB: {result.csv_s:.2f} s",
            file=sys.stderr,
        )
        rng = random.Random(3)
        tokens = []
        for after in rng.sample(range(BIG), VERIFY_SAMPLES):
            page = client.get(
                f"/api/v1/factory/batches/{big_id}/products", params={"after": after, "limit": 1}
            ).json()
            tokens.append(page["items"][0]["token"])
        for token in tokens:
            started = time.perf_counter()
            answer = client.get(f"/api/v1/factory/verify/{token}").json()
            result.verify_ms.append((time.perf_counter() - started) * 1000)
            assert answer["authentic"], answer
        print(
            f"  verify over HTTP p50/p99: {percentile(result.verify_ms, 50):.1f} /"
            f" {percentile(result.verify_ms, 99):.1f} ms",
            file=sys.stderr,
        )
    return result


def figures(r: ApiResult) -> list[Figure]:
    section = "factory through the API (POST → completed)"
    best = min(r.big_s)
    small = median(r.small_s)
    p99 = percentile(r.verify_ms, 99)
    runs = " / ".join(f"{s:.2f}" for s in r.big_s)
    return [
        Figure(section, "1,000,000 products, best of runs", f"{best:.2f} s", "≤ 8 s", best <= 8),
        Figure(section, "1,000,000 products, each run", f"{runs} s"),
        Figure(section, f"1,000 products, median of {SMALL_RUNS}", f"{small * 1000:.0f} ms"),
        Figure(
            section,
            f"CSV download, {r.csv_rows:,} rows",
            f"{r.csv_s:.2f} s ({r.csv_mb / r.csv_s:.0f} MB/s)",
        ),
        Figure(
            section,
            "verify over HTTP p50 / p99",
            f"{percentile(r.verify_ms, 50):.1f} / {p99:.1f} ms",
            "p99 < 20 ms",
            p99 < 20,
        ),
    ]
