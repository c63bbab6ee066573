"""One channel-layer listener per group per process, and frames written once per query.

Channels' own way is one group membership per socket: a message to a room of N sockets
is N queue puts and N consumer wake-ups, and for GraphQL N subscription pipelines
(generator hops, execution, result extensions, JSON encoding). Here a process joins each
group once and hands every event to the subscriptions listening to it (`Listener`s).

An event a live subscription renders the same way for everyone (a new message it can take
in order, an edit, typing, a read receipt, presence) is written straight to its socket when
the subscription is idle: the selection is executed and encoded once per distinct query
(see `schema.execution`), and frames differ only by operation id. Such an event that
arrives while the subscription is busy, and a replayed change that renders alike, is
written the same way by the generator itself, in its turn (`write_through`,
`write_replayed`). The rest goes through the generator's own execution, in order: gaps,
membership changes, a result with errors.

Typing indicators lapse here too, once per chat per process: when one is not renewed in
time, the feed delivers `typing: false` as if it had been published.

Channel layers deliver at most once, and Redis pub/sub drops whatever is published while
a process is cut off from it. So the hub probes the layer every
`CHANNEL_LAYER_PROBE_INTERVAL` seconds; while it fails, and once more when it works again,
every subscription is told to `resync`: to catch up from the database, which holds every
change in order (`chat.models.Change`). A subscription whose queue overflows is told the
same, instead of holding events without limit.
"""

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from chat import cancellation, events, metrics
from schema.execution import event_selection

_DIRECT = metrics.DELIVERIES.labels("direct")
_QUEUED = metrics.DELIVERIES.labels("queued")
logger = logging.getLogger(__name__)

MESSAGE_ADDED = "message_added"
TYPING_CHANGED = "typing_changed"
# Tells a subscription to catch up from the database (events may have been lost).
RESYNC = "resync"
# Where a message keeps its payloads, by group key, once rendered for some subscription.
RENDERED = "rendered"
# Events a subscription may have waiting before they are dropped for a resync.
QUEUE_LIMIT = 1000
# Frames written before letting the event loop run other work: a message to a room of
# thousands would otherwise hold up every other socket and request until it is written.
WRITES_PER_TURN = 256


@dataclass(eq=False)
class Sink:
    """One subscription operation on one socket, as its protocol handler frames it."""

    operation_id: str
    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    context: Any
    schema: Any
    # The frame's start, up to the payload: `{"id":"1","type":"next","payload":`.
    prefix: str
    send_text: Callable[[str], Awaitable[None]]
    # False once the operation is completed or replaced (its id reused).
    is_open: Callable[[], bool]
    encode_json: Callable[[Any], str] = json.dumps

    def group_key(self) -> tuple:
        """Sinks with equal keys get the same payload for the same event."""
        selection = event_selection(self.query, self.operation_name)
        viewer = getattr(getattr(self.context, "user", None), "pk", None)
        return (
            self.query,
            self.operation_name,
            *selection.key(self.variables, viewer),
            # Not the URL window: the key is kept per listener, and each delivery's
            # execution is keyed on the window at that moment (`schema.execution`).
            getattr(self.context, "media_base", ""),
        )


# Set by the WebSocket protocol handlers (server.consumers) in each operation's task.
current_sink: ContextVar[Sink | None] = ContextVar("current_sink", default=None)


class Position(Protocol):
    """Where a subscription is in one chat: the last seq or revision it sent."""

    last: int


def _new_messages(message: dict[str, Any]) -> bool:
    return message["event"] == MESSAGE_ADDED


def _seq(message: dict[str, Any]) -> int | None:
    return message["data"]["seq"] if message["event"] == MESSAGE_ADDED else None


