"""Rate limits in the Django cache (Redis when configured, so every process shares them).

`FixedWindow` counts attempts (logins, emails); `TokenBucket` paces repeated writes and
prices queries. When the shared cache cannot be reached (Redis down), limits fall back to
this process's memory with a logged warning: the database is the truth, and an outage of
the cache must not turn every write into an error.

A fixed window lets a client spend up to twice the limit across a window boundary; for
throttling logins and emails that is an acceptable price for one atomic `incr` per hit.
"""

import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from chat.coalesce import Coalescer
from chat.exceptions import RateLimited

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Used while the shared cache is unreachable.
_local = LocMemCache("ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
_WARN_EVERY = 30.0
_last_warning = 0.0


def cache_key(kind: str, name: str, subject: str) -> str:
    """A cache key for one limit and subject: subjects (emails, addresses) are hashed, so
    keys are short and reveal nothing."""
    return f"{kind}:{name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


def _resilient(operation: Callable[[BaseCache], T]) -> T:
    """`operation` on the shared cache, or on process memory when that is unreachable."""
    try:
        return operation(caches["default"])
    except (RedisError, OSError) as error:
        _fell_back(error)
        return operation(_local)


async def _aresilient(operation: Callable[[BaseCache], Awaitable[T]]) -> T:
    """`_resilient` for the event loop."""
    try:
        return await operation(caches["default"])
    except (RedisError, OSError) as error:
        _fell_back(error)
        return await operation(_local)


def _fell_back(error: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > _WARN_EVERY:
        _last_warning = now
        logger.warning("Rate limits use process memory: the shared cache failed (%s)", error)


@dataclass(frozen=True)
class FixedWindow:
    name: str
    limit: int
    window: int  # seconds

    def _key(self, subject: str, now: float) -> str:
        return f"{cache_key('rl', self.name, subject)}:{int(now // self.window)}"

    def _retry_after(self, now: float) -> int:
        return max(1, int(self.window - now % self.window))

    def count(self, subject: str) -> int:
        """Attempts counted for `subject` in the current window."""
        key = self._key(subject, time.time())
        return _resilient(lambda cache: cache.get(key)) or 0

    def check(self, subject: str) -> None:
        """Raise `RateLimited` when `subject` has used up this window, without counting."""
        now = time.time()
        if self.count(subject) >= self.limit:
            raise RateLimited(
                "Too many attempts. Try again later.", retry_after=self._retry_after(now)
            )

    def hit(self, subject: str) -> None:
        """Count one attempt, raising `RateLimited` when it goes over the limit."""
        now = time.time()
        key = self._key(subject, now)

        def incr(cache: BaseCache) -> int:
            cache.add(key, 0, timeout=self.window + 1)
            try:
                return cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=self.window + 1)
                return 1

        if _resilient(incr) > self.limit:
            raise RateLimited(
                "Too many attempts. Try again later.", retry_after=self._retry_after(now)
            )

    def reset(self, subject: str) -> None:
        key = self._key(subject, time.time())
        _resilient(lambda cache: cache.delete(key))


# GCRA in one round trip: the key holds the "theoretical arrival time" (TAT) of the next
# unit; a hit of `cost` units moves it `cost * interval` on, and is allowed while the TAT
# stays within `burst * interval` of now. The batched form charges several keys in order,
# each with its four arguments.
_CHARGE = """
local function charge(key, now, interval, span, cost)
  now, interval, span, cost = tonumber(now), tonumber(interval), tonumber(span), tonumber(cost)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval * cost
  if next_tat - span > now then return tostring(next_tat - span - now) end
  redis.call('SET', key, tostring(next_tat), 'PX', math.ceil((next_tat - now) * 1000) + 1000)
  return '0'
end
"""
_GCRA = _CHARGE + "return charge(KEYS[1], unpack(ARGV, 1, 4))"
_GCRA_BATCH = (
    _CHARGE
    + """
local waits = {}
for i, key in ipairs(KEYS) do
  local at = (i - 1) * 4
  waits[i] = charge(key, ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4])
end
return waits
"""
)
_local_lock = threading.Lock()


@dataclass(frozen=True)
class TokenBucket:
    """Allows `burst` units at once, then `per_second` units a second.

    Implemented as GCRA: one timestamp per subject, atomic on Redis (a Lua script, shared
    by every process) and under a lock in process memory for the embedded default.
    """

    name: str
    burst: int
    per_second: float

    def hit(self, subject: str, cost: int = 1) -> None:
        """Spend `cost` units, raising `RateLimited` (nothing spent) when over the rate."""
        args = self._arguments(subject, cost)
        _refuse_for(_resilient(lambda cache: _acquire(cache, *args)))

    async def ahit(self, subject: str, cost: int = 1) -> None:
        """`hit` for code on the event loop: Redis is awaited, so other sockets go on."""
        args = self._arguments(subject, cost)
        _refuse_for(await _aresilient(lambda cache: _aacquire(cache, *args)))

    def _arguments(self, subject: str, cost: int) -> tuple[str, float, float, float, int]:
        interval = 1 / self.per_second
        return (
            cache_key("tb", self.name, subject),
            time.time(),
            interval,
            self.burst * interval,
            cost,
        )


def _refuse_for(wait: float) -> None:
    if wait > 0:
        raise RateLimited(
            "You are doing that too fast. Try again shortly.",
            retry_after=max(1, math.ceil(wait)),
        )


def _acquire(
    cache: BaseCache, key: str, now: float, interval: float, span: float, cost: int
) -> float:
    """Seconds to wait before `cost` units fit, or 0 after spending them."""
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(key)
        client = cache._cache.get_client(full_key, write=True)
        return float(client.eval(_GCRA, 1, full_key, now, interval, span, cost))
    with _local_lock:
        tat = max(cache.get(key) or now, now)
        next_tat = tat + interval * cost
        if next_tat - span > now:
            return next_tat - span - now
        cache.set(key, next_tat, timeout=math.ceil(next_tat - now) + 1)
        return 0.0


async def _aacquire(
    cache: BaseCache, key: str, now: float, interval: float, span: float, cost: int
) -> float:
    """`_acquire` from the event loop. On `server.cache.RedisCache` (what the settings
    configure for Redis) the charge is awaited, in a batch; process memory has nothing to
    wait for."""
    async_client = getattr(cache, "async_client", None)
    if async_client is None:
        return _acquire(cache, key, now, interval, span, cost)
    client = async_client()
    batch = _batches.get(client)
    if batch is None:
        batch = _batches[client] = _charges(client)
    return await batch.call((cache.make_and_validate_key(key), (now, interval, span, cost)))


def _charges(client: Any) -> Coalescer[tuple[str, tuple[float, float, float, int]], float]:
    """Charges asked for while a batch is on its way to Redis go out together in the next
    one (`chat.coalesce`): in a reconnect storm thousands of subscribes each charge the
    query budget at once."""
    script = client.register_script(_GCRA_BATCH)

    async def send(batch: list[tuple[str, tuple[float, float, float, int]]]) -> list[float]:
        keys = [key for key, _ in batch]
        arguments = [value for _, values in batch for value in values]
        return [float(wait) for wait in await script(keys=keys, args=arguments)]

    return Coalescer(send)


_batches: "weakref.WeakKeyDictionary[Any, Coalescer]" = weakref.WeakKeyDictionary()


def limit(name: str) -> TokenBucket:
    """The bucket settings configure for `name` (`<NAME>_RATE_BURST`, `..._PER_SECOND`)."""
    prefix = name.upper()
    return TokenBucket(
        name,
        getattr(settings, f"{prefix}_RATE_BURST"),
        getattr(settings, f"{prefix}_RATE_PER_SECOND"),
    )


def hit(name: str, subject: Any, cost: int = 1) -> None:
    """Spend from the `name` bucket of `subject` (a user, or any string)."""
    limit(name).hit(str(getattr(subject, "pk", subject)), cost)


async def ahit(name: str, subject: Any, cost: int = 1) -> None:
    """`hit` for code on the event loop."""
    await limit(name).ahit(str(getattr(subject, "pk", subject)), cost)


@dataclass(frozen=True)
class GrowingDelay:
    """Slows guessing without locking anyone out: after `free` failures for a subject in
    `window` seconds, the next attempt must wait 1 s after the last failure, then 2 s,
    4 s ... up to `ceiling`. (Read-modify-write: concurrent failures may count as one,
    which only ever makes it gentler.)"""

    name: str
    free: int
    ceiling: int
    window: int

    def check(self, subject: str) -> None:
        name = cache_key("gd", self.name, subject)
        count, last = _resilient(lambda cache: cache.get(name)) or (0, 0.0)
        if count <= self.free:
            return
        wait = last + min(2 ** (count - self.free - 1), self.ceiling) - time.time()
        if wait > 0:
            raise RateLimited(
                "Too many failed attempts. Try again later.", retry_after=max(1, math.ceil(wait))
            )

    def fail(self, subject: str) -> None:
        name = cache_key("gd", self.name, subject)

        def record(cache: BaseCache) -> None:
            count, _ = cache.get(name) or (0, 0.0)
            cache.set(name, (count + 1, time.time()), timeout=self.window)

        _resilient(record)


@dataclass(frozen=True)
class Remembered:
    """A set of subjects remembered for `ttl` seconds (addresses a user signed in from)."""

    name: str
    ttl: int

    def add(self, subject: str) -> None:
        name = cache_key("rm", self.name, subject)
        _resilient(lambda cache: cache.set(name, 1, timeout=self.ttl))

    def __contains__(self, subject: str) -> bool:
        name = cache_key("rm", self.name, subject)
        return bool(_resilient(lambda cache: cache.get(name)))
