"""The factory pack's tables (SQLAlchemy Core), in a MetaData of the pack's own.

Migration ``0007_factory`` creates them; ``tests/integration/test_migrations.py`` compares the
migrations with the ledger's MetaData and this one together, so a pack's tables are held to the
same rule as the ledger's without the pack reaching into ``conveyor.ledger.tables``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

NOW = text("now()")

batches = Table(
    "factory_batches",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # pending → processing → anchoring → completed | failed
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("product_count", BigInteger, nullable=False),
    Column("product_name", String(255), nullable=False),
    Column("category", String(255), nullable=False),
    Column("factory_id", String(255), nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Fixed when the batch is created, so a resumed batch signs and links its remaining
    # products exactly as its first ones, whatever the settings say by then.
    Column("token_kid", String(16), nullable=False),
    Column("verify_base_url", Text, nullable=False),
    Column("chunk_size", Integer, nullable=False),
    Column("products_written", BigInteger, nullable=False, server_default="0"),
    Column("merkle_root", LargeBinary, nullable=True),
    Column("anchor_backend", String(16), nullable=True),
    Column("anchor_ref", String(255), nullable=True),
    Column("anchor_chain_id", BigInteger, nullable=True),
    Column("anchor_block_number", BigInteger, nullable=True),
    Column("anchor_block_time", DateTime(timezone=True), nullable=True),
    Column("anchor_details", JSONB, nullable=True),
    # The Conveyor job that last ran the batch (its progress, and whether a run is alive).
    Column("job_id", String(36), nullable=True),
    Column("failed_step", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("processing_started_at", DateTime(timezone=True), nullable=True),
    Column("products_written_at", DateTime(timezone=True), nullable=True),
    Column("root_computed_at", DateTime(timezone=True), nullable=True),
    Column("anchored_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("failed_at", DateTime(timezone=True), nullable=True),
    Index("ix_factory_batches_status_created", "status", "created_at"),
    Index("ix_factory_batches_factory_created", "factory_id", "created_at"),
)

products = Table(
    "factory_products",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # No foreign key: PostgreSQL would check it once per COPYed row (a million index probes per
    # batch); products are written and deleted only through their batch.
    Column("batch_id", UUID(as_uuid=True), nullable=False),
    Column("serial", BigInteger, nullable=False),
    # Byte order ("C"): tokens are ASCII, and a locale's collation would only slow the index.
    Column("token", String(80, collation="C"), nullable=False),
    Column("verification_url", Text, nullable=False),
    Column("name", String(255), nullable=False),
    Column("category", String(255), nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    UniqueConstraint("token", name="uq_factory_products_token"),
    UniqueConstraint("batch_id", "serial", name="uq_factory_products_batch_serial"),
)

chunks = Table(
    "factory_chunks",
    metadata,
    Column(
        "batch_id",
        UUID(as_uuid=True),
        ForeignKey("factory_batches.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("chunk_no", Integer, nullable=False),
    Column("leaf_count", Integer, nullable=False),
    # The Merkle roots of the chunk's consecutive blocks of BLOCK_LEAVES leaves, concatenated
    # (32 bytes each): written in the same transaction as the chunk's products, they are both
    # the chunk's "done" marker and the tree nodes that inclusion proofs start from.
    Column("block_roots", LargeBinary, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("batch_id", "chunk_no", name="pk_factory_chunks"),
)

anchors = Table(
    "factory_anchors",
    metadata,
    # Assigned under a table lock as the last seq + 1: gap-free, so a deleted entry shows.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("batch_id", UUID(as_uuid=True), nullable=False),
    Column("merkle_root", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("entry_hash", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("entry_hash", name="uq_factory_anchors_entry_hash"),
    Index("ix_factory_anchors_batch", "batch_id"),
)
