"""A batch's pipeline as resumable plain functions: write products, compute the root, anchor.

:func:`run_batch` runs whichever steps a batch still needs, so a retry after a crash or a
failure resumes where the batch stopped:

1. :func:`write_products` — tokens, verification URLs and rows, COPYed in chunks of
   ``chunk_size`` products (a power of two). Each chunk is one transaction that also writes
   its ``factory_chunks`` row; a chunk whose row exists is skipped, and the unique
   ``(batch_id, serial)`` and ``token`` indexes refuse a duplicate even from two writers at
   once. Chunks are generated and COPYed by a pool of writers (two per core by default;
   processes, or threads inside a Celery prefork child): one signs and formats while
   PostgreSQL's backend for another chunk inserts.
2. :func:`compute_root` — the batch's RFC 9162 Merkle root over the products' tokens in
   serial order. Each chunk stored the roots of its blocks of :data:`BLOCK_LEAVES` leaves
   (computed from the very bytes it COPYed), so the root is folded from those; the batch is
   then ``anchoring``. :func:`recompute_root` re-reads every token as an audit.
3. :func:`anchor_batch` — commit the root with an :class:`~anchors.Anchor`; the batch is then
   ``completed``. An :class:`AnchorError` leaves it ``anchoring`` with the error, for a retry.

Each step reports through a ``progress(current, total, step=…)`` callback; the Celery task
passes :func:`conveyor.progress`, which may raise ``JobCancelled`` to stop the step.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import psycopg
from sqlalchemy import Connection, Engine, func, select, update

from conveyor.packs.factory import merkle
from conveyor.packs.factory.anchors import Anchor, AnchorReceipt
from conveyor.packs.factory.batches import Batch, fail_batch, get_batch, set_status
from conveyor.packs.factory.errors import AnchorError, BatchStateError, FactoryError
from conveyor.packs.factory.tables import batches, chunks, products
from conveyor.packs.factory.tokens import Keyring, sign_range, verification_url_prefix

BLOCK_LEAVES = 256
"""Leaves under each stored tree node: an inclusion proof reads at most this many tokens."""


class Progress(Protocol):
    def __call__(
        self, current: float, total: float | None = None, *, step: str | None = None
    ) -> None: ...


def no_progress(current: float, total: float | None = None, *, step: str | None = None) -> None:
    """The default progress callback: ignores every report."""


# --- step 1: products ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkJob:
    """Everything one chunk needs, picklable for a pool process."""

    batch_id: UUID
    chunk_no: int
    first_serial: int
    count: int
    kid: str
    key: bytes
    url_prefix: str
    name: str
    category: str


def _copy_text(value: str) -> str:
    """``value`` escaped for PostgreSQL's COPY text format."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def chunk_rows(job: ChunkJob) -> tuple[bytes, list[bytes]]:
    """The COPY text of a chunk's products, and the roots of its blocks of leaves."""
    ring = Keyring(keys={job.kid: job.key}, current=job.kid)
    tokens = sign_range(ring, job.batch_id, job.first_serial, job.count)
    head = f"{job.batch_id}\t"
    prefix = _copy_text(job.url_prefix)
    tail = f"\t{_copy_text(job.name)}\t{_copy_text(job.category)}\t"
    serial = job.first_serial
    lines = [
        f"{head}{s}\t{t}\t{prefix}{t}{tail}{s - 1}\n"
        for s, t in zip(range(serial, serial + job.count), tokens, strict=True)
    ]
    leaves = merkle.leaf_hashes([t.encode() for t in tokens])
    return "".join(lines).encode(), merkle.block_roots(leaves, BLOCK_LEAVES)


COPY_PRODUCTS = (
    "COPY factory_products (batch_id, serial, token, verification_url, name, category,"
    " leaf_index) FROM STDIN"
)


def write_chunk(conn: psycopg.Connection[tuple[object, ...]], job: ChunkJob) -> int:
    """Write one chunk in one transaction; 0 if it was already written, else its size."""
    data, blocks = chunk_rows(job)
    with conn.transaction():
        # Two writers of the same chunk (a retry racing a slow first run) queue here; the
        # second sees the marker and stops.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
            (str(job.batch_id), job.chunk_no),
        )
        done = conn.execute(
            "SELECT 1 FROM factory_chunks WHERE batch_id = %s AND chunk_no = %s",
            (job.batch_id, job.chunk_no),
        ).fetchone()
        if done:
            return 0
        with conn.cursor().copy(COPY_PRODUCTS) as copy:
            copy.write(data)
        conn.execute(
            "INSERT INTO factory_chunks (batch_id, chunk_no, leaf_count, block_roots)"
            " VALUES (%s, %s, %s, %s)",
            (job.batch_id, job.chunk_no, job.count, b"".join(blocks)),
        )
        conn.execute(
            "UPDATE factory_batches SET products_written = products_written + %s,"
            " updated_at = now() WHERE id = %s",
            (job.count, job.batch_id),
        )
    return job.count


# The writer's connection: one per pool process, or per thread in a writer thread pool.
_writer = threading.local()


