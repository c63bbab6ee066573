"""Fixed-window counters in the Django cache (Redis when configured, so every process
shares them).

A fixed window lets a client spend up to twice the limit across a window boundary; for
throttling logins and emails that is an acceptable price for one atomic `incr` per hit.
"""

import hashlib
import math
import threading
import time
from dataclasses import dataclass

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from chat.exceptions import RateLimited


@dataclass(frozen=True)
class FixedWindow:
    name: str
    limit: int
    window: int  # seconds

    def _key(self, subject: str, now: float) -> str:
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
        return f"rl:{self.name}:{digest}:{int(now // self.window)}"

    def _retry_after(self, now: float) -> int:
        return max(1, int(self.window - now % self.window))

    def check(self, subject: str) -> None:
        """Raise `RateLimited` when `subject` has used up this window, without counting."""
        now = time.time()
        if (cache.get(self._key(subject, now)) or 0) >= self.limit:
            raise RateLimited(
                "Too many attempts. Try again later.", retry_after=self._retry_after(now)
            )

    def hit(self, subject: str) -> None:
        """Count one attempt, raising `RateLimited` when it goes over the limit."""
        now = time.time()
        key = self._key(subject, now)
        cache.add(key, 0, timeout=self.window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=self.window + 1)
            count = 1
        if count > self.limit:
            raise RateLimited(
                "Too many attempts. Try again later.", retry_after=self._retry_after(now)
            )

    def reset(self, subject: str) -> None:
        cache.delete(self._key(subject, time.time()))


# GCRA in one round trip: the key holds the "theoretical arrival time" of the next event.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
if now < tat - tolerance then return tostring(tat - tolerance - now) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], tostring(next_tat), 'PX', math.ceil((next_tat - now) * 1000) + 1000)
return '0'
"""
_local_lock = threading.Lock()


@dataclass(frozen=True)
class TokenBucket:
    """Allows `burst` events at once, then one every `1 / per_second` seconds.

    Implemented as GCRA: one timestamp per subject, atomic on Redis (a Lua script, shared
    by every process) and under a lock in process memory for the embedded default.
    """

    name: str
    burst: int
    per_second: float

    def hit(self, subject: str) -> None:
        """Count one event, raising `RateLimited` (nothing counted) when over the rate."""
        interval = 1 / self.per_second
        tolerance = (self.burst - 1) * interval
        key = f"tb:{self.name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"
        wait = self._acquire(key, time.time(), interval, tolerance)
        if wait > 0:
            raise RateLimited(
                "You are sending too fast. Try again shortly.", retry_after=max(1, math.ceil(wait))
            )

    def _acquire(self, key: str, now: float, interval: float, tolerance: float) -> float:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            full_key = backend.make_and_validate_key(key)
            client = backend._cache.get_client(full_key, write=True)
            return float(client.eval(_GCRA, 1, full_key, now, interval, tolerance))
        with _local_lock:
            tat = max(backend.get(key) or now, now)
            if now < tat - tolerance:
                return tat - tolerance - now
            backend.set(key, tat + interval, timeout=math.ceil(tat + interval - now) + 1)
            return 0.0
