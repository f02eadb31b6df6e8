"""Apply the ledger's Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from conveyor.errors import LedgerNotMigrated

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would choke on '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to call from several processes at once."""
    command.upgrade(alembic_config(database_url), revision)


def check_migrated(database_url: str) -> None:
    """Raise :class:`LedgerNotMigrated` unless the database is at this Conveyor's schema.

    Every process that reads or writes the ledger calls this at start, so an empty or older
    database is one clear message instead of a ``relation ... does not exist`` in the middle
    of its work. A database that cannot be reached is not judged: those processes wait for it.
    """
    from conveyor.ledger.db import make_engine

    engine = make_engine(database_url, pool_size=1, max_overflow=0, pre_ping=False)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except OperationalError:
        return
    finally:
        engine.dispose()
    head = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    if current == head:
        return
    where = make_url(database_url).render_as_string(hide_password=True)
    found = ", ".join(sorted(current)) or "no Conveyor schema"
    raise LedgerNotMigrated(
        f"the database at {where} is not migrated (it has {found}; this Conveyor needs "
        f"{', '.join(sorted(head))}): run `conveyor migrate`"
    )
