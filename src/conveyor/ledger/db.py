"""Engines for the ledger, with driver errors mapped onto Conveyor's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import OperationalError

T = TypeVar("T")


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = True
) -> Engine:
    """A psycopg 3 engine; ``postgresql://`` URLs are pointed at the psycopg driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A round trip per checkout; long-running services that retry on OperationalError
        # anyway (the recorder) turn it off.
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 5,
            "application_name": "conveyor",
            # Notice a PostgreSQL that vanished (partition, dead host) instead of waiting on a
            # socket forever: TCP keepalives plus a cap on unacknowledged sends.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        },
    )


class Link:
    """A connection of its own per thread, in autocommit mode, for a service thread that runs
    statements back to back (each atomic on its own): no pool checkout or pre-ping per use,
    and no BEGIN/COMMIT round trips.

    A connection that fails is dropped and the work is tried once more on a fresh one, so
    work given to :meth:`run` must be safe to repeat; the second failure is raised.
    """

    def __init__(self, engine: Engine, *, setup: str | None = None) -> None:
        self.engine = engine
        self.setup = setup
        self._local = threading.local()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self.setup:
                conn.exec_driver_sql(self.setup)
            self._local.conn = conn
        return conn

    def run(self, work: Callable[[Connection], T]) -> T:
        for attempt in (1, 2):
            try:
                return work(self._connection())
            except OperationalError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Give this thread's connection back (closed if it broke)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
