"""The CSV import: a whole file into ``catalog_products`` in one transaction.

1. parsing — COPY the raw file into a temporary table of text columns (PostgreSQL parses the
   CSV); if COPY refuses the file, :func:`csv_input.clean_batches` reads it in Python, sets
   the broken rows aside and COPYs the rest;
2. loading — rows without a SKU or name, or with over-long fields, are recorded as skipped;
3. merging — one row per ``lower(sku)``, the last in the file winning, goes into the products:
   a plain INSERT into an empty table, else INSERT … ON CONFLICT that leaves rows whose values
   did not change untouched (re-importing a file rewrites nothing it does not have to, and
   reports those rows as unchanged, not updated);
4. done — the import's summary is written in the same transaction.

Everything happens in one transaction: a failure or a cancel (which interrupts a running
statement) leaves the products exactly as they were. Readers are never blocked; writers wait
only while a first import fills an empty table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from conveyor.packs.catalog import csv_input
from conveyor.packs.catalog.tables import DESCRIPTION_MAX, NAME_MAX, SKU_MAX

Report = Callable[[str, int, int, str], None]
"""(phase, current, total, message); may raise to stop the import (a cancel)."""

MERGE_LOCK = 0x63617431  # "cat1": one import merges at a time
MAX_REPORTED = 100_000  # skipped rows stored for the error report; all are counted
COPY_CHUNK = 1024 * 1024
# Share of the progress bar each phase ends at.
SHARES = {"parsing": 0.35, "loading": 0.45, "merging": 1.0}


@dataclass(frozen=True)
class ImportSummary:
    """What an import did with the file's rows: ``rows`` = inserted + updated + unchanged +
    skipped. Unchanged rows changed nothing: their product already held the same values, or
    a later row of the file has the same SKU (the last one wins)."""

    rows: int
    inserted: int
    updated: int
    skipped: int
    seconds: float

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated - self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unchanged": self.unchanged}


class Tracker:
    """Turns phase-local progress into one bar (units: rows of the file, estimated)."""

    def __init__(self, report: Report, estimated_rows: int) -> None:
        self.report = report
        self.total = max(estimated_rows, 1)
        self.phase_start = 0.0

    def phase(self, name: str, fraction: float, message: str) -> None:
        start = self.phase_start
        end = SHARES.get(name, 1.0)
        share = start + (end - start) * max(0.0, min(fraction, 1.0))
        self.report(name, int(share * self.total), self.total, message)

    def next_phase(self, name: str) -> None:
        self.phase_start = SHARES[name]


def _column(header: csv_input.Header, index: int | None) -> str:
    return f"c{index}" if index is not None else "NULL"


def _rows_sql(header: csv_input.Header) -> str:
    """The staged rows with the catalog's fields, trimmed, and the first problem of each."""
    sku, name = _column(header, header.sku), _column(header, header.name)
    desc = _column(header, header.description)
    return f"""
        SELECT n, sku, name, description,
               CASE WHEN sku IS NULL OR sku = '' THEN 'missing SKU'
                    WHEN name IS NULL OR name = '' THEN 'missing name'
                    WHEN length(sku) > {SKU_MAX} THEN 'SKU longer than {SKU_MAX} characters'
                    WHEN length(name) > {NAME_MAX} THEN 'name longer than {NAME_MAX} characters'
                    WHEN length(description) > {DESCRIPTION_MAX}
                        THEN 'description longer than {DESCRIPTION_MAX} characters'
               END AS problem
        FROM (SELECT n, btrim({sku}) AS sku, btrim({name}) AS name,
                     coalesce({desc}, '') AS description
              FROM catalog_stage) staged"""


