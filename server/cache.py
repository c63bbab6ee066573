"""Django's Redis cache backend, with one connection pool per process.

Under ASGI, Django builds its cache objects per request context, and each
`RedisCacheClient` opens its own connection pool: every request that touched the cache
(every sendMessage, through the rate limiter) opened a new TCP connection to Redis. Here
the clients of one process share their pools (redis-py's pools are thread-safe and notice
a fork).
"""

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_pools: dict[tuple[str, ...], dict[int, Any]] = {}


class SharedPoolRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._pools = _pools.setdefault(tuple(servers), {})


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient
