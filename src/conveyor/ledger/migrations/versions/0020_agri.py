"""The agri pack: policies, plots, weather (partitioned by month, BRIN on day), indices,
images, daily NDVI, assessments and payouts

Revision ID: 0020
Revises: 0018
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_UUID = UUID(as_uuid=True)
NOW = sa.text("now()")


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def upgrade() -> None:
    op.create_table(
        "agri_policies",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column("policy_number", sa.String(64), nullable=False),
        sa.Column("crop", sa.String(32), nullable=False),
        sa.Column("planting_date", sa.Date(), nullable=False),
        sa.Column("cover_start", sa.Date(), nullable=False),
        sa.Column("cover_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("sum_insured", sa.Numeric(14, 2), nullable=False),
        sa.Column("deductible_pct", sa.Float(), nullable=False, server_default="10"),
        sa.Column("thresholds", JSONB(), nullable=False),
        sa.Column("farmer_wallet", sa.String(42), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        _created(),
        sa.UniqueConstraint("policy_number", name="uq_agri_policies_number"),
    )
    op.create_table(
        "agri_plots",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column(
            "policy_id",
            _UUID,
            sa.ForeignKey("agri_policies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("geometry", JSONB(), nullable=False),
        sa.Column("area_ha", sa.Float(), nullable=False),
        *(sa.Column(c, sa.Float(), nullable=False) for c in _BBOX),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_agri_plots_policy", "agri_plots", ["policy_id"])
    op.create_table(
        "agri_weather",
        sa.Column("plot_id", _UUID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("precipitation_mm", sa.Float(), nullable=False),
        sa.Column("tmax_c", sa.Float(), nullable=False),
        sa.Column("tmin_c", sa.Float(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("plot_id", "day", name="pk_agri_weather"),
        postgresql_partition_by="RANGE (day)",
    )
    op.create_index("ix_agri_weather_day_brin", "agri_weather", ["day"], postgresql_using="brin")
    # Rows for a month without its own partition land here rather than fail.
    op.execute("CREATE TABLE agri_weather_default PARTITION OF agri_weather DEFAULT")
    op.create_table(
        "agri_indices",
        sa.Column(
            "plot_id", _UUID, sa.ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("window_days", sa.BigInteger(), nullable=False),
        sa.Column("values", JSONB(), nullable=False),
        sa.Column("stress", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("plot_id", "day", name="pk_agri_indices"),
    )
    op.create_index("ix_agri_indices_stress", "agri_indices", ["day", "stress"])
    op.create_table(
        "agri_images",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column(
            "plot_id", _UUID, sa.ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("order_ref", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("process_after", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("acquired_on", sa.Date(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stats", JSONB(), nullable=True),
        sa.Column("ndvi_key", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_agri_images_status", "agri_images", ["status", "process_after"])
    op.create_index("ix_agri_images_plot", "agri_images", ["plot_id", "ordered_at"])
    op.create_table(
        "agri_ndvi_daily",
        sa.Column(
            "plot_id", _UUID, sa.ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("p10", sa.Float(), nullable=True),
        sa.Column("p90", sa.Float(), nullable=True),
        sa.Column("valid_fraction", sa.Float(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("plot_id", "day", name="pk_agri_ndvi_daily"),
    )
    op.create_table(
        "agri_assessments",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column(
            "plot_id", _UUID, sa.ForeignKey("agri_plots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("policy_id", _UUID, nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("weather_damage", sa.Float(), nullable=True),
        sa.Column("satellite_damage", sa.Float(), nullable=True),
        sa.Column("damage", sa.Float(), nullable=True),
        sa.Column("triggered", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("payout_amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("details", JSONB(), nullable=True),
        sa.Column("evidence", sa.LargeBinary(), nullable=True),
        sa.Column("proof_cid", sa.String(64), nullable=True),
        sa.Column("proof_key", sa.Text(), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("error", sa.Text(), nullable=True),
        _created(),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint(
            "plot_id", "period_start", "period_end", name="uq_agri_assessments_period"
        ),
    )
    op.create_index("ix_agri_assessments_proof", "agri_assessments", ["proof_cid"])
    op.create_index("ix_agri_assessments_status", "agri_assessments", ["status", "created_at"])
    op.create_table(
        "agri_payouts",
        sa.Column("id", _UUID, primary_key=True),
        sa.Column(
            "assessment_id",
            _UUID,
            sa.ForeignKey("agri_assessments.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("plot_id", _UUID, nullable=False),
        sa.Column("policy_id", _UUID, nullable=False),
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("amount_wei", sa.Numeric(78, 0), nullable=False),
        sa.Column("proof_cid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="approved"),
        sa.Column("sender", sa.String(42), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("receipt", JSONB(), nullable=True),
        sa.Column("attempts", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        _created(),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("assessment_id", name="uq_agri_payouts_assessment"),
    )
    op.create_index("ix_agri_payouts_status", "agri_payouts", ["status", "created_at"])


_BBOX = ("min_lon", "min_lat", "max_lon", "max_lat")


def downgrade() -> None:
    for table in (
        "agri_payouts",
        "agri_assessments",
        "agri_ndvi_daily",
        "agri_images",
        "agri_indices",
        "agri_weather",
        "agri_plots",
        "agri_policies",
    ):
        op.drop_table(table)
