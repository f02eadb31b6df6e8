from typing import Any

import redis

from conveyor.runtime.checks import redis_eviction_problem


def test_eviction_policy_other_than_noeviction_is_reported(settings: Any) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        client.config_set("maxmemory-policy", "noeviction")
        assert redis_eviction_problem(client) is None
        client.config_set("maxmemory-policy", "allkeys-lru")
        problem = redis_eviction_problem(client)
        assert problem is not None and "allkeys-lru" in problem and "noeviction" in problem
    finally:
        client.config_set("maxmemory-policy", before)
