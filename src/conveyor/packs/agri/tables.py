"""The agri pack's tables (SQLAlchemy Core), in a MetaData of the pack's own.

Migration ``0020_agri`` creates them. ``agri_weather`` is partitioned by month on ``day``
(declarative range partitioning, plain PostgreSQL ≥ 14: TimescaleDB is never required) with a
BRIN index on ``day``: rows arrive in time order, so a BRIN index of a few pages answers range
scans over years of series. The migration creates a ``DEFAULT`` partition so an insert never
fails for want of a month; :func:`conveyor.packs.agri.store.ensure_month` adds the month
partitions ahead of the data.

Idempotency lives in the keys: one assessment per (plot, period start, period end), one payout
per assessment, one index row per (plot, day).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Numeric,
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
_UUID = UUID(as_uuid=True)

policies = Table(
    "agri_policies",
    metadata,
    Column("id", _UUID, primary_key=True),
    Column("policy_number", String(64), nullable=False),
    Column("crop", String(32), nullable=False),
    Column("planting_date", Date, nullable=False),
    Column("cover_start", Date, nullable=False),
    Column("cover_end", Date, nullable=False),
    Column("currency", String(10), nullable=False),
    # In `currency`, two decimals (policies.Policy); the local chain pays it in ether 1:1.
    Column("sum_insured", Numeric(14, 2), nullable=False),
    Column("deductible_pct", Float, nullable=False, server_default="10"),
    # policies.Thresholds as JSON: per peril trigger/exit in the units docs/agri.md gives.
    Column("thresholds", JSONB, nullable=False),
    Column("farmer_wallet", String(42), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint("policy_number", name="uq_agri_policies_number"),
)

plots = Table(
    "agri_plots",
    metadata,
    Column("id", _UUID, primary_key=True),
    Column("policy_id", _UUID, ForeignKey("agri_policies.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("geometry", JSONB, nullable=False),
    Column("area_ha", Float, nullable=False),
    Column("min_lon", Float, nullable=False),
    Column("min_lat", Float, nullable=False),
    Column("max_lon", Float, nullable=False),
    Column("max_lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("lat", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Index("ix_agri_plots_policy", "policy_id"),
)

weather = Table(
    "agri_weather",
    metadata,
    Column("plot_id", _UUID, nullable=False),
    Column("day", Date, nullable=False),
    Column("precipitation_mm", Float, nullable=False),
    Column("tmax_c", Float, nullable=False),
    Column("tmin_c", Float, nullable=False),
    Column("source", String(32), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("plot_id", "day", name="pk_agri_weather"),
    Index("ix_agri_weather_day_brin", "day", postgresql_using="brin"),
    postgresql_partition_by="RANGE (day)",
)

indices = Table(
    "agri_indices",
    metadata,
    Column("plot_id", _UUID, ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("window_days", BigInteger, nullable=False),
    Column("values", JSONB, nullable=False),
    Column("stress", Float, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("plot_id", "day", name="pk_agri_indices"),
    Index("ix_agri_indices_stress", "day", "stress"),
)

images = Table(
    "agri_images",
    metadata,
    Column("id", _UUID, primary_key=True),
    Column("plot_id", _UUID, ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("order_ref", String(128), nullable=False),
    # pending → completed | failed | expired (7 days without completing)
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("ordered_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("process_after", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("acquired_on", Date, nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("stats", JSONB, nullable=True),
    Column("ndvi_key", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_agri_images_status", "status", "process_after"),
    Index("ix_agri_images_plot", "plot_id", "ordered_at"),
)

ndvi_daily = Table(
    "agri_ndvi_daily",
    metadata,
    Column("plot_id", _UUID, ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("mean", Float, nullable=False),
    Column("p10", Float, nullable=True),
    Column("p90", Float, nullable=True),
    Column("valid_fraction", Float, nullable=False),
    Column("baseline", Float, nullable=True),
    PrimaryKeyConstraint("plot_id", "day", name="pk_agri_ndvi_daily"),
)

assessments = Table(
    "agri_assessments",
    metadata,
    Column("id", _UUID, primary_key=True),
    Column("plot_id", _UUID, ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False),
    Column("policy_id", _UUID, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    # pending → completed | failed; archived_at once moved to the object store
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("weather_damage", Float, nullable=True),
    Column("satellite_damage", Float, nullable=True),
    Column("damage", Float, nullable=True),
    Column("triggered", Boolean, nullable=False, server_default=text("false")),
    Column("payout_amount", Numeric(14, 2), nullable=True),
    Column("details", JSONB, nullable=True),
    # The evidence as RFC 8785 canonical JSON, and the CIDv1 that names it.
    Column("evidence", LargeBinary, nullable=True),
    Column("proof_cid", String(64), nullable=True),
    Column("proof_key", Text, nullable=True),
    Column("pinned", Boolean, nullable=False, server_default=text("false")),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("archived_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("plot_id", "period_start", "period_end", name="uq_agri_assessments_period"),
    Index("ix_agri_assessments_proof", "proof_cid"),
    Index("ix_agri_assessments_status", "status", "created_at"),
)

payouts = Table(
    "agri_payouts",
    metadata,
    Column("id", _UUID, primary_key=True),
    Column(
        "assessment_id",
        _UUID,
        ForeignKey("agri_assessments.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("plot_id", _UUID, nullable=False),
    Column("policy_id", _UUID, nullable=False),
    Column("wallet", String(42), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("amount_wei", Numeric(78, 0), nullable=False),
    Column("proof_cid", String(64), nullable=False),
    # approved → submitted → confirmed | failed
    Column("status", String(16), nullable=False, server_default="approved"),
    # The signed transaction is recorded before it is sent: a retry re-sends these bytes
    # (same nonce, same hash), never a second payment.
    Column("sender", String(42), nullable=True),
    Column("nonce", BigInteger, nullable=True),
    Column("raw_tx", LargeBinary, nullable=True),
    Column("tx_hash", String(66), nullable=True),
    Column("chain_id", BigInteger, nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("receipt", JSONB, nullable=True),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("submitted_at", DateTime(timezone=True), nullable=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("assessment_id", name="uq_agri_payouts_assessment"),
    Index("ix_agri_payouts_status", "status", "created_at"),
)
