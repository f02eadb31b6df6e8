"""The progress rate and ETA the API shows, from events written by the recorder into the real
ledger: a new attempt measures its own rate (#11.14)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from conveyor.api.schemas import progress_of
from conveyor.ledger import repository as repo
from conveyor.ledger.fold import fold
from conveyor.ledger.recorder import write


def test_rate_restarts_with_each_attempt(ledger: Any) -> None:
    job_id = str(uuid.uuid4())
    t0 = time.time() - 200

    def event(k: str, at: float, **fields: Any) -> dict[str, Any]:
        return {"k": k, "id": job_id, "ts": t0 + at, "task": "demo.crunch", **fields}

    def progress(at: float, current: float) -> dict[str, Any]:
        return event("progress", at, current=current, total=100)

    # One batch per event, as a recorder keeping up with the worker writes them.
    batches = [
        [event("running", 0, attempt=1, worker="w1")],
        [progress(1, 0)],
        [progress(11, 10)],  # 1 unit/s; then the worker dies
        [event("running", 100, attempt=2, worker="w2")],
        [progress(101, 10)],  # resumed from a checkpoint, at 20 units/s
        [progress(102, 30)],
    ]
    for batch in batches:
        with ledger.begin() as conn:
            write(conn, fold(batch), 64 * 1024)
    with ledger.connect() as conn:
        row = repo.get_job(conn, job_id)
    shown = progress_of(row)
    assert shown is not None and shown.rate == 20.0, shown
    assert shown.eta_seconds is not None and shown.eta_seconds <= 70 / 20.0
    with ledger.begin() as conn:
        repo.delete_jobs(conn, [job_id])
