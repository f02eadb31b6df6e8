"""``python -m bench`` (``make bench``): run the benchmarks, print the machine and a table.

Progress goes to stderr; stdout holds only the result (with ``--markdown``, a block ready to
paste into docs/benchmarks.md). Nothing is written outside a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from urllib.parse import urlsplit

from bench import (
    agri,
    api,
    catalog,
    chord,
    dashboard,
    factory,
    factory_api,
    latency,
    schedules,
    throughput,
)
from bench.machine import code_fingerprint, describe
from bench.report import Figure, render
from bench.stack import REPO, BenchError, Stack

BENCHMARKS = (
    "throughput",
    "api",
    "latency",
    "catalog",
    "factory",
    "factory-api",
    "schedules",
    "dashboard",
    "chord",
    "agri",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20_000, help="no-op tasks per throughput run")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (median reported)")
    p.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this one")
    p.add_argument(
        "--broker",
        help="broker URL (default: the embedded Redis), e.g. amqp://guest:guest@127.0.0.1:5672//",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per API load run")
    p.add_argument("--jobs", type=int, default=200, help="jobs per enqueue→start path")
    p.add_argument(
        "--catalog-rows", type=int, default=500_000, help="rows of the catalog import files"
    )
    p.add_argument(
        "--loglevel", default="WARNING", help="worker log level, the same for all configurations"
    )
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="run PostgreSQL with fsync off (as the test suite does); default: durable",
    )
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.25,
        help="repeat a throughput run if other processes kept more cores than this busy",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="SETTING=JSON",
        help="change one of Conveyor's Celery settings for b and c (never the bare reference),"
        " e.g. worker_send_task_events=false; repeatable",
    )
    p.add_argument(
        "--ledger-jobs", type=int, default=1_000_000, help="jobs seeded for the dashboard run"
    )
    p.add_argument("--repeats", type=int, default=20, help="requests per dashboard page")
    p.add_argument("--chord-tasks", type=int, default=1000, help="header tasks of the chord run")
    p.add_argument("--markdown", action="store_true", help="print Markdown for the docs")
    p.add_argument("--keep", action="store_true", help="keep the run directory (child logs)")
    return p


def _broker_name(url: str) -> str:
    scheme = urlsplit(url).scheme
    return {"amqp": "RabbitMQ", "pyamqp": "RabbitMQ", "redis": "Redis"}.get(scheme, scheme)


def _overrides(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r}: expected SETTING=JSON")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare string
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that every child and server is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    selected = args.only or list(BENCHMARKS)
    if args.tasks < 100 or args.rounds < 1 or args.jobs < 10:
        print("--tasks >= 100, --rounds >= 1, --jobs >= 10", file=sys.stderr)
        return 2
    started = time.monotonic()
    figures: list[Figure] = []
    try:
        overrides = _overrides(args.override)
    except ValueError as exc:
        print(f"--override: {exc}", file=sys.stderr)
        return 2
    stack = Stack(args.broker, durable=not args.no_fsync, keep=args.keep)
    stack.overrides = overrides
    try:
        with stack:
            broker = _broker_name(stack.broker_url)
            if args.broker:
                broker += " " + urlsplit(args.broker).netloc.rsplit("@", 1)[-1]
            else:
                broker += " (embedded)"
            print(f"services up in {stack.home}; broker: {broker}", file=sys.stderr)
            if "throughput" in selected:
                print(
                    f"throughput: {args.rounds} round(s) x 3 configurations x {args.tasks:,} tasks",
                    file=sys.stderr,
                )
                tp = throughput.run(stack, args.tasks, args.rounds, args.loglevel, args.max_foreign)
                figures += throughput.figures(tp, broker, overrides)
            if "api" in selected:
                print("POST /api/v1/jobs:", file=sys.stderr)
                figures += api.figures(api.run(stack, args.duration))
            if "latency" in selected:
                print("enqueue→start on an idle worker:", file=sys.stderr)
                figures += latency.figures(latency.run(stack, args.jobs))
            if "factory" in selected:
                print("factory batches:", file=sys.stderr)
                figures += factory.figures(factory.run(stack))
            if "factory-api" in selected:
                print("factory batches through the API:", file=sys.stderr)
                figures += factory_api.figures(factory_api.run(stack))
            if "catalog" in selected:
                print("catalog import (upload → queryable):", file=sys.stderr)
                figures += catalog.figures(catalog.run(stack, args.catalog_rows))
            if "schedules" in selected:
                print("schedules due in the same minute:", file=sys.stderr)
                for submitters in (0, 2, schedules.AUTO):
                    figures += schedules.figures(schedules.run(stack, submitters=submitters))
            if "chord" in selected:
                print(f"chord of {args.chord_tasks:,} header tasks:", file=sys.stderr)
                figures += chord.figures(chord.run(stack, args.chord_tasks, args.rounds))
            if "agri" in selected:
                print("agri NDVI statistics, 1,000 plots of one tile:", file=sys.stderr)
                figures += agri.figures(agri.run(rounds=args.rounds))
            if "dashboard" in selected:
                # Last: the seeded ledger would slow the other runs' inserts.
                print("dashboard pages over a large ledger:", file=sys.stderr)
                seeded, pages = dashboard.run(stack, args.ledger_jobs, args.repeats)
                figures += dashboard.figures(seeded, pages, args.ledger_jobs)
            versions = stack.versions()
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        if args.keep:
            print(f"logs kept in {stack.home}", file=sys.stderr)
        return 1
    machine = describe(
        {
            **versions,
            "code": f"src/conveyor sha256 {code_fingerprint(REPO / 'src' / 'conveyor')}",
            "broker": broker,
            "run": f"{time.monotonic() - started:.0f} s; python -m bench "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        }
    )
    print(render(figures, machine, args.markdown), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
