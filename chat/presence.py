"""Who is online: a user is online while at least one of their sockets holds a live lease.

Each socket takes a lease when it connects; the process renews all of its sockets' leases
together every `PRESENCE_HEARTBEAT` seconds (`renew`, one round trip per 500 sockets); a
lease not renewed for `PRESENCE_TTL` seconds has expired. Closing a socket drops its lease
at once, but nothing relies on that: a process killed with `kill -9` runs no disconnect
code and renews nothing, so every process also sweeps expired leases every
`PRESENCE_SWEEP_INTERVAL` seconds and reports those users offline. Several tabs are several
leases of one user: online on the first, offline after the last.

With REDIS_URL the leases live in Redis (one sorted set of connection -> expiry per user,
plus one index of all leases by expiry), changed by Lua scripts so that "came online" and
"went offline" are decided atomically across processes, exactly once. Without it they live
in this process's memory, which is all the embedded default has.

The database mirrors the outcome: `User.last_seen_at` is null while a user is online and
the time they went offline otherwise, so other processes (the push worker) can tell who is
online from one query, whatever the lease store. Transitions are written, and announced to
the users' chats, in batches (`PRESENCE_FLUSH_DELAY`): after a deploy thousands of users
come online within seconds, and one UPDATE and one membership query per batch is what
keeps reconnecting cheap. `reconcile` repairs the mirror after a crash that left users
marked online with no lease.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from chat import events
from chat.coalesce import Coalescer
from chat.models import Membership, User

logger = logging.getLogger(__name__)

# A lease refused because the user already holds `cap` of them (`hold`).
OVER_CAP = -1
RENEW_BATCH = 500


class Leases(Protocol):
    async def hold(self, user_id: str, connection: str, cap: int | None = None) -> int:
        """Take or renew a lease: 1 when the user thereby came online, 0 when they were
        online already, `OVER_CAP` (and nothing taken) when they hold `cap` already."""

    async def renew(self, held: list[tuple[str, str]]) -> list[str]:
        """Renew many (user, connection) leases; the users who thereby came online again
        (their leases had expired meanwhile: a stalled process)."""

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

    async def hold(self, user_id: str, connection: str, cap: int | None = None) -> int:
        now = time.time()
        live = self._live(user_id, now)
        if cap is not None and len(live) >= cap and connection not in live:
            return OVER_CAP
        self._leases.setdefault(user_id, {})[connection] = now + settings.PRESENCE_TTL
        return 0 if live else 1

    async def renew(self, held: list[tuple[str, str]]) -> list[str]:
        came = []
        for user_id, connection in held:
            if await self.hold(user_id, connection) == 1:
                came.append(user_id)
        return came

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


# KEYS: the expiry index. ARGV: now, expiry, key prefix for users' leases, then user,
# connection and cap triples (cap 0: none), taken in order. Per triple: 1 when the user
# thereby came online, 0 when they were online already, -1 (nothing taken) at their cap.
_HOLD = """
local out = {}
local at = math.ceil(ARGV[2] * 1000)
for i = 4, #ARGV, 3 do
  local key = ARGV[3] .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  local held = redis.call('ZCARD', key)
  local cap = tonumber(ARGV[i + 2])
  if cap > 0 and held >= cap and not redis.call('ZSCORE', key, ARGV[i + 1]) then
    out[#out + 1] = -1
  else
    redis.call('ZADD', key, ARGV[2], ARGV[i + 1])
    redis.call('PEXPIREAT', key, at)
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i] .. '|' .. ARGV[i + 1])
    if held > 0 then out[#out + 1] = 0 else out[#out + 1] = 1 end
  end
end
return out
"""
# KEYS: the expiry index. ARGV: now, expiry, key prefix for users' leases, then user and
# connection pairs.
_RENEW = """
local came = {}
local at = math.ceil(ARGV[2] * 1000)
for i = 4, #ARGV, 2 do
  local key = ARGV[3] .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) == 0 then table.insert(came, ARGV[i]) end
  redis.call('ZADD', key, ARGV[2], ARGV[i + 1])
  redis.call('PEXPIREAT', key, at)
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i] .. '|' .. ARGV[i + 1])
end
return came
"""
# KEYS: the expiry index. ARGV: now, key prefix for users' leases, then user and
# connection pairs. Per pair: 1 when the user thereby went offline, else 0.
_RELEASE = """
local out = {}
for i = 3, #ARGV, 2 do
  local key = ARGV[2] .. ARGV[i]
  local removed = redis.call('ZREM', key, ARGV[i + 1])
  redis.call('ZREM', KEYS[1], ARGV[i] .. '|' .. ARGV[i + 1])
  out[#out + 1] = 0
  if removed == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
    if redis.call('ZCARD', key) == 0 then out[#out] = 1 end
  end
end
return out
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

        # A bounded pool that waits for a free connection: thousands of sockets connecting
        # at once must queue, not fail with "Too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=settings.PRESENCE_REDIS_CONNECTIONS,
            timeout=settings.PRESENCE_TTL,
            socket_connect_timeout=settings.REDIS_TIMEOUT,
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("hold", _HOLD),
                ("renew", _RENEW),
                ("release", _RELEASE),
                ("sweep", _SWEEP),
            )
        }
        self._user_prefix = f"{prefix}:presence:user:"
        self._index = f"{prefix}:presence:expiry"
        # Sockets opening or closing while a call is on its way share the next one: a
        # reconnect storm takes thousands of leases at once (`chat.coalesce`).
        self._holds = Coalescer(self._hold_many)
        self._releases = Coalescer(self._release_many)

    async def hold(self, user_id: str, connection: str, cap: int | None = None) -> int:
        return await self._holds.call((user_id, connection, cap or 0))

    async def _hold_many(self, holds: list[tuple[str, str, int]]) -> list[int]:
        now = time.time()
        args: list[object] = [now, now + settings.PRESENCE_TTL, self._user_prefix]
        for triple in holds:
            args.extend(triple)
        return [int(x) for x in await self._scripts["hold"]([self._index], args)]

    async def renew(self, held: list[tuple[str, str]]) -> list[str]:
        now = time.time()
        args: list[object] = [now, now + settings.PRESENCE_TTL, self._user_prefix]
        for pair in held:
            args.extend(pair)
        return list(await self._scripts["renew"]([self._index], args))

    async def release(self, user_id: str, connection: str) -> bool:
        return await self._releases.call((user_id, connection))

    async def _release_many(self, releases: list[tuple[str, str]]) -> list[bool]:
        args: list[object] = [time.time(), self._user_prefix]
        for pair in releases:
            args.extend(pair)
        return [bool(x) for x in await self._scripts["release"]([self._index], args)]

    async def sweep(self) -> list[str]:
        args = [time.time(), self._user_prefix, 500]
        return list(await self._scripts["sweep"]([self._index], args))

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


