"""Reading batches for the API, the dashboard and the CLI: lists with keyset pagination,
one batch as clients see it, statistics, a page of products, and the CSV of a whole batch
streamed straight from PostgreSQL's ``COPY … TO STDOUT``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import Connection, Engine, and_, func, or_, select

from conveyor.errors import InputRejected
from conveyor.packs.factory.batches import COLUMNS, STATUSES, Batch, get_batch
from conveyor.packs.factory.tables import batches, products
from conveyor.packs.factory.verify import jsonable

STEPS = ("products", "root", "anchor")


@dataclass(frozen=True)
class BatchFilter:
    """What a list of batches is narrowed to."""

    status: str | None = None
    factory_id: str | None = None
    category: str | None = None


def batch_public(batch: Batch, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """A batch as the API shows it: hashes in hex, a timeline of its steps, its job's progress
    while one runs."""
    out: dict[str, Any] = jsonable(asdict(batch))
    out["merkle_root"] = batch.merkle_root.hex() if batch.merkle_root else None
    out["anchor"] = (
        None
        if batch.anchor_backend is None
        else {
            "backend": batch.anchor_backend,
            "ref": batch.anchor_ref,
            "chain_id": batch.anchor_chain_id,
            "block_number": batch.anchor_block_number,
            "block_time": out["anchor_block_time"],
            "details": batch.anchor_details,
        }
    )
    for key in list(out):
        if key.startswith("anchor_"):
            del out[key]
    out["timeline"] = timeline(batch)
    out["progress"] = job.get("progress") if job else None
    out["job_state"] = job.get("state") if job else None
    return out


def timeline(batch: Batch) -> list[dict[str, Any]]:
    """Each step with when it ended, or ``failed``/``running``/``waiting``."""
    ended = {
        "products": batch.products_written_at,
        "root": batch.root_computed_at,
        "anchor": batch.anchored_at,
    }
    out = []
    running_seen = False
    for step in STEPS:
        at = ended[step]
        if at is not None:
            state = "done"
        elif batch.failed_step == step:
            state = "failed"
        elif batch.status in ("processing", "anchoring") and not running_seen:
            state = "running"
            running_seen = True
        else:
            state = "waiting"
        out.append({"step": step, "state": state, "at": at.isoformat() if at else None})
    return out


def encode_cursor(created_at: datetime, batch_id: UUID) -> str:
    """An opaque position in the newest-first list."""
    raw = f"{created_at.isoformat()}|{batch_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position :func:`encode_cursor` wrote; :class:`InputRejected` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, batch_id = raw.partition("|")
        return datetime.fromisoformat(at), UUID(batch_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InputRejected(f"cursor {cursor[:80]!r} is not one this API gave out") from None


def list_batches(
    conn: Connection, flt: BatchFilter, limit: int, cursor: str | None = None
) -> tuple[list[Batch], str | None]:
    """Batches newest first, after ``cursor``; and the cursor of the next page, if any."""
    query = select(*COLUMNS)
    if flt.status:
        query = query.where(batches.c.status == flt.status)
    if flt.factory_id:
        query = query.where(batches.c.factory_id == flt.factory_id)
    if flt.category:
        query = query.where(batches.c.category == flt.category)
    if cursor:
        at, last = decode_cursor(cursor)
        query = query.where(
            or_(
                batches.c.created_at < at,
                and_(batches.c.created_at == at, batches.c.id < last),
            )
        )
    query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit + 1)
    rows = [Batch(**r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None


def stats(conn: Connection) -> dict[str, Any]:
    """Batches and products per status, and the oldest unfinished batch."""
    rows = conn.execute(
        select(
            batches.c.status,
            func.count(),
            func.coalesce(func.sum(batches.c.product_count), 0),
            func.coalesce(func.sum(batches.c.products_written), 0),
        ).group_by(batches.c.status)
    ).all()
    by_status = {
        s: {"batches": 0, "products_requested": 0, "products_written": 0} for s in STATUSES
    }
    for status, count, requested, written in rows:
        by_status[status] = {
            "batches": int(count),
            "products_requested": int(requested),
            "products_written": int(written),
        }
    oldest = conn.execute(
        select(func.min(batches.c.created_at)).where(
            batches.c.status.in_(("pending", "processing", "anchoring"))
        )
    ).scalar_one()
    return {
        "by_status": by_status,
        "batches": sum(v["batches"] for v in by_status.values()),
        "products": sum(v["products_written"] for v in by_status.values()),
        "oldest_unfinished_at": oldest.isoformat() if oldest else None,
    }


def product_page(
    conn: Connection, batch_id: UUID, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Products of a batch with serial above ``after``; the next ``after``, if any."""
    get_batch(conn, batch_id)  # 404 for an unknown batch, not an empty page
    rows = conn.execute(
        select(products.c.serial, products.c.token, products.c.verification_url)
        .where(products.c.batch_id == batch_id, products.c.serial > after)
        .order_by(products.c.serial)
        .limit(limit)
    ).mappings()
    items = [dict(r) for r in rows]
    return items, items[-1]["serial"] if len(items) == limit else None


CSV_COPY = (
    "COPY (SELECT serial, token, verification_url, name, category FROM factory_products"
    " WHERE batch_id = %s ORDER BY serial) TO STDOUT WITH (FORMAT csv, HEADER)"
)


def products_csv(engine: Engine, batch_id: UUID) -> Iterator[bytes]:
    """The batch's products as CSV (serial, token, verification_url, name, category), in
    blocks as PostgreSQL sends them: memory stays flat whatever the batch's size."""
    with engine.connect() as sa_conn:
        pg = sa_conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        with pg.cursor().copy(CSV_COPY, (batch_id,)) as copy:
            buffer = bytearray()
            for block in copy:
                buffer += block
                # Blocks are a row or so each: hand the server's output on in ~64 KB pieces.
                if len(buffer) >= 65536:
                    yield bytes(buffer)
                    buffer.clear()
            if buffer:
                yield bytes(buffer)