class Mailbox:
    """The part of `asyncio.Queue` a listener uses, for its one reader, without the four
    deques (3 KB) a Queue allocates up front: most subscriptions sit idle while the hub
    writes their events directly (bench/socket_memory.py). Its one deque is let go once
    drained, so an idle socket holds none."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[dict[str, Any]] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: dict[str, Any]) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> dict[str, Any]:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._take(self._items)

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take(self._items)

    def _take(self, items: collections.deque[dict[str, Any]]) -> dict[str, Any]:
        item = items.popleft()
        if not items:
            self._items = None
        return item


class Listener:
    """One subscription's view of the groups it listens to.

    Events wait in `queue` for the subscription's generator. Once `sink` is set (the
    subscription is live), an event that `direct` accepts and that the hub can deliver
    without breaking the subscription's order skips the queue. `order` gives an event's
    place in its chat (None for events with no order): such an event is written directly
    only when it is the very next one.
    """

    def __init__(
        self,
        render: Callable[[dict[str, Any]], Any],
        *,
        direct: Callable[[dict[str, Any]], bool] = _new_messages,
        order: Callable[[dict[str, Any]], int | None] = _seq,
        wants: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.queue = Mailbox()
        # Where the subscription is in each chat it follows, by chat id.
        self.positions: dict[str, Position] = {}
        # Builds the subscription's root value for an event `direct` accepts.
        self.render = render
        self.direct = direct
        self.order = order
        # Which events the subscription hears at all (None: every one).
        self.wants = wants
        self.sink: Sink | None = None
        # The groups the hub has this listener in.
        self.groups: set[str] = set()
        self._waiting = False
        self._resync_queued = False
        self._key: tuple | None = None

    def go_live(self) -> None:
        """From now on, take events directly (when run by a WebSocket protocol handler)."""
        self.sink = current_sink.get()

    async def next(self) -> dict[str, Any]:
        """The next event for the generator."""
        self._waiting = True
        try:
            message = await self.queue.get()
        finally:
            self._waiting = False
        if message["event"] == RESYNC:
            self._resync_queued = False
        return message

    def put(self, message: dict[str, Any]) -> None:
        """Queue an event for the generator. Past `QUEUE_LIMIT` the queue is dropped for a
        resync: what mattered in it is in the database."""
        if self.queue.qsize() >= QUEUE_LIMIT:
            logger.warning("A subscription fell %d events behind: resyncing it", QUEUE_LIMIT)
            while not self.queue.empty():
                self.queue.get_nowait()
            self._resync_queued = False
            self.resync()
        self.queue.put_nowait(message)

    def resync(self) -> None:
        """Have the generator catch up from the database (once, however often asked)."""
        if not self._resync_queued:
            self._resync_queued = True
            self.queue.put_nowait(
                {"type": events.EVENT_MESSAGE_TYPE, "group": None, "event": RESYNC, "data": {}}
            )

    @property
    def waiting(self) -> bool:
        """The generator waits for its next event (whether or not one is queued)."""
        return self._waiting

    @property
    def idle(self) -> bool:
        """Waiting for an event, with none queued: the generator has sent all it got."""
        return self._waiting and self.queue.empty()

    def takes_directly(self, message: dict[str, Any]) -> bool:
        """Whether writing `message` now keeps this subscription's order: it is idle, and
        an ordered event is the next one it expects."""
        return self.idle and self._in_order(message)

    def _in_order(self, message: dict[str, Any]) -> bool:
        if self.sink is None or not self.direct(message):
            return False
        place = self.order(message)
        if place is not None:
            position = self.positions.get(message["data"]["chat_id"])
            if position is None or position.last != place - 1:
                return False
        return self.sink.is_open()

    def advance(self, message: dict[str, Any]) -> None:
        """Record that `message` was written directly."""
        place = self.order(message)
        if place is not None:
            self.positions[message["data"]["chat_id"]].last = place

    def group_key(self, sink: Sink) -> tuple:
        if self._key is None:
            self._key = sink.group_key()
        return self._key

    async def write_through(self, message: dict[str, Any]) -> bool:
        """Write `message`, taken from the queue by the generator, as the hub writes to
        idle subscriptions: when it is the next one in order, with the payload rendered
        once per distinct query for every subscription that gets it (kept on the message).
        False when the generator must yield it itself.

        After a reconnect storm thousands of subscriptions are busy catching up when each
        new message arrives; executing it once per subscription kept one process saturated
        for minutes (bench/reconnect.py)."""
        sink = self.sink
        if sink is None or not self._in_order(message):
            return False
        payload = await _render_once(message, self.group_key(sink), sink, self.render)
        # Checked again: rendering may have let the subscription move on.
        if payload is None or not self._in_order(message):
            return False
        await self.write(sink, payload, message)
        return True

    async def write(self, sink: Sink, payload: str, message: dict[str, Any]) -> None:
        """Write `payload` as this subscription's frame for `message`, and move on."""
        self.advance(message)
        await _send(sink, payload)

    async def write_replayed(
        self, rendered: dict[tuple, str | None], root: Callable[[], Any]
    ) -> bool:
        """Write a change the generator replays from the database as `write_through` writes
        a live one: executed once per distinct query for every subscription replaying the
        same change (`rendered`, kept with the rows that subscriptions share: the read of
        `schema.replays`). False when the generator must yield it itself.

        Called by the generator between two of its own events, which are sent before it
        runs on, so the order holds. After a reconnect storm thousands of sockets replay
        the same changes; executing each once per socket made the storm's CPU grow with
        its own length (bench/reconnect.py)."""
        sink = self.sink or current_sink.get()
        if sink is None or not sink.is_open():
            return False
        payload = await _render_shared(rendered, self.group_key(sink), sink, root)
        if payload is None:
            return False
        await _send(sink, payload)
        return True


