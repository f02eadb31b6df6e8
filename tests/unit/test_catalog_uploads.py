"""Uploads stream to disk under a cap, appear only when complete, and are opened only by the
names the API made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.errors import InputRejected, PayloadTooLarge
from conveyor.packs.catalog import uploads


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def test_receive_writes_the_stream_and_refuses_past_the_cap(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    assert asyncio.run(uploads.receive(chunks(4, 1000), target, 4000)) == 4000
    assert target.stat().st_size == 4000
    big = tmp_path / "b.csv"
    with pytest.raises(PayloadTooLarge, match="CONVEYOR_UPLOAD_MAX_BYTES"):
        asyncio.run(uploads.receive(chunks(5, 1000), big, 4000))
    assert not big.exists() and not big.with_suffix(".part").exists()


def test_only_names_the_api_made_are_opened(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    import_id, stored = uploads.new_upload()
    for name in ("../../etc/passwd", "x.csv", f"{import_id}.csv/../x"):
        with pytest.raises(InputRejected, match="not the name of a catalog upload"):
            uploads.path_of(settings, name)
    with pytest.raises(InputRejected, match="is gone"):
        uploads.path_of(settings, stored)
    (uploads.uploads_dir(settings) / stored).write_bytes(b"sku,name\n")
    assert uploads.path_of(settings, stored).parent == tmp_path / "data" / "catalog" / "uploads"


def test_clean_filename() -> None:
    assert uploads.clean_filename("C:\\Users\\me\\prod\x00ucts.csv") == "products.csv"
    assert uploads.clean_filename("../../x/y.csv") == "y.csv"
    assert uploads.clean_filename(None) == "upload.csv"
