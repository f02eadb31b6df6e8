"""Embedded PostgreSQL and Redis for a Conveyor that has nothing configured.

Each server runs as a child process of the caller, on 127.0.0.1 and a free port, with its data
under Conveyor's home directory; `EmbeddedStack` starts whichever ones the settings leave unset.
"""

from conveyor.embedded.postgres import EmbeddedPostgres
from conveyor.embedded.redis import EmbeddedRedis
from conveyor.embedded.stack import EmbeddedStack

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "EmbeddedStack"]
