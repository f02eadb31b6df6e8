"""The Alembic migrations produce exactly the schema the tables declare: the ledger's and
every shipped pack's."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, text

from conveyor.ledger.tables import metadata
from conveyor.packs import all_tables


def test_migrations_match_the_tables(settings: Any) -> None:
    combined = MetaData()
    for source in (metadata, *all_tables()):
        for table in source.tables.values():
            table.to_metadata(combined)
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        # A partitioned table's partitions (agri_weather's months) are made at run time, not
        # declared: the comparison is of the partitioned parents.
        partitions = set(
            conn.execute(text("SELECT relname FROM pg_class WHERE relispartition")).scalars()
        )

        def declared(obj: Any, name: str | None, kind: str, reflected: bool, to: Any) -> bool:
            return not (kind == "table" and reflected and name in partitions)

        context = MigrationContext.configure(conn, opts={"include_object": declared})
        diff = compare_metadata(context, combined)
    engine.dispose()
    assert diff == []