def _open_worker(conninfo: str) -> None:
    _writer.conn = psycopg.connect(conninfo, application_name="conveyor-factory")


def _write_in_worker(job: ChunkJob) -> int:
    conn: psycopg.Connection[tuple[object, ...]] | None = getattr(_writer, "conn", None)
    assert conn is not None, "pool initializer did not run"
    return write_chunk(conn, job)


def conninfo(engine: Engine) -> str:
    """A libpq connection string for ``engine``'s database (for the writers)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def pool_size(workers: int | None, jobs: int) -> int:
    """Writers for ``jobs`` chunks: ``workers``, or two per core (each waits on PostgreSQL
    about half the time), never more than there are chunks."""
    wanted = workers if workers is not None else 2 * len(os.sched_getaffinity(0))
    return max(1, min(wanted, jobs))


def writers_are_threads() -> bool:
    """Whether writers must be threads: a daemonic process (a Celery prefork child) may not
    start processes of its own. Threads still overlap the work, since a thread waiting on its
    COPY (PostgreSQL's backend doing the inserts) releases the GIL to one that signs."""
    return bool(multiprocessing.current_process().daemon)


def start_method() -> str:
    """``fork`` while this process has one thread (the children start at once, with this
    module already imported); ``forkserver`` otherwise, since a fork taken while another
    thread holds a lock (logging, a connection pool) can leave the child stuck on it."""
    return "fork" if threading.active_count() == 1 else "forkserver"


@contextmanager
def _pool(size: int, info: str) -> Iterator[Executor]:
    pool: Executor
    opened: list[psycopg.Connection[tuple[object, ...]]] = []  # the threads' connections
    lock = threading.Lock()

    def open_in_thread() -> None:
        _open_worker(info)
        with lock:
            opened.append(_writer.conn)

    if writers_are_threads():
        pool = ThreadPoolExecutor(size, initializer=open_in_thread)
    else:
        pool = ProcessPoolExecutor(
            size,
            mp_context=multiprocessing.get_context(start_method()),
            initializer=_open_worker,
            initargs=(info,),
        )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        for conn in opened:
            conn.close()


def pending_chunks(engine: Engine, batch: Batch, keyring: Keyring) -> list[ChunkJob]:
    """The chunks of ``batch`` not written yet."""
    with engine.connect() as conn:
        done = set(
            conn.execute(select(chunks.c.chunk_no).where(chunks.c.batch_id == batch.id)).scalars()
        )
    key = keyring.keys.get(batch.token_kid)
    if key is None:
        raise FactoryError(
            f"batch {batch.id} signs with key id {batch.token_kid!r}, which is no longer in"
            " CONVEYOR_FACTORY_TOKEN_KEYS; put it back to finish the batch"
        )
    size = batch.chunk_size
    return [
        ChunkJob(
            batch_id=batch.id,
            chunk_no=n,
            first_serial=n * size + 1,
            count=min(size, batch.product_count - n * size),
            kid=batch.token_kid,
            key=key,
            url_prefix=verification_url_prefix(batch.verify_base_url),
            name=batch.product_name,
            category=batch.category,
        )
        for n in range(-(-batch.product_count // size))
        if n not in done
    ]


def write_products(
    engine: Engine,
    batch_id: UUID,
    keyring: Keyring,
    *,
    workers: int | None = None,
    progress: Progress = no_progress,
) -> int:
    """Step 1: write every product the batch does not have yet; returns how many were
    written now. Moves a ``pending`` (or ``failed``) batch to ``processing``."""
    with engine.begin() as conn:
        batch = get_batch(conn, batch_id)
        if batch.status not in ("pending", "processing", "failed") or batch.merkle_root:
            raise BatchStateError(f"batch {batch_id} is {batch.status}: its products are written")
        set_status(
            conn,
            batch_id,
            "processing",
            processing_started_at=func.coalesce(batches.c.processing_started_at, func.now()),
            error=None,
            failed_step=None,
        )
    jobs = pending_chunks(engine, batch, keyring)
    total = batch.product_count
    done = total - sum(j.count for j in jobs)
    progress(done, total, step="products")
    written = 0
    size = pool_size(workers, len(jobs))
    if size == 1:
        with engine.connect() as sa_conn:
            pg = sa_conn.connection.driver_connection
            assert isinstance(pg, psycopg.Connection)
            for job in jobs:
                written += write_chunk(pg, job)
                done += job.count
                progress(done, total, step="products")
    else:
        with _pool(size, conninfo(engine)) as pool:
            futures = [pool.submit(_write_in_worker, job) for job in jobs]
            for future in as_completed(futures):
                count = future.result()
                written += count
                done += count
                progress(done, total, step="products")
    with engine.begin() as conn:
        set_status(conn, batch_id, "processing", products_written_at=func.now())
    return written


# --- step 2: the Merkle root -----------------------------------------------------------------


def stored_block_roots(bind: Engine | Connection, batch: Batch) -> list[bytes]:
    """The batch's tree nodes over blocks of :data:`BLOCK_LEAVES` leaves, from its chunks;
    :class:`BatchStateError` if a chunk is missing."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return stored_block_roots(conn, batch)
    rows = bind.execute(
        select(chunks.c.chunk_no, chunks.c.leaf_count, chunks.c.block_roots)
        .where(chunks.c.batch_id == batch.id)
        .order_by(chunks.c.chunk_no)
    ).all()
    expected = -(-batch.product_count // batch.chunk_size)
    if [r.chunk_no for r in rows] != list(range(expected)) or sum(
        r.leaf_count for r in rows
    ) != batch.product_count:
        raise BatchStateError(f"batch {batch.id} is missing products: write them first")
    blob = b"".join(r.block_roots for r in rows)
    return [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]


def compute_root(engine: Engine, batch_id: UUID, *, progress: Progress = no_progress) -> bytes:
    """Step 2: the batch's Merkle root, stored; the batch moves to ``anchoring``."""
    batch = get_batch(engine, batch_id)
    if batch.merkle_root is not None:
        return batch.merkle_root
    if batch.status != "processing":
        raise BatchStateError(f"batch {batch_id} is {batch.status}, not processing")
    progress(0, 1, step="root")
    root = merkle.root_of_nodes(stored_block_roots(engine, batch))
    with engine.begin() as conn:
        set_status(conn, batch_id, "anchoring", merkle_root=root, root_computed_at=func.now())
    progress(1, 1, step="root")
    return root


def recompute_root(engine: Engine, batch_id: UUID) -> bytes:
    """The root over the tokens as stored now, read back in serial order: an audit that the
    products still are what was anchored."""
    sha = merkle.leaf_hash
    hashes: list[bytes] = []
    with engine.connect() as sa_conn:
        pg = sa_conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        query = (
            "COPY (SELECT token FROM factory_products WHERE batch_id = %s ORDER BY serial)"
            " TO STDOUT"
        )
        with pg.cursor().copy(query, (batch_id,)) as copy:
            for block in copy:
                hashes.extend(sha(t) for t in bytes(block).splitlines())
    return merkle.root_of_nodes(hashes)


# --- step 3: anchoring -----------------------------------------------------------------------


def anchor_batch(
    engine: Engine, batch_id: UUID, anchor: Anchor, *, progress: Progress = no_progress
) -> AnchorReceipt | None:
    """Step 3: commit the root with ``anchor``; the batch becomes ``completed``. Returns None
    if it already was. On :class:`AnchorError` the batch stays ``anchoring`` with the error
    recorded, and the error is raised for the caller to retry with backoff."""
    batch = get_batch(engine, batch_id)
    if batch.status == "completed":
        return None
    if batch.status != "anchoring" or batch.merkle_root is None:
        raise BatchStateError(f"batch {batch_id} is {batch.status}: nothing to anchor yet")
    progress(0, 1, step="anchor")
    # A transaction sent by an earlier attempt that did not see it confirmed: wait for that
    # one rather than pay for a second.
    earlier = batch.anchor_details or {}
    submitted = earlier.get("submitted") if earlier.get("backend") == anchor.name else None

    def record_submission(ref: str) -> None:
        with engine.begin() as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(
                    anchor_details={"backend": anchor.name, "submitted": ref},
                    updated_at=func.now(),
                )
            )

    try:
        receipt = anchor.anchor(
            batch_id, batch.merkle_root, submitted=submitted, on_submit=record_submission
        )
    except AnchorError as exc:
        fail_batch(engine, batch_id, "anchor", str(exc))
        raise
    with engine.begin() as conn:
        set_status(
            conn,
            batch_id,
            "completed",
            anchor_backend=receipt.backend,
            anchor_ref=receipt.ref,
            anchor_chain_id=receipt.chain_id,
            anchor_block_number=receipt.block_number,
            anchor_block_time=receipt.block_time,
            anchor_details=dict(receipt.details),
            anchored_at=receipt.anchored_at,
            completed_at=func.now(),
            error=None,
            failed_step=None,
        )
    progress(1, 1, step="anchor")
    return receipt


def run_batch(
    engine: Engine,
    batch_id: UUID,
    keyring: Keyring,
    anchor: Anchor,
    *,
    workers: int | None = None,
    progress: Progress = no_progress,
) -> Batch:
    """Every step the batch still needs, in order; a failure outside anchoring marks the
    batch ``failed`` at that step before it is raised. Returns the batch as it ends."""
    batch = get_batch(engine, batch_id)
    step = "products"
    try:
        if batch.merkle_root is None:
            write_products(engine, batch_id, keyring, workers=workers, progress=progress)
            step = "root"
            compute_root(engine, batch_id, progress=progress)
    except FactoryError as exc:
        fail_batch(engine, batch_id, step, str(exc))
        raise
    except Exception as exc:
        fail_batch(engine, batch_id, step, f"{type(exc).__name__}: {exc}")
        raise
    anchor_batch(engine, batch_id, anchor, progress=progress)
    return get_batch(engine, batch_id)


def product_count(engine: Engine, batch_id: UUID) -> int:
    """How many product rows ``batch_id`` has (tests and the audit use it)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(products).where(products.c.batch_id == batch_id)
            ).scalar_one()
        )
