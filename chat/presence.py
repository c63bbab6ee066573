"""Who is online: a user is online while at least one of their sockets holds a live lease.

Each socket takes a lease when it connects and renews it every `PRESENCE_HEARTBEAT`
seconds; a lease not renewed for `PRESENCE_TTL` seconds has expired. Closing a socket drops
its lease at once, but nothing relies on that: a process killed with `kill -9` runs no
disconnect code, so every process also sweeps expired leases every
`PRESENCE_SWEEP_INTERVAL` seconds and reports those users offline. Several tabs are several
leases of one user: online on the first, offline after the last.

With REDIS_URL the leases live in Redis (one sorted set of connection -> expiry per user,
plus one index of all leases by expiry), changed by Lua scripts so that "came online" and
"went offline" are decided atomically across processes, exactly once. Without it they live
in this process's memory, which is all the embedded default has.

The database mirrors the outcome: `User.last_seen_at` is null while a user is online and
the time they went offline otherwise, so other processes (the push worker) can tell who is
online from one query, whatever the lease store. `reconcile` repairs the mirror after a
crash that left users marked online with no lease.
"""

import asyncio
import logging
import time
import weakref
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from chat import events
from chat.models import Membership, User

logger = logging.getLogger(__name__)


class Leases(Protocol):
    async def hold(self, user_id: str, connection: str) -> bool:
        """Take or renew a lease; True when the user thereby came online."""

    async def release(self, user_id: str, connection: str) -> bool:
        """Drop a lease; True when the user thereby went offline."""

    async def sweep(self) -> list[str]:
        """Drop expired leases; the users who thereby went offline."""

    async def online(self, user_ids: list[str]) -> set[str]: ...

    async def count(self, user_id: str) -> int:
        """The user's live leases: their open sockets, across processes."""


class MemoryLeases:
    def __init__(self) -> None:
        self._leases: dict[str, dict[str, float]] = {}

    def _live(self, user_id: str, now: float) -> dict[str, float]:
        leases = self._leases.get(user_id, {})
        return {c: exp for c, exp in leases.items() if exp > now}

    async def hold(self, user_id: str, connection: str) -> bool:
        now = time.time()
        was_online = bool(self._live(user_id, now))
        self._leases.setdefault(user_id, {})[connection] = now + settings.PRESENCE_TTL
        return not was_online

    async def release(self, user_id: str, connection: str) -> bool:
        leases = self._leases.get(user_id, {})
        if leases.pop(connection, None) is None:
            return False
        if not self._live(user_id, time.time()):
            self._leases.pop(user_id, None)
            return True
        return False

    async def sweep(self) -> list[str]:
        now, gone = time.time(), []
        for user_id, leases in list(self._leases.items()):
            live = {c: exp for c, exp in leases.items() if exp > now}
            if not live:
                del self._leases[user_id]
                gone.append(user_id)
            elif len(live) != len(leases):
                self._leases[user_id] = live
        return gone

    async def online(self, user_ids: list[str]) -> set[str]:
        now = time.time()
        return {u for u in user_ids if self._live(u, now)}

    async def count(self, user_id: str) -> int:
        return len(self._live(user_id, time.time()))


# KEYS: user's leases, the expiry index. ARGV: now, expiry, connection, index member.
_HOLD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local was_online = redis.call('ZCARD', KEYS[1]) > 0
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.ceil(ARGV[2] * 1000))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
if was_online then return 0 end
return 1
"""
_RELEASE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
if removed == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
"""
# KEYS: the expiry index. ARGV: now, key prefix for users' leases, batch size.
_SWEEP = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local gone = {}
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  local user = string.sub(member, 1, sep - 1)
  local key = ARGV[2] .. user
  redis.call('ZREM', key, string.sub(member, sep + 1))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) == 0 then gone[user] = true end
