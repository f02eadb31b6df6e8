"""Accepting an upload as an import: check the file, record it, submit its job.

Shared by the API, the dashboard and the CLI, so a file is refused the same way everywhere
and nothing is enqueued for a file that cannot be imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.errors import InputRejected
from conveyor.packs.catalog import csv_input, import_log
from conveyor.packs.catalog.tasks import IMPORT_TASK
from conveyor.packs.kit import Services


def accept(services: Services, import_id: str, filename: str, path: Path) -> dict[str, Any]:
    """Check the stored upload's header, record the import and submit its job; the import.

    A refused file is deleted and InputRejected raised (nothing recorded or enqueued).
    """
    try:
        csv_input.read_header(path)
    except InputRejected:
        path.unlink(missing_ok=True)
        raise
    with services.engine.begin() as conn:
        import_log.create(conn, import_id, filename, path.name, path.stat().st_size)
    return submit(services, import_id)


def submit(services: Services, import_id: str) -> dict[str, Any]:
    """Submit the job that runs an import (the first time or again); the import."""
    job, _ = services.control.submit(IMPORT_TASK, kwargs={"import_id": import_id})
    with services.engine.begin() as conn:
        import_log.attach_job(conn, import_id, str(job["id"]))
        return links(import_log.get(conn, import_id))


def retry(services: Services, import_id: str) -> dict[str, Any]:
    """Run a failed or cancelled import again, from its kept upload."""
    from conveyor.packs.catalog import uploads

    with services.engine.connect() as conn:
        row = import_log.check_retry(conn, import_id)
    uploads.path_of(services.settings, f"{row['id']}.csv")  # still there?
    return submit(services, import_id)


def links(row: dict[str, Any]) -> dict[str, Any]:
    """Where a client follows an import: its job, the job's live events, its error report."""
    base = f"/api/v1/catalog/imports/{row['id']}"
    job = f"/api/v1/jobs/{row['job_id']}" if row.get("job_id") else None
    row["links"] = {
        "self": base,
        "job": job,
        "events": f"{job}/events" if job else None,
        "errors": f"{base}/errors",
        "error_report": f"{base}/errors.csv",
    }
    return row
