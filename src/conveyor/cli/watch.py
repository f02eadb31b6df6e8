"""Follow one job in the terminal: a live progress bar, then the result or the error."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import Engine

from conveyor.core.states import JobState
from conveyor.ledger import repository as repo


def watch_job(
    engine: Engine, job_id: str, *, timeout: float, console: Console, out: Console
) -> int:
    """Poll the ledger until the job ends; exit code 0 on success, 1 otherwise."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.fields[state]:<10}"),
        BarColumn(),
        TextColumn("{task.completed:g}/{task.total}"),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        handle = bar.add_task("job", total=None, state="queued", message="")
        while True:
            with engine.connect() as conn:
                row = repo.get_job(conn, job_id)
            total = row["progress_total"]
            bar.update(
                handle,
                completed=row["progress_current"] or 0,
                total=total,
                state=row["state"],
                message=(row["progress_message"] or row["progress_step"] or "")[:60],
            )
            state = JobState(row["state"])
            if state.terminal:
                if state is JobState.SUCCEEDED and total:
                    bar.update(handle, completed=total)
                break
            if time.monotonic() > deadline:
                console.print(f"[yellow]still {state.value} after {timeout:g}s; stopped watching")
                return 3
            time.sleep(0.2)
    if state is JobState.SUCCEEDED:
        with engine.connect() as conn:
            result = row["result"]
            if row["result_ref"]:
                blob = repo.get_blob(conn, row["result_ref"])
                result = json.loads(blob) if blob else None
        out.print_json(json.dumps(result, default=str))
        return 0
    console.print(f"[red]{state.value}[/]: {row['error_type'] or ''} {row['error_message'] or ''}")
    if row["traceback"]:
        console.print(row["traceback"], markup=False, highlight=False)
    return 1