class _Feed:
    """The process's membership of one group, and the listeners it serves."""

    def __init__(self, hub: "Hub", group: str) -> None:
        self.hub = hub
        self.group = group
        self.listeners: set[Listener] = set()
        self.channel: str | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(), name=f"fanout {group}")
        # Who is typing, by user id: the timer that announces it lapsed.
        self.typing: dict[str, asyncio.TimerHandle] = {}
        self._lapses: set[asyncio.Task] = set()

    async def _run(self) -> None:
        layer = self.hub.layer
        try:
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
        except BaseException as error:
            if not self.joined.done():
                if isinstance(error, asyncio.CancelledError):
                    self.joined.cancel()  # not an error nobody retrieves
                else:
                    self.joined.set_exception(error)
            raise
        self.hub.answered()
        self.joined.set_result(None)
        try:
            while True:
                cancellation.check()  # a cancellation lost while joining
                try:
                    message = await layer.receive(self.channel)
                except Exception:
                    if self.task.cancelling():
                        # Stopped while redis-py's read timed out: it reports the
                        # cancellation as a TimeoutError, and the loop must still end.
                        raise asyncio.CancelledError from None
                    # The layer reconnects by itself; what is lost meanwhile, subscriptions
                    # backfill from the database at the next message.
                    logger.exception("Could not receive from %s", self.group)
                    await asyncio.sleep(1)
                    continue
                self.hub.answered()
                if message.get("event") == TYPING_CHANGED:
                    self._track_typing(message)
                await self._deliver(message)
        finally:
            for timer in self.typing.values():
                timer.cancel()
            with contextlib.suppress(Exception):
                await layer.group_discard(self.group, self.channel)

    async def _deliver(self, message: dict[str, Any]) -> None:
        try:
            await self.hub.deliver(self, message)
        except Exception:
            logger.exception("Could not deliver %s to %s", message.get("event"), self.group)

    def _track_typing(self, message: dict[str, Any]) -> None:
        data = message["data"]
        user_id = data["user"]["id"]
        if (timer := self.typing.pop(user_id, None)) is not None:
            timer.cancel()
        if data["typing"]:
            self.typing[user_id] = asyncio.get_running_loop().call_later(
                data["expires_in"], self._lapse, message
            )

    def _lapse(self, started: dict[str, Any]) -> None:
        """A typing indicator was not renewed in time: tell everyone it stopped."""
        self.typing.pop(started["data"]["user"]["id"], None)
        # A new event: not the started one's payloads (`RENDERED`).
        stopped = {k: v for k, v in started.items() if k != RENDERED}
        stopped["data"] = {**started["data"], "typing": False, "expires_in": 0}
        task = asyncio.create_task(self._deliver(stopped))
        self._lapses.add(task)
        task.add_done_callback(self._lapses.discard)


