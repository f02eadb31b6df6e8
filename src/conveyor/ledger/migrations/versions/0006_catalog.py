"""Catalog pack: products, imports and their skipped rows, webhooks and deliveries

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _stamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "catalog_products",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "catalog_products_sku_key", "catalog_products", [sa.text("lower(sku)")], unique=True
    )
    op.create_table(
        "catalog_imports",
        sa.Column("id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("stored_as", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("inserted", sa.Integer(), nullable=True),
        sa.Column("updated", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("catalog_imports_created_at", "catalog_imports", ["created_at"])
    op.create_table(
        "catalog_import_errors",
        sa.Column("import_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("excerpt", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["catalog_imports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("import_id", "row"),
    )
    op.create_table(
        "catalog_webhooks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("description", sa.String(length=255), server_default="", nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "catalog_webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_ms", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", postgresql.UUID(as_uuid=False), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["webhook_id"], ["catalog_webhooks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "catalog_webhook_deliveries_webhook",
        "catalog_webhook_deliveries",
        ["webhook_id", "id"],
    )


def downgrade() -> None:
    op.drop_table("catalog_webhook_deliveries")
    op.drop_table("catalog_webhooks")
    op.drop_table("catalog_import_errors")
    op.drop_table("catalog_imports")
    op.drop_table("catalog_products")
