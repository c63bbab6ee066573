"""Django's Redis cache backend, with one connection pool and one client per process.

Under ASGI, Django builds its cache objects per request context, and each
`RedisCacheClient` opens its own connection pool: every request that touched the cache
(every sendMessage, through the rate limiter) opened a new TCP connection to Redis. Here
the clients of one process share their pools (redis-py's pools are thread-safe and notice
a fork), and the `redis.Redis` objects over them: Django builds a new one for every cache
call, which cost more CPU than the call's round trip (a third of a rate-limit hit).
"""

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_pools: dict[tuple[str, ...], dict[int, Any]] = {}
_clients: dict[tuple[str, ...], dict[int, Any]] = {}


class SharedPoolRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._pools = _pools.setdefault(tuple(servers), {})
        self._clients = _clients.setdefault(tuple(servers), {})

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)
            client = self._clients[index] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient
