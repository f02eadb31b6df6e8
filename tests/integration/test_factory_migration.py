"""Migrations 0007 and 0008 go down and up again cleanly, on a database of its own."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from conveyor.ledger.migrate import alembic_config, upgrade
from conveyor.testing.services import _fresh_database

FACTORY_TABLES = {"factory_batches", "factory_products", "factory_chunks", "factory_anchors"}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_factory_migration_downgrades_and_upgrades(settings: Any) -> None:
    url = _fresh_database(settings.database_url)
    try:
        upgrade(url)
        assert _tables(url) >= FACTORY_TABLES
        command.downgrade(alembic_config(url), "0006")  # below 0007 and 0008
        left = _tables(url)
        assert not FACTORY_TABLES & left and "conveyor_jobs" in left
        upgrade(url)
        assert _tables(url) >= FACTORY_TABLES
    finally:
        server = make_url(url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}"')