end
local users = {}
for user, _ in pairs(gone) do table.insert(users, user) end
return users
"""


class RedisLeases:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        # A bounded pool that waits for a free connection: thousands of sockets renewing
        # their leases must queue, not fail with "Too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=settings.PRESENCE_REDIS_CONNECTIONS,
            timeout=settings.PRESENCE_TTL,
            socket_connect_timeout=settings.REDIS_TIMEOUT,
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._user_prefix = f"{prefix}:presence:user:"
        self._index = f"{prefix}:presence:expiry"

    async def hold(self, user_id: str, connection: str) -> bool:
        now = time.time()
        came_online = await self._redis.eval(
            _HOLD,
            2,
            self._user_prefix + user_id,
            self._index,
            now,
            now + settings.PRESENCE_TTL,
            connection,
            f"{user_id}|{connection}",
        )
        return bool(came_online)

    async def release(self, user_id: str, connection: str) -> bool:
        went_offline = await self._redis.eval(
            _RELEASE,
            2,
            self._user_prefix + user_id,
            self._index,
            time.time(),
            connection,
            f"{user_id}|{connection}",
        )
        return bool(went_offline)

    async def sweep(self) -> list[str]:
        return list(
            await self._redis.eval(_SWEEP, 1, self._index, time.time(), self._user_prefix, 500)
        )

    async def online(self, user_ids: list[str]) -> set[str]:
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(self._user_prefix + user_id, now, "+inf")
            counts = await pipe.execute()
        return {u for u, count in zip(user_ids, counts, strict=True) if count}

    async def count(self, user_id: str) -> int:
        return await self._redis.zcount(self._user_prefix + user_id, time.time(), "+inf")


_redis_leases: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisLeases]" = (
    weakref.WeakKeyDictionary()
)
_memory_leases = MemoryLeases()


def leases() -> Leases:
    """The lease store: Redis when configured (a client per event loop, since a client
    belongs to the loop that made it), else this process's memory."""
    if not settings.REDIS_URL:
        return _memory_leases
    loop = asyncio.get_running_loop()
    if loop not in _redis_leases:
        _redis_leases[loop] = RedisLeases(settings.REDIS_URL, settings.CHANNEL_LAYER_PREFIX)
    return _redis_leases[loop]


async def socket_opened(user: User, connection: str) -> None:
    if await leases().hold(str(user.id), connection):
        await User.objects.filter(pk=user.pk).aupdate(last_seen_at=None)
        await _announce(user, online=True)


async def socket_alive(user: User, connection: str) -> None:
    """Renew the socket's lease (a heartbeat). Announces the user online again if their
    lease had been swept meanwhile (a stalled process)."""
    await socket_opened(user, connection)


async def socket_closed(user: User, connection: str) -> None:
    if await leases().release(str(user.id), connection):
        await _went_offline(user)


async def sweep() -> None:
    """Report the users whose last lease expired (their process died) offline."""
    gone = await leases().sweep()
    if gone:
        async for user in User.objects.filter(pk__in=gone):
            await _went_offline(user)


async def reconcile(batch: int = 500) -> int:
    """Mark offline the users the database has online but no lease holds (their process
    died, or in the embedded default this process restarted); returns how many."""
    fixed, after = 0, None
    while True:
        page = User.objects.filter(last_seen_at__isnull=True).order_by("pk")
        if after is not None:
            page = page.filter(pk__gt=after)
        ids = [str(pk) async for pk in page.values_list("pk", flat=True)[:batch]]
        if not ids:
            return fixed
        after = ids[-1]
        online = await leases().online(ids)
        stale = [pk for pk in ids if pk not in online]
        if stale:
            fixed += await User.objects.filter(pk__in=stale, last_seen_at__isnull=True).aupdate(
                last_seen_at=timezone.now()
            )


async def socket_count(user: User) -> int:
    return await leases().count(str(user.id))


async def online_user_ids(user_ids: list) -> set[str]:
    return await leases().online([str(u) for u in user_ids])


async def _went_offline(user: User) -> None:
    await User.objects.filter(pk=user.pk).aupdate(last_seen_at=timezone.now())
    await _announce(user, online=False)


async def _announce(user: User, *, online: bool) -> None:
    # Only to chats small enough: in a room of N members, N people connecting would
    # otherwise cost N * N deliveries. Bigger rooms ask `onlineUsers` instead.
    chat_ids = [
        chat_id
        async for chat_id in Membership.objects.filter(
            user=user, chat__member_count__lte=settings.PRESENCE_ROOM_LIMIT
        ).values_list("chat_id", flat=True)
    ]
    await events.presence_changed(user, online=online, chat_ids=chat_ids)
