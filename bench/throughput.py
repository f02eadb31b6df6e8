"""No-op throughput: bare Celery, Celery with Conveyor's settings, and Conveyor with its ledger.

Method, the same for the three configurations (each a fresh worker process, prefork, -c 2):

1. empty the ledger, the event stream and the queues;
2. publish N ``bench.noop`` messages with the worker stopped (a separate process; timed, and
   reported on its own as the publish rate);
3. start the worker (for Conveyor also the recorder, so the ledger's whole cost — all 3N events
   — falls inside the measured window), and time from the first message taken off the queue
   to the last one acknowledged; for Conveyor the clock stops only when all N jobs are
   ``succeeded`` in PostgreSQL.

Pre-publishing keeps the publisher off the two cores while the worker runs, and leaves worker
start-up (imports, forking the pool, mingle) out of the window. The order of the three
configurations rotates from round to round, and ratios are taken within a round, so slow drift
in the machine's load does not favour one of them.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from bench.apps import KINDS, Kind, consumed_queues, reference
from bench.machine import CpuWindow
from bench.report import Figure, median, spread
from bench.stack import BenchError, Child, QueueProbe, Stack, wait_until

LABELS: dict[Kind, str] = {
    "bare": "a. bare Celery (defaults)",
    "tuned": "b. Celery + Conveyor settings",
    "conveyor": "c. Conveyor, ledger on",
}
# The probe shares the cores with what it measures: it polls fast only to catch the first task
# (the start of the window), then every 20 ms (≤ 0.1% of a 20,000-task window).
FIRST_POLL = 0.002
POLL = 0.02
LETTER: dict[Kind, str] = {"bare": "a", "tuned": "b", "conveyor": "c"}


@dataclass
class Run:
    kind: Kind
    n: int
    publish_rate: float
    seconds: float  # first message taken .. last acknowledged (Conveyor: .. last in ledger)
    drained: float  # first message taken .. queue drained (worker done)
    foreign_cores: float  # CPU others used meanwhile, in cores (see bench.machine)
    cpu: dict[str, float]  # CPU seconds per process tree (worker, recorder, servers, bench)

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def ledger_lag(self) -> float:
        return self.seconds - self.drained


@dataclass
class Throughput:
    runs: dict[Kind, list[Run]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def ratios(self, a: Kind, b: Kind) -> list[float]:
        return [x.rate / y.rate for x, y in zip(self.runs[a], self.runs[b], strict=True)]


def _worker(stack: Stack, kind: Kind, queues: list[str], loglevel: str) -> Child:
    options = ["-P", "prefork", "-c", "2", "-n", f"bench-{kind}@%h", "--loglevel", loglevel]
    options += ["-Q", ",".join(queues)]
    if kind == "conveyor":
        # Conveyor's own entry point, as deployed (`conveyor worker`).
        return stack.child(f"worker-{kind}", ["conveyor", "worker", *options])
    return stack.child(f"worker-{kind}", ["bench.worker", kind, *options])


def _components(stack: Stack, children: list[Child]) -> dict[str, int]:
    parts = {child.name.split("-")[0]: child.pid for child in children}
    for name, server in (("postgres", stack.postgres), ("redis", stack.redis_server)):
        if server.pid is not None:
            parts[name] = server.pid
    broker = stack.broker_pid()
    if broker is not None and broker not in parts.values():
        parts["broker"] = broker
    return parts


def _publish(stack: Stack, kind: Kind, n: int) -> float:
    child = stack.child(f"publish-{kind}", ["bench.publish", kind, str(n)])
    with child:
        assert child.proc is not None
        if child.proc.wait(timeout=max(120.0, n / 100)) != 0:
            child.check()
    last = child.log_path.read_text().strip().splitlines()[-1]
    result = json.loads(last)
    return float(result["timed"]) / float(result["seconds"])


def _succeeded(stack: Stack) -> tuple[int, int]:
    with stack.pg() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FROM conveyor_jobs"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(
    stack: Stack, kind: Kind, n: int, loglevel: str = "WARNING", *, recorder: bool = True
) -> Run:
    """One measurement of one configuration; every process it starts is stopped on return.

    ``recorder=False`` (Conveyor only, for the breakdown): no recorder runs and the clock stops
    when the worker is done, which isolates the worker-side cost of ``install()``.
    """
    ledger = kind == "conveyor" and recorder
    app = reference(kind, stack.settings, stack.prefix)
    transport = dict(app.conf.broker_transport_options or {})
    queues, queue = consumed_queues(app), app.conf.task_default_queue
    stack.reset(queues, transport)
    publish_rate = _publish(stack, kind, n)
    probe = QueueProbe(stack, [queue], transport)
    children: list[Child] = []
    try:
        if probe.waiting() != n:
            raise BenchError(f"{n} messages published, {probe.waiting()} in queue {queue}")
        children.append(_worker(stack, kind, queues, loglevel).start())
        if ledger:
            children.append(stack.child("recorder", ["conveyor", "recorder"]).start())
        wait_until(
            lambda: probe.waiting() < n, 120, "the worker's first task", FIRST_POLL, (*children,)
        )
        first = time.perf_counter()
        window = CpuWindow(_components(stack, children)).start()
        wait_until(
            lambda: probe.waiting() == 0 and probe.unacked() == 0,
            max(300.0, n / 20),
            "the queue to drain",
            POLL,
            (*children,),
        )
        drained = time.perf_counter()
        end = drained
        if ledger:
            wait_until(lambda: _succeeded(stack)[0] >= n, 300, "the ledger", POLL, (*children,))
            end = time.perf_counter()
            ok, total = _succeeded(stack)
            if ok != n or total != n:
                raise BenchError(f"ledger holds {total} jobs, {ok} succeeded; expected {n}")
        foreign = window.stop()
        return Run(kind, n, publish_rate, end - first, drained - first, foreign, window.seconds)
    finally:
        for child in children:
            child.stop()
        probe.close()


def run(
    stack: Stack,
    n: int,
    rounds: int,
    loglevel: str,
    max_foreign: float = 0.25,
    log: bool = True,
) -> Throughput:
    """``rounds`` x the three configurations. A measurement during which other processes kept
    more than ``max_foreign`` cores busy is taken again (twice at most; the least disturbed
    one is kept)."""
    result = Throughput()
    for r in range(rounds):
        order = KINDS[r % 3 :] + KINDS[: r % 3]
        for kind in order:
            one = measure(stack, kind, n, loglevel)
            for _ in range(2):
                if one.foreign_cores <= max_foreign:
                    break
                if log:
                    print(
                        f"  ({LABELS[kind]}: others used {one.foreign_cores:.2f} cores; again)",
                        file=sys.stderr,
                        flush=True,
                    )
                again = measure(stack, kind, n, loglevel)
                one = min(one, again, key=lambda x: x.foreign_cores)
            result.runs[kind].append(one)
            if log:
                extra = f", ledger lag {one.ledger_lag * 1000:.0f} ms" if kind == "conveyor" else ""
                print(
                    f"  round {r + 1}/{rounds} {LABELS[kind]}: {one.rate:,.0f} tasks/s "
                    f"(publish {one.publish_rate:,.0f}/s{extra}; "
                    f"others used {one.foreign_cores:.2f} cores meanwhile)",
                    file=sys.stderr,
                    flush=True,
                )
    return result


def figures(result: Throughput, broker: str, overrides: dict[str, object]) -> list[Figure]:
    section = f"throughput, {broker}"
    if overrides:
        section += ", b and c with " + ", ".join(
            f"{k}={json.dumps(v)}" for k, v in overrides.items()
        )
    out = []
    for kind in KINDS:
        runs = result.runs[kind]
        out.append(Figure(section, f"{LABELS[kind]}, tasks/s", spread([r.rate for r in runs])))
    for kind in KINDS:
        rates = [r.publish_rate for r in result.runs[kind]]
        out.append(Figure(section, f"publish rate {LETTER[kind]}, msgs/s", spread(rates)))
    ca, cb = result.ratios("conveyor", "bare"), result.ratios("conveyor", "tuned")
    fmt = "{:.2f}x"
    out.append(Figure(section, "ratio c/a", spread(ca, fmt), "≥ 1.00x", median(ca) >= 1.0))
    out.append(Figure(section, "ratio c/b", spread(cb, fmt), "≥ 0.90x", median(cb) >= 0.9))
    lags = [r.ledger_lag * 1000 for r in result.runs["conveyor"]]
    out.append(Figure(section, "recorder lag after worker done, ms", spread(lags)))
    for kind in KINDS:
        split = cpu_split(result.runs[kind])
        out.append(Figure(section, f"CPU ms per 1,000 tasks, {LETTER[kind]}", split))
    foreign = max(r.foreign_cores for runs in result.runs.values() for r in runs)
    out.append(Figure(section, "others' CPU during runs, max cores", f"{foreign:.2f}"))
    return out


def cpu_split(runs: list[Run]) -> str:
    """Median CPU milliseconds per 1,000 tasks of each process tree, e.g. "worker 1,650 + ..."."""
    names = sorted({k for r in runs for k in r.cpu}, key=_CPU_ORDER.index)
    parts = []
    for name in names:
        per_k = median([r.cpu.get(name, 0.0) * 1e6 / r.n for r in runs])
        if per_k >= 5:  # e.g. PostgreSQL, idle while the references run
            parts.append(f"{name} {per_k:,.0f}")
    total = median([sum(r.cpu.values()) * 1e6 / r.n for r in runs])
    return f"{total:,.0f} = " + " + ".join(parts)


_CPU_ORDER = ["worker", "recorder", "postgres", "redis", "broker", "bench"]