def run_import(
    conn: psycopg.Connection[Any],
    import_id: str,
    path: Path,
    report: Report,
    before_commit: Callable[[psycopg.Connection[Any], ImportSummary], None] | None = None,
) -> ImportSummary:
    """Import ``path`` for the import ``import_id`` (its row exists); commit; the summary.

    ``conn`` must not be in a transaction. ``report`` is called a few times a second; an
    exception from it (a cancel) interrupts the import and rolls everything back.
    ``before_commit`` runs inside the import's transaction once the summary is known (to
    record events that exist exactly when the import committed).
    """
    started = time.monotonic()
    header = csv_input.read_header(path)
    tracker = Tracker(report, csv_input.estimate_rows(path))
    tracker.phase("parsing", 0, "reading the file")
    with conn.transaction():
        # Sorting 500k SKUs for the merge in memory, not on disk.
        conn.execute("SET LOCAL work_mem = '256MB'")
        columns = ", ".join(f"c{i} text" for i in range(header.width))
        conn.execute(
            "CREATE TEMP TABLE catalog_stage (n bigint GENERATED BY DEFAULT AS IDENTITY "
            f"(START WITH 2), {columns}) ON COMMIT DROP"
        )
        python_bad = _parse(conn, path, header, tracker)

        tracker.next_phase("parsing")
        tracker.phase("loading", 0, "checking rows")
        rows_sql = _rows_sql(header)
        good, sql_bad = _check_rows(conn, import_id, rows_sql, python_bad, tracker)

        tracker.next_phase("loading")
        # One import merges at a time; two merging into the same SKUs would deadlock.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MERGE_LOCK,))
        inserted, updated = _merge(conn, rows_sql, tracker)
        skipped = len(python_bad) + sql_bad
        summary = ImportSummary(
            rows=good + skipped,
            inserted=inserted,
            updated=updated,
            skipped=skipped,
            seconds=round(time.monotonic() - started, 3),
        )
        # clock_timestamp(), not now(): now() is when this long transaction began.
        conn.execute(
            "UPDATE catalog_imports SET state = 'succeeded', rows_total = %s, inserted = %s, "
            "updated = %s, skipped = %s, seconds = %s, error = NULL, "
            "finished_at = clock_timestamp() WHERE id = %s",
            (summary.rows, summary.inserted, summary.updated, summary.skipped,
             summary.seconds, import_id),
        )  # fmt: skip
        if before_commit is not None:
            before_commit(conn, summary)
    tracker.phase(
        "done",
        1,
        f"{summary.inserted:,} inserted, {summary.updated:,} updated,"
        f" {summary.unchanged:,} unchanged, {summary.skipped:,} skipped",
    )
    return summary


