"""``python -m bench.worker KIND [celery worker options]``: a worker for app KIND.

The Conveyor configuration runs through ``conveyor worker`` itself instead (see throughput.py);
this entry serves the two references, which Conveyor's CLI cannot start.
"""

from __future__ import annotations

import os
import sys

from bench.apps import KINDS, PREFIX_ENV, build
from conveyor.config import Settings


def main() -> None:
    kind = sys.argv[1]
    if kind not in KINDS:
        sys.exit(f"usage: python -m bench.worker {{{'|'.join(KINDS)}}} [worker options]")
    app = build(kind, Settings(), os.environ[PREFIX_ENV])
    app.worker_main(["worker", *sys.argv[2:]])


if __name__ == "__main__":
    main()
