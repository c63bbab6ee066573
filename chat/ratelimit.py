"""Fixed-window counters in the Django cache (Redis when configured, so every process
shares them).

A fixed window lets a client spend up to twice the limit across a window boundary; for
throttling logins and emails that is an acceptable price for one atomic `incr` per hit.
"""

import hashlib
import time
from dataclasses import dataclass

from django.core.cache import cache

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
