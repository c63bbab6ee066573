"""The cache backends: Django's, with one Redis pool per process and an async API that
never blocks the event loop.

Under ASGI, Django builds its cache objects per request context, and each
`RedisCacheClient` opens its own connection pool: every request that touched the cache
(every sendMessage, through the rate limiter) opened a new TCP connection to Redis. Here
the clients of one process share their pools (redis-py's pools are thread-safe and notice
a fork), and the `redis.Redis` objects over them: Django builds a new one for every cache
call, which cost more CPU than the call's round trip (a third of a rate-limit hit).

Django's async cache methods (`aget`, `aset` ...) run the sync ones in the sync thread.
Code on the event loop (the query budget, persisted documents, typing) must not call the
sync ones, which would stall every socket of the process for a Redis round trip (for
`REDIS_TIMEOUT` when Redis hangs); and hopping to the sync thread queues it behind the
database work there. So the Redis backend answers them with redis-py's asyncio client,
and the in-memory one, which has nothing to wait for, answers them in place.
"""

import asyncio
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache as DjangoLocMemCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_pools: dict[tuple[str, ...], dict[int, Any]] = {}
_clients: dict[tuple[str, ...], dict[int, Any]] = {}
# An asyncio client belongs to the loop that made it: clients and scripts per loop.
_async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]]" = (
    weakref.WeakKeyDictionary()
)


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

    def async_client(self) -> aioredis.Redis:
        """This event loop's client of the server the cache writes to.

        Its pool is bounded and waits for a free connection (up to the socket timeout),
        so thousands of sockets subscribing at once queue for `CACHE_REDIS_CONNECTIONS`
        connections instead of opening one each.
        """
        state = _async.setdefault(asyncio.get_running_loop(), {})
        server = self._servers[0]
        client = state.get(server)
        if client is None:
            timeouts = {
                name: self._options[name]
                for name in ("socket_timeout", "socket_connect_timeout")
                if name in self._options
            }
            pool = aioredis.BlockingConnectionPool.from_url(
                server,
                max_connections=settings.CACHE_REDIS_CONNECTIONS,
                timeout=timeouts.get("socket_timeout"),
                **timeouts,
            )
            client = state[server] = aioredis.Redis(connection_pool=pool)
        return client

    def _command(
        self, key: Any, timeout: Any, version: int | None
    ) -> tuple[str, int | None, aioredis.Redis]:
        """A write's full key, the backend's timeout and this loop's client."""
        return (
            self.make_and_validate_key(key, version=version),
            self.get_backend_timeout(timeout),
            self.async_client(),
        )

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = await self.async_client().get(self.make_and_validate_key(key, version=version))
        return default if value is None else self._cache._serializer.loads(value)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (Django's signature)
        version: int | None = None,
    ) -> None:
        key, timeout, client = self._command(key, timeout, version)
        if timeout == 0:
            await client.delete(key)
        else:
            await client.set(key, self._cache._serializer.dumps(value), ex=timeout)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (Django's signature)
        version: int | None = None,
    ) -> bool:
        key, timeout, client = self._command(key, timeout, version)
        value = self._cache._serializer.dumps(value)
        if timeout == 0:  # as Django's: added and expired at once
            added = bool(await client.set(key, value, nx=True))
            if added:
                await client.delete(key)
            return added
        return bool(await client.set(key, value, ex=timeout, nx=True))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(await self.async_client().delete(key))


class LocMemCache(DjangoLocMemCache):
    """Process memory (the embedded default): the async API answers in place."""

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self.get(key, default, version)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (Django's signature)
        version: int | None = None,
    ) -> None:
        self.set(key, value, timeout, version)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (Django's signature)
        version: int | None = None,
    ) -> bool:
        return self.add(key, value, timeout, version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return self.delete(key, version)