class Hub:
    """The feeds of one event loop (one per process under daphne)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.feeds: dict[str, _Feed] = {}
        # Deliveries written straight to sockets, and handed to generators (diagnostics).
        self.written = 0
        self.queued = 0
        self._renewing: asyncio.Task | None = None
        self._watching: asyncio.Task | None = None
        # False while the layer fails its probe (see the module's docstring); `outages`
        # counts how often it went down, for sockets to re-check what they may have missed.
        self.layer_ok = True
        self.outages = 0
        # When this process last heard from the layer (the loop's clock): a message, or a
        # command's reply (`answered`). Proof it is alive.
        self.heard = 0.0
        # The probe's own channel, listened to for as long as the hub watches the layer,
        # and the probes waiting to hear themselves on it, by nonce.
        self._probe_channel: str | None = None
        self._probe_listener: asyncio.Task | None = None
        self._probes: dict[str, asyncio.Future[None]] = {}

    async def add(self, listener: Listener, group: str) -> None:
        """Listen to `group`; on return, every event sent to it from now on is heard."""
        feed = self.feeds.get(group)
        if feed is None or feed.task.done():
            feed = self.feeds[group] = _Feed(self, group)
            self._renew_groups()
            self._watch_layer()
        feed.listeners.add(listener)
        listener.groups.add(group)
        try:
            await asyncio.shield(feed.joined)
        except BaseException:
            self.remove(listener, group)
            raise

    def hears(self, listener: "Listener | Any", group: str) -> bool:
        """Whether `listener` hears everything sent to `group` now: it is in the group's
        feed, the feed has joined and still runs, and no layer outage may be losing
        events."""
        feed = self.feeds.get(group)
        return (
            self.layer_ok
            and feed is not None
            and listener in feed.listeners
            and feed.joined.done()
            and not feed.joined.cancelled()
            and feed.joined.exception() is None
            and not feed.task.done()
        )

    def answered(self) -> None:
        """Note that the layer just answered this process (see `_probe`)."""
        self.heard = asyncio.get_running_loop().time()

    def remove(self, listener: Listener, group: str) -> None:
        listener.groups.discard(group)
        feed = self.feeds.get(group)
        if feed is None:
            return
        feed.listeners.discard(listener)
        if not feed.listeners:
            del self.feeds[group]
            feed.task.cancel()

    @contextlib.asynccontextmanager
    async def listening(self, listener: Listener, groups: Iterable[str]) -> AsyncIterator[None]:
        """In `groups` (and any the listener is `add`ed to meanwhile) until the block ends."""
        metrics.SUBSCRIPTIONS.inc()
        try:
            for group in groups:
                await self.add(listener, group)
            yield
        finally:
            metrics.SUBSCRIPTIONS.dec()
            for group in list(listener.groups):
                self.remove(listener, group)

    async def deliver(self, feed: _Feed, message: dict[str, Any]) -> None:
        listeners = [x for x in feed.listeners if x.wants is None or x.wants(message)]
        direct: dict[tuple, list[tuple[Listener, Sink]]] = {}
        for listener in listeners:
            sink = listener.sink
            if sink is not None and listener.takes_directly(message):
                direct.setdefault(listener.group_key(sink), []).append((listener, sink))
            else:
                listener.put(message)
                self.queued += 1
        for key, group in direct.items():
            first, first_sink = group[0]
            payload = await _render_once(message, key, first_sink, first.render)
            for listener, sink in group:
                # Checked again: the execution may have let the subscription move on.
                if payload is None or not listener.takes_directly(message):
                    listener.put(message)
                    self.queued += 1
                    _QUEUED.inc()
                    continue
                self.written += 1
                await listener.write(sink, payload, message)
                if self.written % WRITES_PER_TURN == 0:
                    await asyncio.sleep(0)

    def resync(self) -> None:
        """Tell every subscription of this process to catch up from the database."""
        for listener in {x for feed in self.feeds.values() for x in feed.listeners}:
            listener.resync()

    def _watch_layer(self) -> None:
        # The in-memory layer cannot lose events; Redis can.
        if isinstance(self.layer, InMemoryChannelLayer):
            return
        if self._watching is None or self._watching.done():
            self._watching = asyncio.create_task(self._watch_forever())

    async def _watch_forever(self) -> None:
        """Probe the layer; resync everyone while it fails and once it works again."""
        interval = settings.CHANNEL_LAYER_PROBE_INTERVAL
        try:
            await self._watch(interval)
        finally:
            if self._probe_listener is not None:
                self._probe_listener.cancel()

    async def _watch(self, interval: float) -> None:
        while self.feeds:
            cancellation.check()
            await asyncio.sleep(interval)
            ok = await self._probe(interval)
            if ok is None:
                # Too busy to tell: polling the database for every subscription now would
                # only make this process busier (a reconnect storm turned into a flood
                # of catch-up queries this way). An outage shows on a later probe.
                logger.info("Channel layer probe inconclusive: this process is saturated")
                ok = self.layer_ok
            if ok and not self.layer_ok:
                logger.warning("Channel layer back: subscriptions catch up")
            if not ok or not self.layer_ok:
                self.resync()
            self.layer_ok = ok

    async def _probe(self, interval: float) -> bool | None:
        """Whether the layer works both ways; None when the probe timed out but that
        proves nothing: this process's event loop was too slow to hear back, or the
        layer was busy, not gone.

        The loop counts as too slow when its timers ran late for a quarter of the probe
        in all: a loop saturated by thousands of short turns is late by little on each
        timer, yet the probe's reply needs several of those turns to be read. The layer
        counts as busy when it answered this process meanwhile (a feed received, a socket
        joined a group): in a reconnect storm the probe waits behind thousands of this
        process's own commands, while a partitioned or stopped Redis answers nothing."""
        loop = asyncio.get_running_loop()
        tick = min(0.05, interval / 10)
        late = 0.0
        started = loop.time()

        async def watch_the_loop() -> None:
            nonlocal late
            while True:
                started = loop.time()
                await asyncio.sleep(tick)
                late += max(0.0, loop.time() - started - tick)

        watcher = asyncio.create_task(watch_the_loop())
        try:
            await asyncio.wait_for(self._round_trip(), timeout=interval)
            return True
        except Exception as error:
            if isinstance(error, TimeoutError) and (late > interval / 4 or self.heard > started):
                return None
            metrics.LAYER_ERRORS.labels("probe").inc()
            if self.layer_ok:
                self.outages += 1
                logger.warning("Channel layer lost (%r): subscriptions poll", error)
            return False
        finally:
            watcher.cancel()

    async def _round_trip(self) -> None:
        """Send to the probe's channel and hear it back (as `events.round_trip`), on a
        channel the hub keeps listening to. Listening anew for each probe subscribed
        anew on Redis pub/sub, and in a reconnect storm that subscription waited behind
        the thousands the new sockets made: the probe timed out, an outage by mistake."""
        if self._probe_listener is None or self._probe_listener.done():
            self._probe_channel = await self.layer.new_channel("probe.")
            self._probe_listener = asyncio.create_task(self._hear_probes(self._probe_channel))
        nonce = uuid.uuid4().hex
        heard = self._probes[nonce] = asyncio.get_running_loop().create_future()
        try:
            await events.send_until_heard(self.layer, self._probe_channel, nonce, heard)
            heard.result()
        finally:
            self._probes.pop(nonce, None)

    async def _hear_probes(self, channel: str) -> None:
        try:
            while True:
                cancellation.check()
                message = await self.layer.receive(channel)
                heard = self._probes.get(message.get("nonce"))
                if heard is not None and not heard.done():
                    heard.set_result(None)
        except Exception as error:
            # The probes waiting fail with it (and report it); the next listens anew.
            for heard in self._probes.values():
                if not heard.done():
                    heard.set_exception(error)

    def _renew_groups(self) -> None:
        """On layers whose groups expire (channels-redis lists, in-memory), join again
        well before they do, so a subscription open for days keeps hearing its chats."""
        expiry = getattr(self.layer, "group_expiry", None)
        if expiry and (self._renewing is None or self._renewing.done()):
            self._renewing = asyncio.create_task(self._renew_forever(expiry / 4))

    async def _renew_forever(self, interval: float) -> None:
        while self.feeds:
            cancellation.check()
            await asyncio.sleep(interval)
            for feed in list(self.feeds.values()):
                if feed.channel is not None and feed.joined.done():
                    with contextlib.suppress(Exception):
                        await self.layer.group_add(feed.group, feed.channel)


