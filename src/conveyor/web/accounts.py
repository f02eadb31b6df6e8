"""Dashboard users at login and on every request: password checks, a brute-force throttle,
and the per-request re-check of a user's session.

A session cookie names the user by id (``session.py``); each request re-reads the user through
a short per-process cache (``CONVEYOR_AUTH_CACHE_SECONDS``, like API keys), so disabling a user,
changing their role or their password takes effect within that time on every API process.

Failed logins are counted per username in Redis; after ``CONVEYOR_LOGIN_MAX_FAILURES`` in a
row, that name is refused without checking the password until ``CONVEYOR_LOGIN_LOCKOUT_SECONDS``
pass without another failure. Unknown names are counted the same way, so neither the lockout
nor the messages tell which names exist. If Redis is unreachable the throttle is skipped
(logged): a Redis outage should not lock every operator out of the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from fastapi import Request
from sqlalchemy import Engine

from conveyor.api.auth import Principal
from conveyor.api.lookup_cache import LookupCache
from conveyor.errors import NotAuthenticated
from conveyor.ledger import users
from conveyor.ledger.users import User

log = logging.getLogger(__name__)

FAILURES_KEY = "conveyor:login-failures:"
REFUSED = "wrong username or password"
"""The one message for an unknown user, a disabled one and a wrong password alike."""


@dataclass(frozen=True)
class Throttle:
    """How many failed logins a username gets before a lockout, and for how long."""

    max_failures: int = 10
    lockout_seconds: int = 900


class Accounts:
    """Password logins and user sessions, against the ledger and Redis."""

    def __init__(
        self,
        engine: Engine,
        redis_client: Callable[[], redis.Redis],
        *,
        cache_seconds: float,
        throttle: Throttle | None = None,
    ) -> None:
        self.engine = engine
        self.redis = redis_client
        self.throttle = throttle or Throttle()
        self._users: LookupCache[int, User] = LookupCache(self._load, cache_seconds)

    def _load(self, user_id: int) -> User | None:
        with self.engine.connect() as conn:
            return users.get_user_by_id(conn, user_id)

    def cached(self, user_id: int) -> tuple[bool, User | None]:
        """(fresh, user) from the cache alone; ``fresh`` is False when it must be looked up."""
        return self._users.cached(user_id)

    def lookup(self, user_id: int) -> User | None:
        """The user from the cache if fresh, else from PostgreSQL (blocking)."""
        return self._users.get(user_id)

    # --- login -------------------------------------------------------------------------------
    def log_in(self, username: str, password: str) -> User:
        """The user if the password is theirs and they may log in; NotAuthenticated with one
        message for every refusal except a lockout. Blocking (scrypt, PostgreSQL, Redis)."""
        # Counted under the name as typed (folded, capped): unknown names lock out like real ones.
        name = username.strip().casefold()[: users.MAX_USERNAME + 1]
        if self._locked_out(name):
            raise NotAuthenticated(
                "too many failed logins for this username; wait "
                f"{max(1, self.throttle.lockout_seconds // 60)} minutes and try again"
            )
        with self.engine.connect() as conn:
            user = users.get_user(conn, name)
        if user is None or not user.active:
            users.burn_password_check(password)
            ok = False
        else:
            ok = users.verify_password(password, user.password_hash)
        if not ok or user is None:
            self._failed(name)
            raise NotAuthenticated(REFUSED)
        self._succeeded(name)
        with self.engine.begin() as conn:
            users.mark_login(conn, user.id)
        self._users.forget(user.id)
        return user

    def _locked_out(self, name: str) -> bool:
        try:
            count = self.redis().get(FAILURES_KEY + name)
        except redis.RedisError as exc:
            log.warning("login throttle skipped, Redis unreachable: %s", exc)
            return False
        return count is not None and int(count) >= self.throttle.max_failures

    def _failed(self, name: str) -> None:
        try:
            pipe = self.redis().pipeline(transaction=False)
            pipe.incr(FAILURES_KEY + name)
            pipe.expire(FAILURES_KEY + name, self.throttle.lockout_seconds)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not count a failed login, Redis unreachable: %s", exc)

    def _succeeded(self, name: str) -> None:
        try:
            self.redis().delete(FAILURES_KEY + name)
        except redis.RedisError as exc:
            log.warning("could not reset failed logins, Redis unreachable: %s", exc)

    # --- sessions ----------------------------------------------------------------------------
    @staticmethod
    def principal_for(user: User | None, issued_at: float) -> Principal:
        """The principal of a user's session started at ``issued_at`` (epoch seconds), or
        NotAuthenticated if the user is gone, disabled, or changed password since."""
        if user is None:
            raise NotAuthenticated("this user no longer exists")
        if not user.active:
            raise NotAuthenticated(f"user {user.username} was disabled")
        if user.password_changed_at.timestamp() > issued_at:
            raise NotAuthenticated(f"the password of {user.username} changed; log in again")
        return Principal.of_user(user.username, user.role, user.scopes)


def get_accounts(request: Request) -> Accounts:
    """The app's :class:`Accounts`, created by ``mount_web``."""
    return request.app.state.accounts  # type: ignore[no-any-return]
