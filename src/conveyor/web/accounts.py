"""Dashboard users at login and on every request: password checks, a brute-force throttle,
and the per-request re-check of a user's session.

A session cookie names the user by id (``session.py``); each request re-reads the user through
a short per-process cache (``CONVEYOR_AUTH_CACHE_SECONDS``, like API keys), so disabling a user,
changing their role or their password takes effect within that time on every API process.

Failed logins are slowed per (username, client address) with a growing delay, plus a
per-username ceiling across addresses that slows, never locks (``login_throttle.py``). Unknown
names are counted the same way, so neither the throttle nor the messages tell which names
exist.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from fastapi import Request
from sqlalchemy import Engine

from conveyor.api.auth import Principal
from conveyor.api.lookup_cache import LookupCache
from conveyor.errors import NotAuthenticated
from conveyor.ledger import users
from conveyor.ledger.users import User
from conveyor.web.login_throttle import LoginThrottle, Throttle

REFUSED = "wrong username or password"
"""The one message for an unknown user, a disabled one and a wrong password alike."""


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
        self.throttle = LoginThrottle(redis_client, throttle)
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
    def log_in(self, username: str, password: str, address: str) -> User:
        """The user if the password is theirs and they may log in; NotAuthenticated with one
        message for every refusal except a throttled one (LoginThrottled). ``address`` is the
        client's (after the trusted-proxy rule). Blocking (scrypt, PostgreSQL, Redis)."""
        # Counted under the name as typed (folded, capped): unknown names are slowed like real
        # ones.
        name = username.strip().casefold()[: users.MAX_USERNAME + 1]
        self.throttle.check(name, address)  # LoginThrottled: not even a password check
        with self.engine.connect() as conn:
            user = users.get_user(conn, name)
        if user is None or not user.active:
            users.burn_password_check(password)
            ok = False
        else:
            ok = users.verify_password(password, user.password_hash)
        if not ok or user is None:
            self.throttle.failed(name, address)
            raise NotAuthenticated(REFUSED)
        self.throttle.succeeded(name, address)
        with self.engine.begin() as conn:
            users.mark_login(conn, user.id)
        self._users.forget(user.id)
        return user

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
