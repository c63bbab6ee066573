"""Signing in with a bearer token: from this process's cache while it hears revocations
(`chat.tokencache`), else from the database.

The first token check on an event loop starts listening to `SESSIONS_CHANGED_GROUP`
through the loop's fan-out hub, in the background: a request never waits for the channel
layer, and until the hub has joined the group (or while the layer is down) every check
goes to the database, as it did before the cache.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import AsyncToSync, sync_to_async
from django.utils import timezone

from chat import auth, events, tokencache
from chat.models import AuthToken, User
from schema import fanout

logger = logging.getLogger(__name__)

# User columns a cached row leaves out, and a user built from one loads only if asked:
# the password hash (token sign-ins never need it; it is most of a row's size) and when
# the user was last seen (presence writes it in bulk, without the save that would evict
# the row, so a cached copy could be stale).
_DEFERRED = ("password", "last_seen_at")


class _Revocations:
    """A fan-out listener that evicts the cache's entries for each user it is told of,
    and empties it whenever the hub resyncs (the layer failed: broadcasts may be lost)."""

    wants = None
    sink = None

    def __init__(self) -> None:
        self.groups: set[str] = set()

    def put(self, message: dict[str, Any]) -> None:
        if (user_id := message.get("user_id")) is not None:
            tokencache.forget_user(user_id)

    def resync(self) -> None:
        tokencache.cache().clear()


class _Listening:
    """The one listener of an event loop, and the task that joins it to the group."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listener = _Revocations()
        self.joining: asyncio.Task[None] | None = None

    def live(self) -> bool:
        try:
            hub = fanout.hub()
        except RuntimeError:  # no running loop: a sync caller
            return False
        return hub.layer is not None and hub.hears(self.listener, events.SESSIONS_CHANGED_GROUP)

    def ensure(self) -> None:
        if self.joining is None or (self.joining.done() and not self.live()):
            self.joining = self.loop.create_task(self._join())

    async def _join(self) -> None:
        hub = fanout.hub()
        if hub.layer is None:
            return
        try:
            await hub.add(self.listener, events.SESSIONS_CHANGED_GROUP)
        except Exception as error:
            # Tried again by the next check; meanwhile every check asks the database.
            logger.warning("Token cache off: could not hear revocations: %s", error)
            await asyncio.sleep(1)


_listening: _Listening | None = None


def _listen() -> bool:
    """Have this event loop hear revocations (tests run one loop each; a process, one);
    False for a loop that cannot: one run for a single call from sync code."""
    global _listening
    if getattr(AsyncToSync.executors, "current", None) is not None:
        # Django's test client, a management command: the loop ends with the call, and
        # a feed started on it could not outlive it.
        return False
    loop = asyncio.get_running_loop()
    if _listening is None or _listening.loop is not loop:
        if _listening is not None and _listening.joining is not None:
            _listening.joining.cancel()
        tokencache.cache().clear()
        _listening = _Listening(loop)
        tokencache.cache().live = _listening.live
    _listening.ensure()
    return True


async def authenticate(raw: str, *, before: Callable[[], None] | None = None) -> AuthToken | None:
    """The live token for `raw` with its user, or None. `before` runs in the database
    thread ahead of a lookup (the socket's connection check), and only then."""
    key = auth.hash_token(raw)
    cache = tokencache.cache()
    cached = bool(cache.size) and _listen()
    if cached and (row := cache.get(key)) is not None:
        return await _from_cache(key, row)
    mark = cache.mark()
    found = await sync_to_async(_lookup)(key, before)
    if found is None:
        return None
    token, row = found
    if cached:
        cache.put(key, _trimmed(row), token.user_id, mark)
    return token


def _lookup(key: str, before: Callable[[], None] | None) -> tuple[AuthToken, tuple] | None:
    if before is not None:
        before()
    return auth.lookup_token(key)


async def _from_cache(key: str, row: tuple) -> AuthToken | None:
    token = auth.build_token(row)
    for name in _DEFERRED:
        del token.user.__dict__[name]
    now = timezone.now()
    if token.expires_at <= now:
        return None
    if auth.stale(token, now):
        await sync_to_async(auth.touch_token)(token, now)
        tokencache.cache().replace(key, auth.touched_row(row, now))
    return token


def _trimmed(row: tuple) -> tuple:
    """The row without the `_DEFERRED` columns' values."""
    trimmed = list(row)
    for name in _DEFERRED:
        trimmed[auth.row_position(User, name)] = None
    return tuple(trimmed)
