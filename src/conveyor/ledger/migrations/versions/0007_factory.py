"""Factory pack: batches, products, chunk markers with Merkle block roots, local anchor log

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NOW = sa.text("now()")

# The local anchor log refuses UPDATE, DELETE and TRUNCATE, so an edit takes a deliberate
# ALTER TABLE … DISABLE TRIGGER by the table's owner; the hash chain catches that one too.
APPEND_ONLY = """
CREATE FUNCTION factory_anchors_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'factory_anchors is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER factory_anchors_no_change BEFORE UPDATE OR DELETE ON factory_anchors
  FOR EACH ROW EXECUTE FUNCTION factory_anchors_append_only();
CREATE TRIGGER factory_anchors_no_truncate BEFORE TRUNCATE ON factory_anchors
  FOR EACH STATEMENT EXECUTE FUNCTION factory_anchors_append_only();
"""


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=NOW if now else None
    )


def upgrade() -> None:
    op.create_table(
        "factory_batches",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("product_count", sa.BigInteger(), nullable=False),
        sa.Column("product_name", sa.String(length=255), nullable=False),
        sa.Column("category", sa.String(length=255), nullable=False),
        sa.Column("factory_id", sa.String(length=255), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("token_kid", sa.String(length=16), nullable=False),
        sa.Column("verify_base_url", sa.Text(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("products_written", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("merkle_root", sa.LargeBinary(), nullable=True),
        sa.Column("anchor_backend", sa.String(length=16), nullable=True),
        sa.Column("anchor_ref", sa.String(length=255), nullable=True),
        sa.Column("anchor_chain_id", sa.BigInteger(), nullable=True),
        sa.Column("anchor_block_number", sa.BigInteger(), nullable=True),
        _ts("anchor_block_time"),
        sa.Column("anchor_details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("failed_step", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        _ts("processing_started_at"),
        _ts("products_written_at"),
        _ts("root_computed_at"),
        _ts("anchored_at"),
        _ts("completed_at"),
        _ts("failed_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_factory_batches_status_created", "factory_batches", ["status", "created_at"]
    )
    op.create_index(
        "ix_factory_batches_factory_created", "factory_batches", ["factory_id", "created_at"]
    )
    op.create_table(
        "factory_products",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=80, collation="C"), nullable=False),
        sa.Column("verification_url", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("category", sa.String(length=255), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token", name="uq_factory_products_token"),
        sa.UniqueConstraint("batch_id", "serial", name="uq_factory_products_batch_serial"),
    )
    op.create_table(
        "factory_chunks",
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("block_roots", sa.LargeBinary(), nullable=False),
        _ts("written_at", nullable=False, now=True),
        sa.ForeignKeyConstraint(["batch_id"], ["factory_batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "chunk_no", name="pk_factory_chunks"),
    )
    op.create_table(
        "factory_anchors",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("merkle_root", sa.LargeBinary(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("entry_hash", name="uq_factory_anchors_entry_hash"),
    )
    op.create_index("ix_factory_anchors_batch", "factory_anchors", ["batch_id"])
    op.execute(APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("factory_anchors")
    op.execute("DROP FUNCTION factory_anchors_append_only()")
    op.drop_table("factory_chunks")
    op.drop_table("factory_products")
    op.drop_index("ix_factory_batches_factory_created", table_name="factory_batches")
    op.drop_index("ix_factory_batches_status_created", table_name="factory_batches")
    op.drop_table("factory_batches")
