"""Start-up checks of the shared stores that would silently break guarantees."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)


def redis_eviction_problem(client: redis.Redis) -> str | None:
    """A message if Redis may evict keys: cancel flags, attempt counters, the event stream and
    (on a Redis broker) queued messages would vanish under memory pressure."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        return None  # CONFIG is disabled (managed Redis): nothing we can read
    if policy in (None, "noeviction"):
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: under memory pressure it deletes keys Conveyor "
        "relies on (event stream, cancel flags, queued messages). Set it to 'noeviction'."
    )


def warn_about_redis(client: redis.Redis) -> None:
    try:
        problem = redis_eviction_problem(client)
    except redis.RedisError:
        return
    if problem:
        log.warning("%s", problem)