# This process's leases (connection -> the user, and their id as Redis keys spell it: the
# heartbeat sends it for every socket), renewed together by `renew`.
_held: dict[str, tuple[User, str]] = {}


async def socket_opened(user: User, connection: str, *, cap: int | None = None) -> bool:
    """Take the socket's lease; False (and no lease) when the user already holds `cap`.
    The lease is this process's to renew from now on, even when taking it failed (Redis
    down): the next `renew` takes it then."""
    user_id = str(user.id)
    _held[connection] = (user, user_id)
    taken = await leases().hold(user_id, connection, cap)
    if taken == OVER_CAP:
        _held.pop(connection, None)
        return False
    if taken == 1:
        _changed(user, online=True)
    return True


async def socket_closed(user: User, connection: str) -> None:
    _held.pop(connection, None)
    if await leases().release(str(user.id), connection):
        _changed(user, online=False)


async def renew() -> int:
    """Renew every lease this process holds (the heartbeat), in batches of `RENEW_BATCH`;
    users whose leases had expired meanwhile (a stalled process) are online again."""
    held = list(_held.items())
    for start in range(0, len(held), RENEW_BATCH):
        batch = held[start : start + RENEW_BATCH]
        users = {user_id: user for _, (user, user_id) in batch}
        came = await leases().renew([(user_id, connection) for connection, (_, user_id) in batch])
        for user_id in came:
            _changed(users[user_id], online=True)
    return len(held)


async def sweep() -> None:
    """Report the users whose last lease expired (their process died) offline."""
    gone = await leases().sweep()
    if gone:
        async for user in User.objects.filter(pk__in=gone):
            _changed(user, online=False)


async def reconcile(batch: int = 500) -> int:
    """Mark offline the users the database has online but no lease holds (their process
    died, or in the embedded default this process restarted); returns how many."""
    await flush()
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


# Transitions waiting to be written: user id -> (user, when they went offline, or None
# for online). A later transition of the same user replaces an earlier one: only where
# they ended up is written.
_pending: dict[str, tuple[User, datetime | None]] = {}
# Transitions waiting to be announced: user id -> (user, online).
_unannounced: dict[str, tuple[User, bool]] = {}
# Users gone offline whose going is announced only if they are still offline when
# `PRESENCE_OFFLINE_GRACE` is over: user id -> (user, when it is over).
_leaving: dict[str, tuple[User, float]] = {}
_flushes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.TimerHandle]" = (
    weakref.WeakKeyDictionary()
)
# One timer per loop, for the first grace to end (graces end in the order they began).
_graces: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.TimerHandle]" = (
    weakref.WeakKeyDictionary()
)
_flushing: set[asyncio.Task] = set()


