"""Catalog webhooks: keep only the status line of old delivery errors

Before this revision a failed delivery's error held the first 200 characters of the
receiver's answer (``HTTP 500: <body>``), shown in the delivery log: an internal service's
answer could be read back through a webhook. Deliveries now store ``HTTP 500`` only; this
strips what older rows kept.

Revision ID: 0015
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE catalog_webhook_deliveries SET error = substring(error from '^HTTP [0-9]{3}')"
        " WHERE error ~ '^HTTP [0-9]{3}: '"
    )


def downgrade() -> None:
    pass  # the bodies are gone, on purpose
