"""The embedded services a `Settings` asks for, started and stopped together.

A connection URL left unset in the settings means "run it here": PostgreSQL under
``<home>/postgres`` and Redis under ``<home>/redis``. The broker defaults to that Redis.
"""

from __future__ import annotations

from conveyor.config import Settings
from conveyor.embedded.postgres import EmbeddedPostgres
from conveyor.embedded.process import Lifecycle
from conveyor.embedded.redis import EmbeddedRedis
from conveyor.errors import EmbeddedServiceError


class EmbeddedStack(Lifecycle):
    """Starts the embedded servers `settings` needs and hands back settings that point at them.

    ``durable=False`` is for tests: faster servers whose data may not survive a crash.
    """

    def __init__(self, settings: Settings, *, durable: bool = True) -> None:
        self.settings = settings
        self.durable = durable
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self._resolved: Settings | None = None

    def start(self) -> Settings:
        """Start what is not configured and return a copy of the settings with every URL set.

        If one server fails to start, the ones already started are stopped before the error
        propagates. Calling it again while running returns the same settings.
        """
        if self._resolved is not None:
            return self._resolved
        home = self.settings.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        database_url = self.settings.database_url
        redis_url = self.settings.redis_url
        try:
            if database_url is None:
                self.postgres = EmbeddedPostgres(home / "postgres", durable=self.durable)
                database_url = self.postgres.start()
            if redis_url is None:
                self.redis = EmbeddedRedis(home / "redis", durable=self.durable)
                redis_url = self.redis.start()
        except BaseException:
            self.stop()
            raise
        self._resolved = self.settings.model_copy(
            update={
                "database_url": database_url,
                "redis_url": redis_url,
                "broker_url": self.settings.broker_url or redis_url,
            }
        )
        return self._resolved

    def stop(self, timeout: float = 10) -> None:
        """Stop the servers this stack started, in reverse order. Idempotent."""
        # Redis first: workers and the recorder drain their streams into PostgreSQL.
        errors: list[EmbeddedServiceError] = []
        for server in (self.redis, self.postgres):
            if server is None:
                continue
            try:
                server.stop(timeout)
            except EmbeddedServiceError as exc:
                errors.append(exc)
        self.redis = None
        self.postgres = None
        self._resolved = None
        if errors:
            raise EmbeddedServiceError("; ".join(str(exc) for exc in errors))

    def env(self) -> dict[str, str]:
        """Environment variables that point child processes at the running services."""
        if self._resolved is None:
            raise EmbeddedServiceError("the embedded stack is not started; call start() first")
        resolved = self._resolved
        assert resolved.database_url and resolved.redis_url and resolved.broker_url
        return {
            "CONVEYOR_DATABASE_URL": resolved.database_url,
            "CONVEYOR_REDIS_URL": resolved.redis_url,
            "CONVEYOR_BROKER_URL": resolved.broker_url,
        }
