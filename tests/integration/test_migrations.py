"""The Alembic migrations produce exactly the schema the tables declare: the ledger's and
every shipped pack's."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from conveyor.ledger.tables import metadata
from conveyor.packs import all_tables


def test_migrations_match_the_tables(settings: Any) -> None:
    combined = MetaData()
    for source in (metadata, *all_tables()):
        for table in source.tables.values():
            table.to_metadata(combined)
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), combined)
    engine.dispose()
    assert diff == []
