"""Engines for the ledger, with driver errors mapped onto Conveyor's."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


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
