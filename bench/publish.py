"""``python -m bench.publish KIND N``: publish N ``bench.noop`` messages with app KIND.

Runs as its own process so that only the app under test is ever built in it (``install()``
hooks process-wide signals). Prints one JSON line, ``{"published": N, "timed": N - 1,
"seconds": s}``: the first publish, which connects and declares the queue, is not timed.
"""

from __future__ import annotations

import json
import os
import sys
import time

from bench.apps import KINDS, PREFIX_ENV, TASK, Kind, build
from conveyor.config import Settings


def publish(kind: Kind, n: int) -> float:
    app = build(kind, Settings(), os.environ[PREFIX_ENV])
    task = app.tasks[TASK]
    with app.producer_or_acquire() as producer:
        task.apply_async(producer=producer)  # connect and declare outside the timing
        started = time.perf_counter()
        for _ in range(n - 1):
            task.apply_async(producer=producer)
        return time.perf_counter() - started


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind not in KINDS or n < 2:
        sys.exit(f"usage: python -m bench.publish {{{'|'.join(KINDS)}}} N>=2")
    seconds = publish(kind, n)
    print(json.dumps({"published": n, "timed": n - 1, "seconds": seconds}))


if __name__ == "__main__":
    main()
