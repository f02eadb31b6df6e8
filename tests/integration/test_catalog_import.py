"""The catalog importer against real PostgreSQL: a dirty 500,000-row file, counts and
last-row-wins checked against an independent computation, re-import, and all-or-nothing."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.errors import JobCancelled
from conveyor.packs import psycopg_url
from conveyor.packs.catalog import importer
from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.services import truncate

Product = tuple[str, str, str, bool]  # sku, name, description, active


@pytest.fixture()
def db(settings: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(psycopg_url(settings)) as conn:
        truncate(conn, "catalog_products", "catalog_imports")
        conn.commit()
        yield conn


@pytest.fixture(scope="module")
def dirty_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("catalog") / "dirty.csv", 500_000, dirty=True)


def new_import(conn: psycopg.Connection[Any]) -> str:
    import_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO catalog_imports (id, filename, stored_as, size_bytes) "
        "VALUES (%s, 'test.csv', 'test.csv', 0)",
        (import_id,),
    )
    conn.commit()
    return import_id


def products(conn: psycopg.Connection[Any]) -> dict[str, Product]:
    rows = conn.execute("SELECT sku, name, description, active FROM catalog_products").fetchall()
    return {sku.lower(): (sku, name, desc, active) for sku, name, desc, active in rows}


def expected_rows(path: Path) -> tuple[dict[str, tuple[str, str, str]], int, int]:
    """What the file should do, computed without the importer: (last valid row per lower(sku),
    valid rows, skipped rows)."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader)]
    at = {name: header.index(name) for name in ("sku", "name", "description")}
    latest: dict[str, tuple[str, str, str]] = {}
    valid = skipped = 0
    for row in reader:
        if not row:
            continue
        joined = "".join(row)
        if (
            len(row) != len(header)
            or "\x00" in joined
            or any(0xDC80 <= ord(c) <= 0xDCFF for c in joined)
        ):
            skipped += 1
            continue
        sku, name = row[at["sku"]].strip(" "), row[at["name"]].strip(" ")
        desc = row[at["description"]]
        if not sku or not name or len(sku) > 64 or len(name) > 255 or len(desc) > 10_000:
            skipped += 1
            continue
        valid += 1
        latest[sku.lower()] = (sku, name, desc)
    return latest, valid, skipped


def no_report(phase: str, current: int, total: int, message: str) -> None:
    pass


def test_dirty_500k_file_exact_counts_and_last_row_wins(
    db: psycopg.Connection[Any], dirty_file: Path
) -> None:
    latest, valid, skipped = expected_rows(dirty_file)
    # Some products exist already: SKUs from the file in another case (half inactive, which
    # an import must keep) and SKUs the file does not mention (left alone).
    rng = random.Random(7)
    before: dict[str, Product] = {}
    for i, key in enumerate(rng.sample(sorted(latest), 2_000)):
        before[key] = (latest[key][0].swapcase(), f"old {i}", "old", i % 2 == 0)
    for i in range(500):
        before[f"other-{i}"] = (f"OTHER-{i}", f"other {i}", "", True)
    with db.cursor().copy(
        "COPY catalog_products (sku, name, description, active) FROM STDIN"
    ) as copy:
        for row in before.values():
            copy.write_row(row)
    db.commit()

    import_id = new_import(db)
    summary = importer.run_import(db, import_id, dirty_file, no_report)

    new = sum(1 for key in latest if key not in before)
    assert summary.skipped == skipped > 400
    assert summary.inserted == new
    assert summary.updated == 2_000  # the products there before, each with other values
    assert summary.unchanged == valid - new - 2_000 > 0  # SKUs a later row of the file repeats
    assert summary.rows == valid + skipped
    want = dict(before)
    for key, (sku, name, desc) in latest.items():
        want[key] = (sku, name, desc, before[key][3] if key in before else True)
    assert products(db) == want

    (reported,) = db.execute(
        "SELECT count(*) FROM catalog_import_errors WHERE import_id = %s", (import_id,)
    ).fetchone() or (0,)
    assert reported == skipped
    reasons = {
        r for (r,) in db.execute("SELECT DISTINCT reason FROM catalog_import_errors").fetchall()
    }
    assert reasons >= {"missing SKU", "invalid UTF-8", "name longer than 255 characters"}
    assert any(r.startswith("expected 3 columns") for r in reasons)
    state = db.execute("SELECT state, inserted FROM catalog_imports WHERE id = %s", (import_id,))
    assert state.fetchone() == ("succeeded", new)

    # The same file again: nothing new, nothing changed (not ~500k "updated"), nothing touched.
    again_id = new_import(db)
    again = importer.run_import(db, again_id, dirty_file, no_report)
    assert (again.inserted, again.updated, again.unchanged, again.skipped) == (
        0, 0, valid, skipped,
    )  # fmt: skip
    assert importer.summary_of(db, again_id).unchanged == valid
    assert products(db) == want


