"""Batch rows: creating one, reading one, and the status changes the steps make.

A batch moves ``pending → processing → anchoring → completed``, or to ``failed`` from
``pending``/``processing`` with the step that failed (``failed_step``). A failed anchoring
attempt does not fail the batch: it stays ``anchoring`` with the error, to be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Connection, Engine, func, insert, select, update

from conveyor.packs.factory.config import DEFAULT_VERIFY_BASE_URL, FactorySettings
from conveyor.packs.factory.errors import BatchNotFound, FactoryError
from conveyor.packs.factory.tables import batches

STATUSES = ("pending", "processing", "anchoring", "completed", "failed")
MAX_PRODUCTS = 50_000_000


@dataclass(frozen=True)
class BatchSpec:
    """What a client asks for: ``product_count`` products named ``product_name``."""

    product_count: int
    product_name: str
    category: str
    factory_id: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Batch:
    """A batch row, as the steps and the verifier read it."""

    id: UUID
    status: str
    product_count: int
    product_name: str
    category: str
    factory_id: str | None
    metadata: dict[str, Any]
    token_kid: str
    verify_base_url: str
    chunk_size: int
    products_written: int
    merkle_root: bytes | None
    anchor_backend: str | None
    anchor_ref: str | None
    anchor_chain_id: int | None
    anchor_block_number: int | None
    anchor_block_time: datetime | None
    anchor_details: dict[str, Any] | None
    failed_step: str | None
    error: str | None
    job_id: str | None
    created_at: datetime
    updated_at: datetime
    processing_started_at: datetime | None
    products_written_at: datetime | None
    root_computed_at: datetime | None
    anchored_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None


def create_batch(
    engine: Engine, spec: BatchSpec, settings: FactorySettings, *, batch_id: UUID | None = None
) -> UUID:
    """Insert a ``pending`` batch and return its id. The signing key id, verification base
    URL and chunk size are fixed now, so a resumed batch continues exactly as it began."""
    if not 1 <= spec.product_count <= MAX_PRODUCTS:
        raise FactoryError(f"product_count must be 1..{MAX_PRODUCTS:,}, not {spec.product_count}")
    if settings.chunk_size & (settings.chunk_size - 1):
        raise FactoryError(
            f"CONVEYOR_FACTORY_CHUNK_SIZE must be a power of two, not {settings.chunk_size}"
        )
    batch_id = batch_id or uuid4()
    with engine.begin() as conn:
        conn.execute(
            insert(batches).values(
                id=batch_id,
                product_count=spec.product_count,
                product_name=spec.product_name,
                category=spec.category,
                factory_id=spec.factory_id,
                metadata=spec.metadata or {},
                token_kid=settings.token_kid,
                verify_base_url=settings.verify_base_url or DEFAULT_VERIFY_BASE_URL,
                chunk_size=settings.chunk_size,
            )
        )
    return batch_id


def get_batch(bind: Engine | Connection, batch_id: UUID) -> Batch:
    """The batch ``batch_id``; :class:`BatchNotFound` if there is none."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return get_batch(conn, batch_id)
    row = bind.execute(select(*COLUMNS).where(batches.c.id == batch_id)).mappings().first()
    if row is None:
        raise BatchNotFound(batch_id)
    return Batch(**row)


COLUMNS = [batches.c[name] for name in Batch.__dataclass_fields__]


def set_status(conn: Connection, batch_id: UUID, status: str, **values: Any) -> None:
    """Move the batch to ``status`` and write ``values`` (timestamps, results) with it."""
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(status=status, updated_at=func.now(), **values)
    )


def attach_job(engine: Engine, batch_id: UUID, job_id: str) -> None:
    """Record ``job_id`` as the job running the batch now (a retry replaces the last one)."""
    with engine.begin() as conn:
        conn.execute(
            update(batches)
            .where(batches.c.id == batch_id)
            .values(job_id=job_id, updated_at=func.now())
        )


def fail_batch(engine: Engine, batch_id: UUID, step: str, error: str) -> None:
    """Record that ``step`` failed: the batch becomes ``failed`` (a retry resumes at ``step``),
    except while anchoring, which keeps the batch ``anchoring`` with the error."""
    with engine.begin() as conn:
        status = conn.execute(
            select(batches.c.status).where(batches.c.id == batch_id).with_for_update()
        ).scalar_one_or_none()
        if status is None:
            raise BatchNotFound(batch_id)
        if status in ("completed",):
            return
        if status == "anchoring":
            set_status(conn, batch_id, "anchoring", error=error[:2000], failed_step=step)
        else:
            set_status(
                conn, batch_id, "failed", error=error[:2000], failed_step=step, failed_at=func.now()
            )
