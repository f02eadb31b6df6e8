"""The record of imports and the rows they skipped (SQLAlchemy Core, for the API and pages)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from conveyor.errors import InvalidTransition, ResourceNotFound
from conveyor.packs.catalog.tables import import_errors, imports

ENDED = ("succeeded", "failed", "cancelled")


def create(conn: Connection, import_id: str, filename: str, stored_as: str, size: int) -> None:
    """Record an accepted upload, waiting for its job."""
    conn.execute(
        insert(imports).values(
            id=import_id, filename=filename[:255], stored_as=stored_as, size_bytes=size
        )
    )


def attach_job(conn: Connection, import_id: str, job_id: str) -> None:
    """Point the import at the job that will run it (again), unless that job already started
    and said so itself."""
    conn.execute(
        update(imports)
        .where(
            imports.c.id == import_id,
            (imports.c.job_id.is_(None)) | (imports.c.job_id != job_id),
        )
        .values(job_id=job_id, state="queued", error=None, finished_at=None)
    )


def get(conn: Connection, import_id: str) -> dict[str, Any]:
    """One import, or ResourceNotFound."""
    row = conn.execute(select(imports).where(imports.c.id == import_id)).mappings().first()
    if row is None:
        raise ResourceNotFound(f"no catalog import with id {import_id!r}")
    return public(dict(row))


def recent(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest imports, newest first."""
    query = select(imports).order_by(imports.c.created_at.desc()).limit(limit)
    return [public(dict(r)) for r in conn.execute(query).mappings()]


def public(row: dict[str, Any]) -> dict[str, Any]:
    """An import as the API shows it; ``unchanged``: rows that changed nothing (see
    ``importer.ImportSummary``), once it succeeded."""
    row["id"] = str(row["id"])
    counts = [row[k] for k in ("rows_total", "inserted", "updated", "skipped")]
    row["unchanged"] = None if None in counts else counts[0] - sum(counts[1:])
    row["job_id"] = str(row["job_id"]) if row["job_id"] else None
    row.pop("stored_as", None)
    return row


def check_retry(conn: Connection, import_id: str) -> dict[str, Any]:
    """The import, if it may run again (it failed or was cancelled)."""
    row = get(conn, import_id)
    if row["state"] not in ("failed", "cancelled"):
        raise InvalidTransition(
            f"import {import_id} is {row['state']}; only a failed or cancelled import can be "
            "retried (upload the file again to import it once more)"
        )
    return row


def skipped_rows(
    conn: Connection, import_id: str, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Skipped rows of an import in row order, from after row ``after``."""
    query = (
        select(import_errors.c.row, import_errors.c.reason, import_errors.c.excerpt)
        .where(import_errors.c.import_id == import_id, import_errors.c.row > after)
        .order_by(import_errors.c.row)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def error_report(engine: Engine, import_id: str, batch: int = 5_000) -> Iterator[bytes]:
    """The skipped rows as a CSV download (row,reason,excerpt), read in batches."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "reason", "excerpt"])
    after = 0
    while True:
        with engine.connect() as conn:
            rows = skipped_rows(conn, import_id, after, batch)
        for r in rows:
            writer.writerow([r["row"], r["reason"], r["excerpt"]])
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
        if len(rows) < batch:
            return
        after = rows[-1]["row"]
