"""The tokens this process checked recently, so that a request or a socket signing in with
one skips the database.

Every signed-in request and every `connection_init` looked its token up in PostgreSQL,
from a worker thread: a thread hop and a round trip each time, a sixth of a signed-in
request's CPU and the largest item in a reconnect storm (bench/RESULTS.md, issue 14).

A cached token must never outlive its revocation, so the cache answers only while it is
`live`: while this process hears the revocations every process broadcasts
(`server.tokens` wires that to the channel layer). What would make the token or its user
look different evicts the user's entries, here at once (`forget_user`, after the commit)
and in every other process when the broadcast arrives:
- a revocation: sign-out, password change or reset, the admin's action;
- any save of the user: a profile change, a deactivation.

A layer outage may lose broadcasts, so it empties the cache and keeps it off until the
layer is back. `AUTH_TOKEN_CACHE_SECONDS` bounds how long an entry is trusted anyway.

Entries are the database rows, not model instances: each caller builds its own, so no two
requests share a mutable `User`.
"""

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings


class TokenCache:
    """Rows of live tokens (with their users) by key hash, least recently used first."""

    def __init__(self, size: int, seconds: float) -> None:
        self.size, self.seconds = size, seconds
        self._rows: OrderedDict[str, tuple[Sequence[Any], float, str]] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        # Bumped by every eviction: a lookup that started before one must not be cached
        # (it may have read a row the eviction's commit has since revoked).
        self._evictions = 0
        # Whether revocations are heard: set by whoever wires the broadcast.
        self.live: Callable[[], bool] = lambda: False

    def mark(self) -> int:
        """Taken before a lookup; `put` refuses its row if anything was evicted since."""
        return self._evictions

    def get(self, key_hash: str) -> Sequence[Any] | None:
        if not self.size or not self.live():
            return None
        with self._lock:
            entry = self._rows.get(key_hash)
            if entry is None:
                return None
            row, stored, _user = entry
            if time.monotonic() - stored > self.seconds:
                self._drop(key_hash)
                return None
            self._rows.move_to_end(key_hash)
            return row

    def put(self, key_hash: str, row: Sequence[Any], user_id: uuid.UUID, mark: int) -> None:
        if not self.size or not self.live():
            return
        user = str(user_id)
        with self._lock:
            if mark != self._evictions:
                return
            self._drop(key_hash)
            self._rows[key_hash] = (row, time.monotonic(), user)
            self._by_user.setdefault(user, set()).add(key_hash)
            while len(self._rows) > self.size:
                self._drop(next(iter(self._rows)))

    def replace(self, key_hash: str, row: Sequence[Any]) -> None:
        """Keep an entry's row (a newer `last_used_at`), not its age."""
        with self._lock:
            entry = self._rows.get(key_hash)
            if entry is not None:
                self._rows[key_hash] = (row, entry[1], entry[2])

    def forget_user(self, user_id: uuid.UUID | str) -> None:
        with self._lock:
            self._evictions += 1
            for key_hash in self._by_user.pop(str(user_id), ()):
                self._rows.pop(key_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._evictions += 1
            self._rows.clear()
            self._by_user.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def _drop(self, key_hash: str) -> None:
        entry = self._rows.pop(key_hash, None)
        if entry is not None:
            hashes = self._by_user.get(entry[2])
            if hashes is not None:
                hashes.discard(key_hash)
                if not hashes:
                    del self._by_user[entry[2]]


_cache: TokenCache | None = None


def cache() -> TokenCache:
    """This process's cache (sized by the settings when first asked for)."""
    global _cache
    if _cache is None:
        _cache = TokenCache(settings.AUTH_TOKEN_CACHE_SIZE, settings.AUTH_TOKEN_CACHE_SECONDS)
    return _cache


def forget_user(user_id: uuid.UUID | str) -> None:
    if _cache is not None:
        _cache.forget_user(user_id)
