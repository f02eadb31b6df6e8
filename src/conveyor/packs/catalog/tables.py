"""The catalog pack's tables (SQLAlchemy Core); migration 0006 must equal them.

SKUs are unique case-insensitively: the unique index is on ``lower(sku)``, and the product
keeps the SKU as last written. Imports, their skipped rows, webhooks and their deliveries are
kept so the dashboard can show history after any restart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

NOW = text("now()")
SKU_MAX = 64
NAME_MAX = 255
DESCRIPTION_MAX = 10_000

products = Table(
    "catalog_products",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("sku", String(SKU_MAX), nullable=False),
    Column("name", String(NAME_MAX), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("catalog_products_sku_key", func.lower(products.c.sku), unique=True)

imports = Table(
    "catalog_imports",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("job_id", UUID(as_uuid=False), nullable=True),  # the latest job that ran it
    Column("filename", String(255), nullable=False),
    Column("stored_as", String(255), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("state", String(16), nullable=False, server_default="queued"),
    Column("rows_total", Integer, nullable=True),
    Column("inserted", Integer, nullable=True),
    Column("updated", Integer, nullable=True),
    Column("skipped", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("seconds", Double, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)
Index("catalog_imports_created_at", imports.c.created_at)

import_errors = Table(
    "catalog_import_errors",
    metadata,
    Column(
        "import_id",
        UUID(as_uuid=False),
        ForeignKey("catalog_imports.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("row", BigInteger, primary_key=True),  # as a spreadsheet counts: the header is 1
    Column("reason", String(255), nullable=False),
    Column("excerpt", Text, nullable=False, server_default=""),
)

webhooks = Table(
    "catalog_webhooks",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(String(32)), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("description", String(255), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

deliveries = Table(
    "catalog_webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "webhook_id",
        BigInteger,
        ForeignKey("catalog_webhooks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event", String(32), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", SmallInteger, nullable=False, server_default="0"),
    Column("status_code", Integer, nullable=True),
    Column("response_ms", Double, nullable=True),
    Column("error", Text, nullable=True),
    Column("job_id", UUID(as_uuid=False), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("catalog_webhook_deliveries_webhook", deliveries.c.webhook_id, deliveries.c.id)
