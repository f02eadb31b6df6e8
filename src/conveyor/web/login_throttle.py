"""Slowing password guessing without letting anyone lock a user out.

A username's failed logins are counted per client address (the real one: see
``api/transport.py`` for which proxies may name it). From one address, the first
``free_failures`` failures cost nothing; after that each further attempt must wait a delay that
doubles from ``backoff_seconds`` up to ``backoff_max_seconds``, counted from the last failure.
The right password from another address is not affected, so a stranger hammering ``admin``
slows only themselves.

Many addresses together (a botnet) get one more, per-user brake: past ``user_ceiling`` failures
for a username within ``window_seconds``, addresses that have not logged in as that user before
share one password check per ``ceiling_interval_seconds``. That caps a distributed guesser at
about ``window / interval`` guesses per window for the name, while the real user, from an
address they logged in from in the last 30 days, is never held by the ceiling; from a new
address they may be asked to try again after a couple of seconds. Nobody is ever locked out for
long: the trade-off is a bounded guessing rate instead of a lockout that anyone could trigger.

An admin clears everything kept for a name with ``conveyor users unlock NAME``. The state lives
in Redis with expiry; if Redis is unreachable the throttle is skipped (logged), since a Redis
outage should not lock every operator out of the dashboard.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from conveyor.errors import LoginThrottled

log = logging.getLogger(__name__)

PREFIX = "conveyor:login:"
KNOWN_SECONDS = 30 * 24 * 3600
"""How long an address that logged in as a user counts as theirs."""


@dataclass(frozen=True)
class Throttle:
    """The throttle's numbers (``CONVEYOR_LOGIN_*``; docs/security.md)."""

    free_failures: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 900.0
    user_ceiling: int = 100
    window_seconds: int = 900
    ceiling_interval_seconds: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds an address must wait after its last failure, having failed ``failures``
        times."""
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 60)
        return min(self.backoff_seconds * 2.0**exponent, self.backoff_max_seconds)


def _keys(name: str) -> tuple[str, str, str, str]:
    """(failures per address, failures of the name, addresses known for it, ceiling slot)."""
    return (
        f"{PREFIX}addresses:{name}",
        f"{PREFIX}failures:{name}",
        f"{PREFIX}known:{name}",
        f"{PREFIX}slot:{name}",
    )


class LoginThrottle:
    """The throttle's state in Redis; every method is blocking (one or two round trips)."""

    def __init__(
        self,
        redis_client: Callable[[], redis.Redis],
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.throttle = throttle or Throttle()
        self.clock = clock

    def check(self, name: str, address: str) -> None:
        """Raise :class:`LoginThrottled` if ``address`` may not try ``name``'s password now."""
        per_address, failures, known, slot = _keys(name)
        t = self.throttle
        try:
            pipe = self.redis().pipeline(transaction=False)
            pipe.hget(per_address, address)
            pipe.get(failures)
            pipe.sismember(known, address)
            raw, total, is_known = pipe.execute()
            if raw is not None:
                count, last = _entry(raw)
                wait = last + t.delay(count) - self.clock()
                if wait > 0:
                    raise LoginThrottled(
                        "too many failed logins for this username from your address; try "
                        f"again in {_seconds(wait)}",
                        wait,
                    )
            if total is not None and int(total) >= t.user_ceiling and not is_known:
                interval_ms = max(1, int(t.ceiling_interval_seconds * 1000))
                if not self.redis().set(slot, address, nx=True, px=interval_ms):
                    raise LoginThrottled(
                        "this username had many failed logins from many addresses, so its "
                        f"logins are slowed; try again in {_seconds(t.ceiling_interval_seconds)}",
                        t.ceiling_interval_seconds,
                    )
        except redis.RedisError as exc:
            log.warning("login throttle skipped, Redis unreachable: %s", exc)

    def failed(self, name: str, address: str) -> None:
        """Count a failed login of ``name`` from ``address``."""
        per_address, failures, _, _ = _keys(name)
        t = self.throttle
        try:
            raw = self.redis().hget(per_address, address)
            count = _entry(raw)[0] + 1 if raw is not None else 1
            keep = math.ceil(max(t.backoff_max_seconds, t.window_seconds))
            pipe = self.redis().pipeline(transaction=False)
            pipe.hset(per_address, address, f"{count}:{self.clock():.3f}")
            pipe.expire(per_address, keep)
            # A fixed window from the first failure (SET NX EX, then INCR keeps its expiry).
            pipe.set(failures, 0, ex=t.window_seconds, nx=True)
            pipe.incr(failures)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not count a failed login, Redis unreachable: %s", exc)

    def succeeded(self, name: str, address: str) -> None:
        """Forget ``address``'s failures for ``name`` and remember it as the user's."""
        per_address, _, known, _ = _keys(name)
        try:
            pipe = self.redis().pipeline(transaction=False)
            pipe.hdel(per_address, address)
            pipe.sadd(known, address)
            pipe.expire(known, KNOWN_SECONDS)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not reset failed logins, Redis unreachable: %s", exc)

    def unlock(self, name: str) -> int:
        """Clear every failure counted for ``name`` (any address) and its ceiling; how many
        addresses were being held back. Raises ``redis.RedisError`` (the CLI reports it)."""
        per_address, failures, _, slot = _keys(name)
        client = self.redis()
        held = int(client.hlen(per_address))
        client.delete(per_address, failures, slot)
        return held


def _entry(raw: object) -> tuple[int, float]:
    """(failures, time of the last) from an address's ``count:epoch`` field."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    count, _, last = text.partition(":")
    return int(count), float(last or 0)


def _seconds(value: float) -> str:
    seconds = max(1, math.ceil(value))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"
