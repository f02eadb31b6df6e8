"""Reading product CSV files: the header check done before an import is accepted, and the
row-by-row reader used when PostgreSQL's COPY refuses a file.

The fast path never parses rows in Python: PostgreSQL's COPY does, at several hundred MB/s.
COPY stops at the first structural problem (a row with the wrong number of columns, bytes that
are not UTF-8, a NUL), and a large file from the field usually has a few. Then
:func:`clean_batches` reads the file with the C ``csv`` module, sets those rows aside with a
reason, and hands PostgreSQL the rest as well-formed CSV, numbered as in the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import InputRejected

REQUIRED = ("sku", "name")
OPTIONAL = ("description",)
HEAD_BYTES = 1024 * 1024
MAX_COLUMNS = 1000  # PostgreSQL holds at most 1,600 columns in the staging table
FIELD_LIMIT = 16 * 1024 * 1024  # longer fields are read whole, then refused as over-long
EXCERPT = 200

csv.field_size_limit(FIELD_LIMIT)


@dataclass(frozen=True)
class Header:
    """The columns of a file and where the ones the catalog reads are."""

    columns: tuple[str, ...]
    sku: int
    name: int
    description: int | None

    @property
    def width(self) -> int:
        return len(self.columns)


@dataclass(frozen=True)
class BadRow:
    """A row an import skips: its number as a spreadsheet counts (the header is row 1)."""

    row: int
    reason: str
    excerpt: str


def read_header(path: Path) -> Header:
    """Check that ``path`` looks like a product CSV and find its columns.

    Raises InputRejected saying what is wrong for a file that is empty, binary, not UTF-8 in
    its header, missing a required column, with too many columns, or without a single row
    after the header. The header and the first rows are read whatever their length (the first
    megabyte is only where the binary check looks).
    """
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise InputRejected("the file is empty; expected a CSV with the header sku,name,…")
    if b"\x00" in head:
        raise InputRejected(
            "this is not a CSV file (it holds binary data); export the products as CSV (UTF-8)"
        )
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        return _header_of(csv.reader(f))


def _header_of(reader: Iterator[list[str]]) -> Header:
    try:
        names = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise InputRejected(f"the CSV header cannot be read: {exc}") from None
    if len(names) > MAX_COLUMNS:
        raise InputRejected(
            f"the header has {len(names):,} columns; a product CSV may have at most"
            f" {MAX_COLUMNS:,} (sku, name and description are the ones read)"
        )
    if any("\udc80" <= ch <= "\udcff" for name in names for ch in name):
        raise InputRejected(
            "the header is not UTF-8 text; save the file as CSV UTF-8 and upload it again"
        )
    columns = tuple(n.strip().lower() for n in names)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        found = ", ".join(repr(n) for n in names[:10]) or "nothing"
        raise InputRejected(
            f"the header lacks the required column(s) {', '.join(missing)}; a product CSV "
            f"starts with a header naming sku and name (description is optional), in any "
            f"order; found: {found}"
        )
    for c in (*REQUIRED, *OPTIONAL):
        if columns.count(c) > 1:
            raise InputRejected(f"the header names the column {c!r} more than once")
    if not any(any(v.strip() for v in row) for row in _first_rows(reader)):
        raise InputRejected("the file has a header but no product rows")
    return Header(
        columns=columns,
        sku=columns.index("sku"),
        name=columns.index("name"),
        description=columns.index("description") if "description" in columns else None,
    )


def _first_rows(reader: Iterator[list[str]], limit: int = 5) -> Iterator[list[str]]:
    for _ in range(limit):
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield ["?"]  # something is there, even if broken; the import will report it


def estimate_rows(path: Path) -> int:
    """Lines after the header: the row count unless fields hold newlines (then an upper bound)."""
    lines = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        lines += 1
    return max(lines - 1, 0)


def _excerpt(row: list[str]) -> str:
    text = ",".join(row)[:EXCERPT]
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\\0")


def _row_problem(row: list[str], width: int) -> str | None:
    if len(row) != width:
        return f"expected {width} columns, found {len(row)}"
    for value in row:
        if "\x00" in value:
            return "contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid UTF-8"
    return None


def clean_batches(
    path: Path, width: int, *, batch: int = 20_000
) -> Iterator[tuple[bytes, list[BadRow], int, int]]:
    """Read ``path`` record by record; yield (CSV bytes of good rows, each prefixed with its
    row number; the bad rows of the batch; records read so far; bytes read so far).

    Blank lines are passed over silently. Checks run per batch at C speed (encode the batch,
    look for NUL) and per row only for a batch that fails them.
    """
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        next(reader)  # the header, checked by read_header
        records = 0
        done = False
        while not done:
            rows: list[list[str]] = []
            bad: list[BadRow] = []
            while len(rows) < batch:
                try:
                    row = next(reader)
                except StopIteration:
                    done = True
                    break
                except csv.Error as exc:
                    records += 1
                    bad.append(BadRow(records + 1, f"unreadable CSV: {exc}", ""))
                    continue
                records += 1
                if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                    continue
                if len(row) != width:
                    bad.append(BadRow(records + 1, _row_problem(row, width) or "", _excerpt(row)))
                    continue
                row.insert(0, str(records + 1))
                rows.append(row)
            yield _encode(rows, bad, width), bad, records, raw.tell()


def _encode(rows: list[list[str]], bad: list[BadRow], width: int) -> bytes:
    """The good rows as CSV bytes; rows PostgreSQL would refuse (bytes that were not UTF-8, a
    NUL) join ``bad``. Nearly every row is plain ASCII without NUL, which two C-speed checks on
    the joined row confirm; only the others are looked at value by value."""
    good: list[list[str]] = []
    for row in rows:
        joined = "".join(row)
        if joined.isascii() and "\x00" not in joined:
            good.append(row)
            continue
        problem = _row_problem(row[1:], width)
        if problem is None:
            good.append(row)
        else:
            bad.append(BadRow(int(row[0]), problem, _excerpt(row[1:])))
    bad.sort(key=lambda b: b.row)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(good)
    return out.getvalue().encode("utf-8")