def _parse(
    conn: psycopg.Connection[Any], path: Path, header: csv_input.Header, tracker: Tracker
) -> list[csv_input.BadRow]:
    """Stage the file's rows; the rows set aside as structurally broken."""
    size = max(path.stat().st_size, 1)
    names = ", ".join(f"c{i}" for i in range(header.width))
    try:
        with (
            conn.transaction(),
            open(path, "rb") as f,
            conn.cursor().copy(
                f"COPY catalog_stage ({names}) FROM STDIN (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            done = 0
            while chunk := f.read(COPY_CHUNK):
                copy.write(chunk)
                done += len(chunk)
                _parsing(tracker, done / size)
        return []
    except psycopg.DataError:
        pass  # a broken row, or bytes that are not UTF-8: find them in Python
    bad: list[csv_input.BadRow] = []
    with conn.cursor().copy(f"COPY catalog_stage (n, {names}) FROM STDIN (FORMAT csv)") as copy:
        for data, batch_bad, _records, done in csv_input.clean_batches(path, header.width):
            copy.write(data)
            bad.extend(batch_bad)
            _parsing(tracker, done / size, checking=True)
    return bad


def _parsing(tracker: Tracker, fraction: float, *, checking: bool = False) -> None:
    rows = int(fraction * tracker.total)
    how = " (row by row: the file has broken rows)" if checking else ""
    tracker.phase("parsing", fraction, f"~{rows:,} of ~{tracker.total:,} rows read{how}")


def _check_rows(
    conn: psycopg.Connection[Any],
    import_id: str,
    rows_sql: str,
    python_bad: list[csv_input.BadRow],
    tracker: Tracker,
) -> tuple[int, int]:
    """Record skipped rows; (good rows, rows skipped by the checks)."""
    conn.execute("DELETE FROM catalog_import_errors WHERE import_id = %s", (import_id,))
    if python_bad:
        with conn.cursor().copy(
            "COPY catalog_import_errors (import_id, row, reason, excerpt) FROM STDIN"
        ) as copy:
            for b in python_bad[:MAX_REPORTED]:
                copy.write_row((import_id, b.row, b.reason[:255], b.excerpt))
    counts = _watched(
        conn,
        f"SELECT count(*), count(*) FILTER (WHERE problem IS NOT NULL) FROM ({rows_sql}) r",
        (),
        lambda s: tracker.phase("loading", s / 2.0, "checking SKUs, names and lengths"),
    )
    total, sql_bad = int(counts[0]), int(counts[1])
    room = MAX_REPORTED - len(python_bad)
    if sql_bad and room > 0:
        conn.execute(
            f"""INSERT INTO catalog_import_errors (import_id, row, reason, excerpt)
                SELECT %s, n, problem, left(concat_ws(',', sku, name), {csv_input.EXCERPT})
                FROM ({rows_sql}) r WHERE problem IS NOT NULL ORDER BY n LIMIT %s""",
            (import_id, room),
        )
    return total - sql_bad, sql_bad


def _merge(conn: psycopg.Connection[Any], rows_sql: str, tracker: Tracker) -> tuple[int, int]:
    """Merge the good rows into the products; (products inserted, products updated). A row
    whose product already holds its values is not written (nor counted as updated)."""
    latest = f"""SELECT DISTINCT ON (lower(sku)) sku, name, description
                 FROM ({rows_sql}) r WHERE problem IS NULL
                 ORDER BY lower(sku), n DESC"""
    row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM catalog_products)").fetchone()
    empty = bool(row and row[0])
    expected = 6.0  # seconds a full merge of 500k rows may take; only shapes the bar

    def tick(seconds: float) -> None:
        tracker.phase("merging", seconds / (seconds + expected), "merging into the products")

    if empty:
        # No product can collide: a plain INSERT, in SKU order so the unique index only
        # appends, is several times faster than ON CONFLICT. Writers wait for it; readers do not.
        conn.execute("LOCK TABLE catalog_products IN EXCLUSIVE MODE")
        if not conn.execute("SELECT 1 FROM catalog_products LIMIT 1").fetchone():
            counted = _watched(
                conn,
                f"""WITH ins AS (INSERT INTO catalog_products (sku, name, description)
                                 {latest} RETURNING 1)
                    SELECT count(*) FROM ins""",
                (),
                tick,
            )
            return int(counted[0]), 0
    counted = _watched(
        conn,
        f"""WITH up AS (
              INSERT INTO catalog_products AS p (sku, name, description) {latest}
              ON CONFLICT (lower(sku)) DO UPDATE
                SET sku = excluded.sku, name = excluded.name,
                    description = excluded.description, updated_at = now()
                WHERE (p.sku, p.name, p.description)
                      IS DISTINCT FROM (excluded.sku, excluded.name, excluded.description)
              RETURNING xmax = 0 AS inserted)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
            FROM up""",
        (),
        tick,
    )
    return int(counted[0]), int(counted[1])


def _watched(
    conn: psycopg.Connection[Any],
    sql: str,
    params: tuple[Any, ...],
    tick: Callable[[float], None],
) -> tuple[Any, ...]:
    """Run one long statement while calling ``tick(seconds)`` a few times a second; if tick
    raises (a cancel), the statement is cancelled on the server and the error re-raised."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["row"] = conn.execute(sql, params).fetchone()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="catalog-import-sql", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            if thread.is_alive():
                tick(time.monotonic() - started)
    except BaseException:
        conn.cancel()
        thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    row = outcome["row"]
    assert row is not None
    return tuple(row)


def start(conn: psycopg.Connection[Any], import_id: str, job_id: str | None) -> str | None:
    """Mark the import running under ``job_id``; the name its upload is stored under, or None
    if it succeeded already (a redelivered job: execution is at least once, and a second run
    must not turn a finished import into a failed one for want of its deleted file)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE catalog_imports SET state = 'running', job_id = %s, error = NULL, "
            "finished_at = NULL WHERE id = %s AND state <> 'succeeded' RETURNING stored_as",
            (job_id, import_id),
        ).fetchone()
        if row is None:
            done = conn.execute(
                "SELECT 1 FROM catalog_imports WHERE id = %s", (import_id,)
            ).fetchone()
    if row is not None:
        return str(row[0])
    if done is not None:
        return None
    from conveyor.errors import ResourceNotFound

    raise ResourceNotFound(f"no catalog import with id {import_id!r}")


def summary_of(conn: psycopg.Connection[Any], import_id: str) -> ImportSummary:
    """The recorded summary of a finished import."""
    row = conn.execute(
        "SELECT rows_total, inserted, updated, skipped, seconds FROM catalog_imports WHERE id = %s",
        (import_id,),
    ).fetchone()
    assert row is not None
    rows, inserted, updated, skipped = (int(v or 0) for v in row[:4])
    return ImportSummary(rows, inserted, updated, skipped, float(row[4] or 0.0))


def end_failed(conn: psycopg.Connection[Any], import_id: str, exc: BaseException) -> None:
    """Record why an import stopped (its transaction already rolled back)."""
    from conveyor.errors import JobCancelled

    cancelled = isinstance(exc, JobCancelled)
    state = "cancelled" if cancelled else "failed"
    reason = (
        "cancelled; the products are unchanged" if cancelled else f"{type(exc).__name__}: {exc}"
    )
    with conn.transaction():
        conn.execute(
            "UPDATE catalog_imports SET state = %s, error = %s, finished_at = clock_timestamp()"
            " WHERE id = %s",
            (state, reason[:2000], import_id),
        )


def analyze(conn: psycopg.Connection[Any]) -> None:
    """Refresh the planner's statistics after a bulk change (filters pick the right plan)."""
    conn.commit()
    conn.autocommit = True
    try:
        conn.execute("ANALYZE catalog_products")
    finally:
        conn.autocommit = False