def _changed(user: User, *, online: bool) -> None:
    user_id = str(user.id)
    _pending[user_id] = (user, None if online else timezone.now())
    loop = asyncio.get_running_loop()
    if online:
        # Back within the grace (a reconnect, a page reload): nobody saw them go.
        if _leaving.pop(user_id, None) is None:
            _unannounced[user_id] = (user, True)
    elif _unannounced.pop(user_id, None) is None:
        grace = settings.PRESENCE_OFFLINE_GRACE
        _leaving[user_id] = (user, time.monotonic() + grace)
        _watch_grace(loop)
    if loop not in _flushes:
        delay = settings.PRESENCE_FLUSH_DELAY
        _flushes[loop] = loop.call_later(delay, _start_flush, loop, True)


def _watch_grace(loop: asyncio.AbstractEventLoop) -> None:
    """Flush when the first pending grace is over; a timer per leaving user was a flush
    per user, each reading every pending one (quadratic in a storm)."""
    if loop in _graces or not _leaving:
        return
    _, over = next(iter(_leaving.values()))
    _graces[loop] = loop.call_later(max(0.0, over - time.monotonic()), _grace_over, loop)


def _grace_over(loop: asyncio.AbstractEventLoop) -> None:
    _graces.pop(loop, None)
    _start_flush(loop)


def _start_flush(loop: asyncio.AbstractEventLoop, scheduled: bool = False) -> None:
    if scheduled:
        _flushes.pop(loop, None)
    task = loop.create_task(flush())
    _flushing.add(task)
    task.add_done_callback(_flushing.discard)


async def drain() -> None:
    """Write and announce everything pending now, graces cut short, and wait for flushes
    already running: nothing of this loop's presence touches the database afterwards (a
    test's teardown truncating the tables deadlocked with a flush in flight)."""
    loop = asyncio.get_running_loop()
    for timers in (_flushes, _graces):
        if (handle := timers.pop(loop, None)) is not None:
            handle.cancel()
    for user_id, (user, _) in list(_leaving.items()):
        _leaving[user_id] = (user, 0.0)
    await asyncio.gather(*(t for t in _flushing if t.get_loop() is loop), return_exceptions=True)
    await flush()


async def flush() -> None:
    """Write and announce what is pending now: one UPDATE for those who came online, one
    for those who went offline (each at the time they did), one membership query for the
    announcements. A user is announced offline once their grace is over, if no lease
    (on any process) holds them by then."""
    batch = list(_pending.values())
    _pending.clear()
    announce = list(_unannounced.values())
    _unannounced.clear()
    now, left = time.monotonic(), {}
    for user_id, (user, over) in _leaving.items():
        if over > now:
            break  # the rest began later
        left[user_id] = user
    for user_id in left:
        del _leaving[user_id]
    _watch_grace(asyncio.get_running_loop())
    try:
        online = [user.pk for user, gone_at in batch if gone_at is None]
        offline = [User(pk=user.pk, last_seen_at=gone_at) for user, gone_at in batch if gone_at]
        if online:
            await User.objects.filter(pk__in=online).aupdate(last_seen_at=None)
        if offline:
            await User.objects.abulk_update(offline, ["last_seen_at"])
        if left:
            back = await leases().online(list(left))
            announce += [(user, False) for user_id, user in left.items() if user_id not in back]
        if announce:
            await _announce(announce)
    except Exception:
        logger.exception("Could not record %d presence changes", len(batch) + len(announce))


async def _announce(batch: Iterable[tuple[User, bool]]) -> None:
    # Only to chats small enough: in a room of N members, N people connecting would
    # otherwise cost N * N deliveries. Bigger rooms ask `onlineUsers` instead.
    users = {user.pk: (user, online) for user, online in batch}
    chats: dict[object, list] = {}
    async for user_id, chat_id in Membership.objects.filter(
        user__in=list(users), chat__member_count__lte=settings.PRESENCE_ROOM_LIMIT
    ).values_list("user_id", "chat_id"):
        chats.setdefault(user_id, []).append(chat_id)
    for user_id, (user, online) in users.items():
        await events.presence_changed(user, online=online, chat_ids=chats.get(user_id, []))
