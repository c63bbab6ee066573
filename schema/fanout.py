"""One channel-layer listener per group per process, and frames written once per query.

Channels' own way is one group membership per socket: a message to a room of N sockets
is N queue puts and N consumer wake-ups, and for GraphQL N subscription pipelines
(generator hops, execution, result extensions, JSON encoding). Here a process joins each
group once and hands every event to the subscriptions listening to it (`Listener`s).

An event a live subscription renders the same way for everyone (a new message it can take
in order, an edit, typing, a read receipt, presence) is written straight to its socket when
the subscription is idle: the selection is executed and encoded once per distinct query
(see `schema.execution`), and frames differ only by operation id. Everything else goes
through the subscription's own generator, in order: the replay, gaps, membership changes,
a result with errors, and any event that arrives while the subscription is still busy
with an earlier one.

Typing indicators lapse here too, once per chat per process: when one is not renewed in
time, the feed delivers `typing: false` as if it had been published.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import get_channel_layer

from schema.execution import event_selection

logger = logging.getLogger(__name__)

# The one event with an order to keep: written directly only when it is the next `seq`.
MESSAGE_ADDED = "message_added"
TYPING_CHANGED = "typing_changed"
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
        return (self.query, self.operation_name, *selection.key(self.variables, viewer))


# Set by the WebSocket protocol handlers (server.consumers) in each operation's task.
current_sink: ContextVar[Sink | None] = ContextVar("current_sink", default=None)


class Position(Protocol):
    last_seq: int


class Listener:
    """One subscription's view of the groups it listens to.

    Events wait in `queue` for the subscription's generator. Once `sink` is set (the
    subscription is live), an event of `direct_events` that the hub can deliver without
    breaking the subscription's order skips the queue.
    """

    def __init__(
        self,
        render: Callable[[dict[str, Any]], Any],
        *,
        direct_events: frozenset[str] = frozenset({MESSAGE_ADDED}),
        wants: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Where the subscription is in each chat it follows, by chat id.
        self.positions: dict[str, Position] = {}
        # Builds the subscription's root value for an event of `direct_events`.
        self.render = render
        self.direct_events = direct_events
        # Which events the subscription hears at all (None: every one).
        self.wants = wants
        self.sink: Sink | None = None
        # The groups the hub has this listener in.
        self.groups: set[str] = set()
        self._waiting = False
        self._key: tuple | None = None

    def go_live(self) -> None:
        """From now on, take events directly (when run by a WebSocket protocol handler)."""
        self.sink = current_sink.get()

    async def next(self) -> dict[str, Any]:
        """The next event for the generator."""
        self._waiting = True
        try:
            return await self.queue.get()
        finally:
            self._waiting = False

    @property
    def idle(self) -> bool:
        """Waiting for an event, with none queued: the generator has sent all it got."""
        return self._waiting and self.queue.empty()

    def takes_directly(self, message: dict[str, Any]) -> bool:
        """Whether writing `message` now keeps this subscription's order: it is idle, and
        a new message is the next `seq` it expects."""
        if self.sink is None or not self.idle or message["event"] not in self.direct_events:
            return False
        if message["event"] == MESSAGE_ADDED:
            data = message["data"]
            position = self.positions.get(data["chat_id"])
            if position is None or position.last_seq != data["seq"] - 1:
                return False
        return self.sink.is_open()

    def group_key(self, sink: Sink) -> tuple:
        if self._key is None:
            self._key = sink.group_key()
        return self._key


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
                self.joined.set_exception(error)
            raise
        self.joined.set_result(None)
        try:
            while True:
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
        stopped = {**started, "data": {**started["data"], "typing": False, "expires_in": 0}}
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

    async def add(self, listener: Listener, group: str) -> None:
        """Listen to `group`; on return, every event sent to it from now on is heard."""
        feed = self.feeds.get(group)
        if feed is None or feed.task.done():
            feed = self.feeds[group] = _Feed(self, group)
            self._renew_groups()
        feed.listeners.add(listener)
        listener.groups.add(group)
        try:
            await asyncio.shield(feed.joined)
        except BaseException:
            self.remove(listener, group)
            raise

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
        try:
            for group in groups:
                await self.add(listener, group)
            yield
        finally:
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
                listener.queue.put_nowait(message)
                self.queued += 1
        for group in direct.values():
            first, first_sink = group[0]
            try:
                payload = await _payload(first_sink, first.render(message))
            except Exception:
                # Each subscription's generator then runs (and reports) it for itself.
                logger.exception("Could not execute a shared event for %s", feed.group)
                payload = None
            for listener, sink in group:
                # Checked again: the execution may have let the subscription move on.
                if payload is None or not listener.takes_directly(message):
                    listener.queue.put_nowait(message)
                    self.queued += 1
                    continue
                if message["event"] == MESSAGE_ADDED:
                    data = message["data"]
                    listener.positions[data["chat_id"]].last_seq = data["seq"]
                self.written += 1
                try:
                    await sink.send_text(f"{sink.prefix}{payload}}}")
                except Exception:
                    # The socket is going away; its subscription ends with it.
                    logger.debug("Could not write to %s", sink.operation_id, exc_info=True)
                if self.written % WRITES_PER_TURN == 0:
                    await asyncio.sleep(0)

    def _renew_groups(self) -> None:
        """On layers whose groups expire (channels-redis lists, in-memory), join again
        well before they do, so a subscription open for days keeps hearing its chats."""
        expiry = getattr(self.layer, "group_expiry", None)
        if expiry and (self._renewing is None or self._renewing.done()):
            self._renewing = asyncio.create_task(self._renew_forever(expiry / 4))

    async def _renew_forever(self, interval: float) -> None:
        while self.feeds:
            await asyncio.sleep(interval)
            for feed in list(self.feeds.values()):
                if feed.channel is not None and feed.joined.done():
                    with contextlib.suppress(Exception):
                        await self.layer.group_add(feed.group, feed.channel)


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
