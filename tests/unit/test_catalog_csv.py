"""The catalog's CSV header check and its row-by-row reader, on small files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.errors import InputRejected
from conveyor.packs.catalog import csv_input


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "products.csv"
    path.write_bytes(data)
    return path


def test_header_in_any_order_with_extra_columns_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfExtra, Description ,SKU,Name\r\nx,d,A-1,n\r\n")
    header = csv_input.read_header(path)
    assert header.columns == ("extra", "description", "sku", "name")
    assert (header.sku, header.name, header.description) == (2, 3, 1)


def test_description_is_optional(tmp_path: Path) -> None:
    header = csv_input.read_header(write(tmp_path, b"name,sku\nn,A\n"))
    assert header.description is None and header.width == 2


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf\r\n\r\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV"),
        (b"sku,title\nA,x\n", "lacks the required column(s) name"),
        (b'{"products": []}\n', "lacks the required column(s) sku, name"),
        (b"sku,name,description\n", "no product rows"),
        (b"sku,name,sku\nA,b,c\n", "more than once"),
        (b"sk\xffu,name\nA,b\n", "not UTF-8"),
    ],
)
def test_files_refused_up_front(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(InputRejected, match=re.escape(says)):
        csv_input.read_header(write(tmp_path, data))


def test_a_header_line_over_a_megabyte_is_read_and_too_many_columns_refused(
    tmp_path: Path,
) -> None:
    long_name = "x" * (csv_input.HEAD_BYTES + 10)
    header = csv_input.read_header(write(tmp_path, f"sku,name,{long_name}\nA,b,c\n".encode()))
    assert header.columns == ("sku", "name", long_name) and header.width == 3
    wide = ",".join(["sku", "name", *(f"c{i}" for i in range(1_200))])
    with pytest.raises(InputRejected, match="1,202 columns; a product CSV may have at most 1,000"):
        csv_input.read_header(write(tmp_path, f"{wide}\nA,b\n".encode()))


def test_estimate_rows_counts_lines_after_the_header(tmp_path: Path) -> None:
    assert csv_input.estimate_rows(write(tmp_path, b"sku,name\na,b\nc,d")) == 2
    assert csv_input.estimate_rows(write(tmp_path, b"sku,name\na,b\nc,d\n")) == 2


def test_clean_batches_sets_broken_rows_aside_with_spreadsheet_row_numbers(
    tmp_path: Path,
) -> None:
    data = (
        b"sku,name,description\n"
        b'A,"quoted, with ""quotes""","two\nlines"\n'  # row 2 (spans two lines)
        b"B,too,many,columns\n"  # row 3
        b"\n"  # row 4: blank, passed over
        b"C,caf\xc3\xa9,ok\n"  # row 5
        b"D,bad \xff byte,x\n"  # row 6
        b"E,nul \x00 here,x\n"  # row 7
    )
    batches = list(csv_input.clean_batches(write(tmp_path, data), 3, batch=2))
    good = b"".join(b for b, _, _, _ in batches).decode()
    bad = [b for _, rows, _, _ in batches for b in rows]
    assert good == '2,A,"quoted, with ""quotes""","two\nlines"\n5,C,café,ok\n'
    assert [(b.row, b.reason) for b in bad] == [
        (3, "expected 3 columns, found 4"),
        (6, "invalid UTF-8"),
        (7, "contains a NUL character"),
    ]
    assert bad[0].excerpt == "B,too,many,columns"
