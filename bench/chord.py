"""A chord of N header tasks (1,000 by default): bare Celery against Conveyor, in the same run.

Both apps have the same two tasks: ``bench.one`` (returns its argument) for the header and
``bench.total`` for the callback, which sums the header's results and notes the sum and the
time in Redis. The bare reference is a plain ``Celery()`` with its broker and the Redis result
backend a chord needs; Conveyor's is ``create_celery()`` (its settings and ``install()``), whose
recorder turns the chord into one workflow of N + 1 nodes.

Method, per round and configuration (order alternating between rounds): empty the ledger,
Redis and the queues; start the worker (prefork, -c 2; for Conveyor also the recorder); send the
chord from another process and time from just before ``apply_async`` to the callback's note
(the chord done, Celery's view). For Conveyor the clock also runs until the workflow is whole
in the ledger: N + 1 nodes, all succeeded ("ledger complete").
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, chord

from bench.apps import BARE_QUEUE, PREFIX_ENV, conveyor_app
from bench.report import Figure, spread
from bench.stack import BenchError, Child, Stack, wait_until
from conveyor.config import Settings

DONE_KEY = "bench:chord:done"
KINDS = ("bare", "conveyor")
LABELS = {"bare": "bare Celery", "conveyor": "Conveyor"}


def one(x: int) -> int:
    return x


def total(values: list[int]) -> int:
    """The callback: the sum, noted in Redis with the time it was made."""
    import redis

    result = sum(values)
    client = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
    # CLOCK_MONOTONIC is one clock for every process of the machine (the wall clock of a VM
    # may be stepped under a measurement).
    client.set(DONE_KEY, json.dumps({"sum": result, "at": time.monotonic()}))
    client.close()
    return result


def register(app: Celery) -> Celery:
    app.task(name="bench.one")(one)
    app.task(name="bench.total")(total)
    return app


def build(kind: str, settings: Settings, prefix: str) -> Celery:
    if kind == "bare":
        app = Celery(
            "bench-chord-bare",
            broker=settings.broker_url,
            backend=settings.redis_url,
            set_as_current=False,
        )
        app.conf.task_default_queue = prefix + BARE_QUEUE
        return register(app)
    return conveyor_app(settings, prefix)  # registers bench.one / bench.total itself


@dataclass
class Run:
    kind: str
    seconds: float  # apply_async .. callback done
    ledger_seconds: float | None = None  # apply_async .. workflow whole in the ledger


@dataclass
class Chords:
    n: int
    runs: dict[str, list[Run]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def ratios(self) -> list[float]:
        """Conveyor's time over bare Celery's, round by round (1.0 = no cost)."""
        pairs = zip(self.runs["conveyor"], self.runs["bare"], strict=True)
        return [c.seconds / b.seconds for c, b in pairs]


def _workflow_whole(stack: Stack, n: int) -> bool:
    with stack.pg() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE j.state = 'succeeded'), count(*) "
            "FROM conveyor_workflow_nodes n LEFT JOIN conveyor_jobs j ON j.id = n.job_id"
        ).fetchone()
    return row is not None and int(row[0]) == n + 1 and int(row[1]) == n + 1


def _worker(stack: Stack, kind: str, queues: list[str]) -> Child:
    options = ["-P", "prefork", "-c", "2", "-n", f"bench-chord-{kind}@%h", "--loglevel", "WARNING"]
    options += ["-Q", ",".join(queues)]
    if kind == "conveyor":
        return stack.child("worker-chord-conveyor", ["conveyor", "worker", *options])
    return stack.child("worker-chord-bare", ["bench.chord", "worker", kind, *options])


def measure(stack: Stack, kind: str, n: int) -> Run:
    app = build(kind, stack.settings, stack.prefix)
    queues = [q.name for q in app.conf.task_queues or ()] or [app.conf.task_default_queue]
    stack.reset(queues, dict(app.conf.broker_transport_options or {}))
    with stack.pg() as conn:
        conn.execute("TRUNCATE conveyor_workflows, conveyor_workflow_keys CASCADE")
    children = [_worker(stack, kind, queues).start()]
    if kind == "conveyor":
        children.append(stack.child("recorder-chord", ["conveyor", "recorder"]).start())
    client = stack.redis()
    try:
        time.sleep(3)  # the worker's pool up and consuming (start-up is not what is measured)
        sender = stack.child(f"send-chord-{kind}", ["bench.chord", "send", kind, str(n)])
        with sender:
            assert sender.proc is not None
            if sender.proc.wait(timeout=120) != 0:
                sender.check()
        # (the log is appended to round after round: this round's line is the last)
        lines = sender.log_path.read_text().splitlines()
        sent_at = float(json.loads([x for x in lines if x.startswith("{")][-1])["at"])
        wait_until(lambda: client.exists(DONE_KEY), 300, "the chord callback", 0.01, (*children,))
        done = json.loads(client.get(DONE_KEY) or b"{}")
        if done.get("sum") != n * (n - 1) // 2:
            raise BenchError(f"the chord summed to {done.get('sum')}, not {n * (n - 1) // 2}")
        run = Run(kind, float(done["at"]) - sent_at)
        if kind == "conveyor":
            wait_until(lambda: _workflow_whole(stack, n), 300, "the ledger", 0.02, (*children,))
            run.ledger_seconds = time.monotonic() - sent_at
        return run
    finally:
        client.close()
        for child in children:
            child.stop()


def run(stack: Stack, n: int, rounds: int, log: bool = True) -> Chords:
    result = Chords(n)
    for r in range(rounds):
        for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
            one_run = measure(stack, kind, n)
            result.runs[kind].append(one_run)
            if log:
                extra = (
                    f", ledger complete after {one_run.ledger_seconds:.2f} s"
                    if one_run.ledger_seconds is not None
                    else ""
                )
                print(
                    f"  round {r + 1}/{rounds} {LABELS[kind]}: chord of {n:,} done in "
                    f"{one_run.seconds:.2f} s{extra}",
                    file=sys.stderr,
                    flush=True,
                )
    return result


def figures(result: Chords) -> list[Figure]:
    section = f"Chord of {result.n:,} header tasks (prefork -c 2)"
    bare = [r.seconds for r in result.runs["bare"]]
    conv = [r.seconds for r in result.runs["conveyor"]]
    ledger = [r.ledger_seconds or 0.0 for r in result.runs["conveyor"]]
    return [
        Figure(section, "a. bare Celery: send → callback done", spread(bare, "{:.2f} s")),
        Figure(section, "b. Conveyor: send → callback done", spread(conv, "{:.2f} s")),
        Figure(section, "b. Conveyor: send → workflow whole in ledger", spread(ledger, "{:.2f} s")),
        Figure(section, "b/a time (1.00 = no cost)", spread(result.ratios(), "{:.2f}x")),
    ]


# --- child entry points: ``python -m bench.chord send KIND N`` / ``worker KIND ...`` ---------


def _send(kind: str, n: int) -> dict[str, Any]:
    app = build(kind, Settings(), os.environ[PREFIX_ENV])
    header = [app.tasks["bench.one"].s(i) for i in range(n)]
    callback = app.tasks["bench.total"].s()
    with app.connection_for_write() as conn:
        conn.ensure_connection()  # connecting is not part of the chord's time
        at = time.monotonic()
        chord(header, callback).apply_async()
    return {"at": at}


def main() -> None:
    command, kind = sys.argv[1], sys.argv[2]
    if command not in ("send", "worker") or kind not in KINDS:
        sys.exit("usage: python -m bench.chord {send KIND N | worker KIND [options]}")
    if command == "send":
        print(json.dumps(_send(kind, int(sys.argv[3]))), flush=True)
        os._exit(0)  # the result backend's teardown at exit only adds noise to the log
    app = build(kind, Settings(), os.environ[PREFIX_ENV])
    app.worker_main(["worker", *sys.argv[3:]])


if __name__ == "__main__":
    main()
