"""The Alembic migrations produce exactly the schema the tables declare: the ledger's, and
each pack's (packs keep their tables in a MetaData of their own; list it here)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from conveyor.ledger.tables import metadata
from conveyor.packs.factory.tables import metadata as factory_metadata

METADATA = [metadata, factory_metadata]


def test_migrations_match_the_tables(settings: Any) -> None:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)  # type: ignore[arg-type]
    engine.dispose()
    assert diff == []
