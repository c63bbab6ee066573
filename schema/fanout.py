"""One channel-layer listener per group per process, and frames written once per query.

Channels' own way is one group membership per socket: a message to a room of N sockets
is N queue puts and N consumer wake-ups, and for GraphQL N subscription pipelines
(generator hops, execution, result extensions, JSON encoding). Here a process joins each
group once and hands every event to the subscriptions listening to it (`Listener`s).

A new message that a live subscription can take in order (the next `seq`, nothing of its
own pending) is written straight to its socket: the selection is executed and encoded
once per distinct query (see `schema.execution`), and frames differ only by operation id.
Everything else goes through the subscription's own generator, in order: the replay,
gaps, edits, typing, membership changes, a result with errors, and any message that
arrives while the subscription is still busy with an earlier event.
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

# The only event written straight to sockets: by far the most frequent, and the one whose
# order (`seq`) a subscription can check without running.
DIRECT_EVENT = "message_added"


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
    subscription is live), a message the hub can deliver in order skips the queue.
    """

    def __init__(self, render: Callable[[dict[str, Any]], Any]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Where the subscription is in each chat it follows, by chat id.
        self.positions: dict[str, Position] = {}
        # Builds the subscription's root value for a `message_added` payload.
        self.render = render
        self.sink: Sink | None = None
        # The groups the hub has this listener in.
        self.groups: set[str] = set()
        self._waiting = False
        self._key: tuple | None = None

    def go_live(self) -> None:
        """From now on, take in-order messages directly (when on a WebSocket handler)."""
        self.sink = current_sink.get()

    async def next(self, deadline: float | None = None) -> dict[str, Any] | None:
        """The next event for the generator, or None when `deadline` (loop time) passes."""
        self._waiting = True
        try:
            if deadline is None:
                return await self.queue.get()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                return await asyncio.wait_for(self.queue.get(), max(0.0, remaining))
            except TimeoutError:
                return None
        finally:
            self._waiting = False

    @property
    def idle(self) -> bool:
        """Waiting for an event, with none queued: the generator has sent all it got."""
        return self._waiting and self.queue.empty()

    def takes_directly(self, data: dict[str, Any]) -> bool:
        """Whether writing `data` (a message payload) now keeps this subscription's order:
        it is idle and the message is the next `seq` it expects."""
        if self.sink is None or not self.idle:
            return False
        position = self.positions.get(data["chat_id"])
        return (
            position is not None and position.last_seq == data["seq"] - 1 and self.sink.is_open()
        )

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
                try:
                    await self.hub.deliver(self, message)
                except Exception:
                    logger.exception(
                        "Could not deliver %s to %s", message.get("event"), self.group
                    )
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(self.group, self.channel)


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
        listeners = list(feed.listeners)
        if message.get("event") != DIRECT_EVENT:
            for listener in listeners:
                listener.queue.put_nowait(message)
            self.queued += len(listeners)
            return
        data = message["data"]
        direct: dict[tuple, list[tuple[Listener, Sink]]] = {}
        for listener in listeners:
            sink = listener.sink
            if sink is not None and listener.takes_directly(data):
                direct.setdefault(listener.group_key(sink), []).append((listener, sink))
            else:
                listener.queue.put_nowait(message)
                self.queued += 1
        for group in direct.values():
            first, first_sink = group[0]
            try:
                payload = await _payload(first_sink, first.render(data))
            except Exception:
                # Each subscription's generator then runs (and reports) it for itself.
                logger.exception("Could not execute a shared event for %s", feed.group)
                payload = None
            for listener, sink in group:
                # Checked again: the execution may have let the subscription move on.
                if payload is None or not listener.takes_directly(data):
                    listener.queue.put_nowait(message)
                    self.queued += 1
                    continue
                listener.positions[data["chat_id"]].last_seq = data["seq"]
                self.written += 1
                try:
                    await sink.send_text(f"{sink.prefix}{payload}}}")
                except Exception:
                    # The socket is going away; its subscription ends with it.
                    logger.debug("Could not write to %s", sink.operation_id, exc_info=True)

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
