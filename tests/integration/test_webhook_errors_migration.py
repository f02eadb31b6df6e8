"""Migration 0015 strips receivers' answers that older versions kept in the delivery log."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic import command
from sqlalchemy.engine import make_url

from conveyor.ledger.migrate import alembic_config, upgrade
from conveyor.testing.services import _fresh_database


def test_old_delivery_errors_keep_only_their_status_line(settings: Any) -> None:
    url = _fresh_database(settings.database_url)
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        upgrade(url)
        command.downgrade(alembic_config(url), "0008")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO catalog_webhooks (id, url, events, secret)"
                " VALUES (1, 'http://x.example/', ARRAY['product.created'], 'whsec_x')"
            )
            for error in ("HTTP 500: INTERNAL-ONLY secret=hunter2", "HTTP 404: ", None,
                          "no response within 10 s"):  # fmt: skip
                conn.execute(
                    "INSERT INTO catalog_webhook_deliveries (webhook_id, event, payload, error)"
                    " VALUES (1, 'product.created', '{}', %s)",
                    (error,),
                )
        upgrade(url)
        with psycopg.connect(plain) as conn:
            rows = conn.execute(
                "SELECT error FROM catalog_webhook_deliveries ORDER BY id"
            ).fetchall()
        assert [r[0] for r in rows] == ["HTTP 500", "HTTP 404", None, "no response within 10 s"]
    finally:
        server = make_url(url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}"')