async def _render_once(
    message: dict[str, Any], key: tuple, sink: Sink, render: Callable[[dict[str, Any]], Any]
) -> str | None:
    """The payload of `message` for subscriptions with group `key`, executed once and kept
    on the message; None when it failed (each generator then runs and reports it)."""
    return await _render_shared(
        message.setdefault(RENDERED, {}), key, sink, lambda: render(message)
    )


async def _render_shared(
    rendered: dict[tuple, str | None], key: tuple, sink: Sink, root: Callable[[], Any]
) -> str | None:
    """The payload for subscriptions with group `key`, executed once and kept in
    `rendered`; None when it failed (each generator then runs and reports it)."""
    if key not in rendered:
        try:
            rendered[key] = await _payload(sink, root())
        except Exception:
            logger.exception("Could not execute a shared event for %s", sink.operation_id)
            rendered[key] = None
    return rendered[key]


async def _send(sink: Sink, payload: str) -> None:
    _DIRECT.inc()
    try:
        await sink.send_text(f"{sink.prefix}{payload}}}")
    except Exception:
        # The socket is going away; its subscription ends with it.
        logger.debug("Could not write to %s", sink.operation_id, exc_info=True)


async def _payload(sink: Sink, root: Any) -> str | None:
    """The encoded `{"data": ...}` of the sink's operation for one event, or None when the
    result has errors (the generator then reports them its usual way)."""
    result = await sink.schema.execute(
        sink.query,
        variable_values=sink.variables,
        context_value=sink.context,
        root_value=root,
        operation_name=sink.operation_name,
    )
    if result.errors or result.extensions:
        return None
    return sink.encode_json({"data": result.data})


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (tests run one loop per test; a gone loop keeps none)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        _hubs.clear()
        found = _hubs[loop] = Hub(get_channel_layer())
    return found
