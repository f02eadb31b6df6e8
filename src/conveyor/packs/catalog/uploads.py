"""Uploaded CSV files: streamed to disk as they arrive, never held in memory.

Uploads live under ``<CONVEYOR_DATA_DIR>/catalog/uploads`` as ``<import id>.csv``. The worker
that imports a file opens it by that name, so the API and the workers must share the
directory: they do in the embedded setup (one machine); in production mount a shared volume
there (or replace this module with an object store).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from conveyor.config import Settings
from conveyor.errors import InputRejected, PayloadTooLarge

_STORED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.csv$")


def uploads_dir(settings: Settings) -> Path:
    """Where uploads wait for their import (created on first use)."""
    path = settings.files_dir / "catalog" / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_of(settings: Settings, stored_as: str) -> Path:
    """The file of an upload; only names this module made are accepted (no path tricks)."""
    if not _STORED.match(stored_as):
        raise InputRejected(f"{stored_as!r} is not the name of a catalog upload")
    path = uploads_dir(settings) / stored_as
    if not path.exists():
        raise InputRejected(
            f"the uploaded file {stored_as} is gone (imported already, or the API and this "
            "worker do not share CONVEYOR_DATA_DIR); upload it again"
        )
    return path


def new_upload() -> tuple[str, str]:
    """A fresh (import id, stored name)."""
    import_id = str(uuid.uuid4())
    return import_id, f"{import_id}.csv"


@contextmanager
def _atomic(target: Path) -> Iterator[BinaryIO]:
    """Write under a temporary name and rename when done, so a half-written upload is never
    seen under its real name; the partial file is removed on any error."""
    partial = target.with_suffix(".part")
    try:
        with open(partial, "wb") as f:
            yield f
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _too_large(what: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} exceeds the upload limit of {max_bytes:,} bytes (CONVEYOR_UPLOAD_MAX_BYTES)"
    )


async def receive(chunks: AsyncIterator[bytes], target: Path, max_bytes: int) -> int:
    """Write the streamed body to ``target``; its size. Over ``max_bytes`` nothing is kept
    and PayloadTooLarge is raised."""
    size = 0
    with _atomic(target) as f:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large("the file", max_bytes)
            f.write(chunk)
    return size


def copy_in(source: BinaryIO, target: Path, max_bytes: int) -> int:
    """Copy an open file into the uploads (a multipart part spooled by the server, or a
    local file from the CLI); its size. Over ``max_bytes`` nothing is kept."""
    size = 0
    with _atomic(target) as dst:
        while chunk := source.read(4 * 1024 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large("the file", max_bytes)
            dst.write(chunk)
    return size


def clean_filename(name: str | None) -> str:
    """The uploaded file's name as shown in the dashboard: its last path part, printable."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:255] or "upload.csv"