def test_quoted_fields_crlf_and_bom_through_the_fast_path(
    db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(
        b"\xef\xbb\xbfdescription,Name,extra,SKU\r\n"
        b'"multi\r\nline, ""quoted""",  Lamp  ,x, ab-1 \r\n'
        b"plain,Chair,y,AB-1\r\n"
        b"second,Desk,z,cd-2\r\n"
    )
    summary = importer.run_import(db, new_import(db), path, no_report)
    # ab-1 twice: the later row wins, the earlier one changed nothing.
    assert (summary.rows, summary.inserted, summary.updated, summary.unchanged) == (3, 2, 0, 1)
    assert summary.skipped == 0
    assert products(db) == {
        "ab-1": ("AB-1", "Chair", "plain", True),
        "cd-2": ("cd-2", "Desk", "second", True),
    }


@pytest.mark.parametrize("stop_in", ["parsing", "loading", "merging"])
def test_a_cancelled_import_leaves_the_products_unchanged(
    db: psycopg.Connection[Any], dirty_file: Path, tmp_path: Path, stop_in: str
) -> None:
    clean = write_sample(tmp_path / "clean.csv", 50_000, seed=3)
    importer.run_import(db, new_import(db), clean, no_report)
    db.execute("UPDATE catalog_products SET active = false WHERE id % 3 = 0")
    db.commit()
    snapshot = products(db)
    import_id = new_import(db)

    def cancel(phase: str, current: int, total: int, message: str) -> None:
        if phase == stop_in:
            raise JobCancelled("cancelled by the test")

    with pytest.raises(JobCancelled):
        importer.run_import(db, import_id, dirty_file, cancel)
    db.rollback()
    importer.end_failed(db, import_id, JobCancelled("x"))
    assert products(db) == snapshot
    row = db.execute("SELECT state, error FROM catalog_imports WHERE id = %s", (import_id,))
    assert row.fetchone() == ("cancelled", "cancelled; the products are unchanged")
    assert db.execute(
        "SELECT count(*) FROM catalog_import_errors WHERE import_id = %s", (import_id,)
    ).fetchone() == (0,)


def test_a_redelivered_import_job_keeps_the_finished_import(
    db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """At-least-once execution: the same job may run again after it finished (its worker died
    before acknowledging). The second run must report the import, not fail it."""
    import_id = new_import(db)
    path = write_sample(tmp_path / "once.csv", 1_000)
    assert importer.start(db, import_id, None) == "test.csv"
    first = importer.run_import(db, import_id, path, no_report)
    assert importer.start(db, import_id, None) is None
    assert importer.summary_of(db, import_id).inserted == first.inserted == 1_000
    state = db.execute("SELECT state FROM catalog_imports WHERE id = %s", (import_id,))
    assert state.fetchone() == ("succeeded",)


def test_finished_at_and_the_completed_event_are_stamped_when_the_import_ends(
    db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The import runs in one long transaction, whose now() is its start: the finish time and
    the import.completed event's time must be the clock's when it ended."""
    from datetime import UTC, datetime

    from conveyor.packs.catalog import events

    db.execute("TRUNCATE catalog_webhooks CASCADE")
    db.execute(
        "INSERT INTO catalog_webhooks (url, events, secret)"
        " VALUES ('https://example.com/h', ARRAY['import.completed'], 'whsec_x')"
    )
    db.commit()
    slept: list[datetime] = []

    def slow(phase: str, current: int, total: int, message: str) -> None:
        if phase == "loading" and not slept:  # inside the import's transaction
            import time

            time.sleep(1.5)
            slept.append(datetime.now(UTC))

    import_id = new_import(db)
    sent: list[int] = []
    importer.run_import(
        db,
        import_id,
        write_sample(tmp_path / "slow.csv", 1_000),
        slow,
        lambda conn, summary: sent.extend(events.record_raw(conn, "import.completed", {})),
    )
    finished = db.execute(
        "SELECT finished_at FROM catalog_imports WHERE id = %s", (import_id,)
    ).fetchone()
    assert finished is not None and finished[0] >= slept[0]
    created = db.execute(
        "SELECT created_at FROM catalog_webhook_deliveries WHERE id = %s", (sent[0],)
    ).fetchone()
    assert created is not None and created[0] >= slept[0]
    stamp = events.payload(sent[0], "import.completed", {}, created[0])["created_at"]
    assert stamp == created[0].astimezone(UTC).isoformat() and "T" in stamp


def test_a_header_line_over_a_megabyte_is_read(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    long_name = "notes_" + "x" * (1024 * 1024 + 100)
    path.write_text(f"sku,name,{long_name}\nA-1,Anvil,n\nA-2,Bolt,m\n")
    summary = importer.run_import(db, new_import(db), path, no_report)
    assert (summary.inserted, summary.skipped) == (2, 0)
