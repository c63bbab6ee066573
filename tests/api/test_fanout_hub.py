"""The fan-out hub on its own channel layer: group membership, order, and what makes two
subscriptions share a payload."""

import asyncio
import contextlib
import json
import os
import time
import uuid
from types import SimpleNamespace

import pytest
from channels.layers import InMemoryChannelLayer

from schema import fanout
from schema import schema as graphql_schema
from schema.events import MessageAdded, message_event, message_from
from schema.execution import event_selection

QUERY = """
subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) { ... on MessageAdded { message { seq body } } }
}
"""
CHAT = str(uuid.uuid4())
VIEWER = SimpleNamespace(pk=uuid.uuid4())


def payload(seq: int) -> dict:
    return {
        "revision": seq,
        "member_count": None,
        "id": str(uuid.uuid4()),
        "chat_id": CHAT,
        "seq": seq,
        "kind": "TEXT",
        "body": f"message {seq}",
        "author": None,
        "system_event": "",
        "subject": None,
        "client_id": None,
        "created_at": "2026-11-21T07:00:00+00:00",
        "edited_at": None,
        "deleted_at": None,
    }


def added(seq: int) -> dict:
    group = f"chat.{uuid.UUID(CHAT).hex}"
    return {"type": "chat.event", "group": group, "event": "message_added", "data": payload(seq)}


class Subscription:
    """A listener at `last_seq` in CHAT, with a sink collecting the frames written to it."""

    def __init__(self, last_seq: int, op_id: str = "1") -> None:
        self.frames: list[dict] = []
        self.listener = fanout.Listener(
            render=lambda message: message_event(
                MessageAdded, message_from(message["data"], VIEWER), message["data"]["revision"]
            )
        )
        self.listener.positions[CHAT] = SimpleNamespace(last=last_seq)

        async def send_text(text: str) -> None:
            self.frames.append(json.loads(text))

        self.listener.sink = fanout.Sink(
            operation_id=op_id,
            query=QUERY,
            operation_name=None,
            variables={"chatId": CHAT},
            context=SimpleNamespace(user=None),
            schema=graphql_schema,
            prefix=f'{{"id":"{op_id}","type":"next","payload":',
            send_text=send_text,
            is_open=lambda: True,
        )
        self.waiting: asyncio.Task | None = None

    def wait(self) -> None:
        """Idle, as a live generator is between events."""
        self.waiting = asyncio.create_task(self.listener.next())


def frame(seq: int, op_id: str = "1") -> dict:
    body = {"seq": seq, "body": f"message {seq}"}
    return {"id": op_id, "type": "next", "payload": {"data": {"chatEvents": {"message": body}}}}


@pytest.fixture
def hub():
    return fanout.Hub(InMemoryChannelLayer())


async def test_an_idle_listener_at_the_previous_seq_gets_the_frame_written(hub):
    first, second = Subscription(last_seq=4), Subscription(last_seq=4, op_id="7")
    first.wait()
    second.wait()
    await asyncio.sleep(0)

    await hub.deliver(
        SimpleNamespace(listeners={first.listener, second.listener}, group="g"), added(5)
    )

    assert first.frames == [frame(5)]
    assert second.frames == [frame(5, op_id="7")]
    assert first.listener.positions[CHAT].last == 5
    assert (hub.written, hub.queued) == (2, 0)


async def test_anything_that_could_break_the_order_is_queued_for_the_generator(hub):
    busy = Subscription(last_seq=4)  # not waiting: still sending an earlier event
    behind = Subscription(last_seq=3)  # seq 4 is missing: the generator backfills it
    pending = Subscription(last_seq=4)  # idle, but an earlier event is still queued
    pending.listener.queue.put_nowait({"event": "typing_changed"})
    not_live = Subscription(last_seq=4)  # replaying: no sink yet
    not_live.listener.sink = None
    for subscription in (behind, pending, not_live):
        subscription.wait()
    await asyncio.sleep(0)
    listeners = {s.listener for s in (busy, behind, pending, not_live)}

    await hub.deliver(SimpleNamespace(listeners=listeners), added(5))

    assert [s.frames for s in (busy, behind, pending, not_live)] == [[], [], [], []]
    assert busy.listener.queue.qsize() == 1
    assert (await behind.waiting)["data"]["seq"] == 5
    assert (await not_live.waiting)["data"]["seq"] == 5
    assert (await pending.waiting)["event"] == "typing_changed"
    assert pending.listener.queue.get_nowait()["data"]["seq"] == 5
    assert (hub.written, hub.queued) == (0, 4)


async def test_events_a_subscription_does_not_take_directly_go_through_its_generator(hub):
    idle = Subscription(last_seq=4)
    idle.wait()
    await asyncio.sleep(0)
    typing = {"type": "chat.event", "group": "g", "event": "typing_changed", "data": {}}

    await hub.deliver(SimpleNamespace(listeners={idle.listener}), typing)

    assert idle.frames == []
    assert await idle.waiting == typing


def _layer(kind: str):
    if kind == "memory":
        return InMemoryChannelLayer()
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL: runs in the PostgreSQL + Redis pass")
    prefix = f"test-{uuid.uuid4().hex}"
    if kind == "pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=[url], prefix=prefix)
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[url], prefix=prefix)


@pytest.mark.parametrize("kind", ["memory", "pubsub", "lists"])
async def test_every_listener_hears_a_group_through_one_channel_on_each_layer(kind):
    hub = fanout.Hub(_layer(kind))
    first, second = fanout.Listener(render=str), fanout.Listener(render=str)
    async with hub.listening(first, ["chat.both"]), hub.listening(second, ["chat.both"]):
        feed = hub.feeds["chat.both"]
        sent = asyncio.get_running_loop().time()
        await hub.layer.group_send("chat.both", {"type": "chat.event", "event": "hello"})
        heard = [await asyncio.wait_for(x.next(), 5) for x in (first, second)]
        assert hub.heard >= sent  # the layer's sign of life, for its probe
    # It leaves the group on its way out. On the list layer that can take until the
    # pending BRPOP times out (5 s): redis-py reports the cancellation as a timeout.
    await asyncio.wait([feed.task], timeout=15)
    if hasattr(hub.layer, "flush"):
        await hub.layer.flush()

    assert [m["event"] for m in heard] == ["hello", "hello"]
    assert feed.listeners == set()
    assert feed.task.done()
    assert hub.feeds == {}


class SwallowingLayer(InMemoryChannelLayer):
    """Loses a cancellation while joining a group, as a redis-py command can: it runs under
    `asyncio.wait_for`, which on Python 3.11 may swallow one."""

    async def group_add(self, group: str, channel: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        await super().group_add(group, channel)


async def test_a_feed_left_while_it_joins_ends_even_if_its_cancellation_is_lost():
    """It waited for the group's next message forever: a socket closed at once leaked the
    feed, and a test's event loop could not shut down (CI, issue 14)."""
    hub = fanout.Hub(SwallowingLayer())
    listener = fanout.Listener(render=str)
    adding = asyncio.create_task(hub.add(listener, "chat.left"))
    await asyncio.sleep(0.01)
    feed = hub.feeds["chat.left"]

    hub.remove(listener, "chat.left")
    await asyncio.wait([feed.task], timeout=2)

    assert feed.task.done()
    assert hub.feeds == {}
    await adding


async def test_a_process_joins_each_group_once_and_leaves_with_its_last_listener(hub):
    group = "chat.one"
    first, second = fanout.Listener(render=str), fanout.Listener(render=str)

    await hub.add(first, group)
    await hub.add(second, group)
    joined = set(hub.layer.groups[group])
    await hub.layer.group_send(group, {"type": "chat.event", "group": group, "event": "x"})
    heard = [await asyncio.wait_for(x.next(), 1) for x in (first, second)]
    hub.remove(first, group)
    still_there = group in hub.feeds
    hub.remove(second, group)
    await asyncio.sleep(0.05)

    assert len(joined) == 1
    assert [m["event"] for m in heard] == ["x", "x"]
    assert still_there
    assert group not in hub.feeds
    assert not hub.layer.groups.get(group)


async def test_groups_are_renewed_on_layers_where_they_expire():
    hub = fanout.Hub(InMemoryChannelLayer(group_expiry=1))
    listener = fanout.Listener(render=str)
    await hub.add(listener, "chat.long")

    await asyncio.sleep(1.6)  # past the expiry; renewed every quarter of it
    await hub.layer.group_send("chat.long", {"type": "chat.event", "event": "still here"})
    heard = await asyncio.wait_for(listener.next(), 1)
    hub.remove(listener, "chat.long")

    assert heard["event"] == "still here"


def test_root_field_arguments_do_not_change_what_an_event_renders():
    selection = event_selection(QUERY, None)

    assert selection.variables == frozenset()
    assert selection.key({"chatId": "a", "after": 1}, "viewer") == selection.key(
        {"chatId": "b"}, "someone else"
    )


def test_variables_below_the_root_field_and_email_do():
    query = """
    query Other { me { id } }
    subscription Events($chatId: ID!, $withAuthor: Boolean!) {
      chatEvents(chatId: $chatId) { ...Added }
    }
    fragment Added on MessageAdded {
      message { seq author @include(if: $withAuthor) { email } }
    }
    """
    selection = event_selection(query, "Events")

    assert selection.variables == frozenset({"withAuthor"})
    assert selection.viewer_dependent
    with_author = selection.key({"withAuthor": True}, "ada")
    assert with_author != selection.key({"withAuthor": False}, "ada")
    assert with_author != selection.key({"withAuthor": True}, "bo")


async def test_a_failing_shared_execution_hands_the_message_to_each_generator(hub, monkeypatch):
    async def failing(sink, root):
        raise RuntimeError("boom")

    monkeypatch.setattr(fanout, "_payload", failing)
    idle = Subscription(last_seq=4)
    idle.wait()
    await asyncio.sleep(0)

    await hub.deliver(SimpleNamespace(listeners={idle.listener}, group="g"), added(5))

    assert idle.frames == []
    assert (await idle.waiting)["data"]["seq"] == 5


async def test_typing_lapses_once_per_process_unless_renewed():
    hub = fanout.Hub(InMemoryChannelLayer())
    listener = fanout.Listener(render=str)
    group = "chat.typing"
    user = {"id": str(uuid.uuid4()), "display_name": "Ada", "joined_at": "2026-11-21"}

    def typing(on: bool) -> dict:
        data = {"chat_id": CHAT, "user": user, "typing": on, "expires_in": 0.3}
        return {"type": "chat.event", "group": group, "event": "typing_changed", "data": data}

    async with hub.listening(listener, [group]):
        await hub.layer.group_send(group, typing(True))
        await asyncio.sleep(0.2)
        await hub.layer.group_send(group, typing(True))  # renewed before it lapsed
        heard = [await asyncio.wait_for(listener.next(), 2) for _ in range(3)]
        quiet = listener.queue.empty()
        await asyncio.sleep(0.5)
        after_the_lapse = listener.queue.qsize()

    assert [m["data"]["typing"] for m in heard] == [True, True, False]
    assert heard[2]["data"]["user"] == user
    assert quiet
    assert after_the_lapse == 0


async def test_a_big_room_lets_other_work_run_while_its_frames_are_written(hub):
    subscriptions = [Subscription(last_seq=4) for _ in range(3 * fanout.WRITES_PER_TURN)]
    for subscription in subscriptions:
        subscription.wait()
    await asyncio.sleep(0)
    progress = []

    async def other_work() -> None:
        progress.append(sum(len(s.frames) for s in subscriptions))

    other = asyncio.create_task(other_work())
    listeners = {s.listener for s in subscriptions}
    await hub.deliver(SimpleNamespace(listeners=listeners, group="g"), added(5))
    await other

    assert all(s.frames == [frame(5)] for s in subscriptions)
    assert 0 < progress[0] < len(subscriptions)


async def test_a_listener_that_falls_too_far_behind_is_resynced_instead(hub):
    subscription = Subscription(last_seq=0)

    for seq in range(1, fanout.QUEUE_LIMIT + 2):
        await hub.deliver(
            SimpleNamespace(listeners={subscription.listener}, group="g"), added(seq)
        )

    queued = [subscription.listener.queue.get_nowait() for _ in range(2)]
    assert subscription.listener.queue.empty()
    assert [m["event"] for m in queued] == ["resync", "message_added"]
    assert queued[1]["data"]["seq"] == fanout.QUEUE_LIMIT + 1


async def test_resyncs_are_not_queued_twice(hub):
    listener = Subscription(last_seq=0).listener

    listener.resync()
    listener.resync()
    first = await listener.next()
    listener.resync()

    assert first["event"] == "resync"
    assert listener.queue.qsize() == 1


class FlakyLayer(InMemoryChannelLayer):
    """An in-memory layer whose sends fail while `down` (a Redis outage, as the hub sees
    it: the real one is stopped and started in tests/system/test_outages.py)."""

    down = False

    async def send(self, channel, message):
        if self.down:
            raise ConnectionError("Redis is down")
        await super().send(channel, message)


async def test_the_hub_resyncs_its_listeners_while_the_layer_fails_and_once_it_is_back(
    settings,
):
    settings.CHANNEL_LAYER_PROBE_INTERVAL = 0.1
    layer = FlakyLayer()
    hub = fanout.Hub(layer)
    listener = fanout.Listener(render=lambda message: None)
    resyncs = []
    listener.resync = lambda: resyncs.append(layer.down)

    async with hub.listening(listener, ["chat.a"]):
        # Started by hand: the hub does not probe in-memory layers, which cannot fail.
        hub._watching = asyncio.create_task(hub._watch_forever())
        await asyncio.sleep(0.35)
        healthy = list(resyncs)
        layer.down = True
        await asyncio.sleep(0.45)
        layer.down = False
        await asyncio.sleep(0.45)

    assert healthy == []
    # While down, every probe resyncs (the database is polled); once back, one more.
    assert resyncs.count(True) >= 2
    assert resyncs[-1] is False
    assert resyncs.count(False) == 1


class SilentLayer(InMemoryChannelLayer):
    """A layer that never answers (a partitioned Redis: no error, only silence)."""

    async def send(self, channel, message):
        await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("turn", "hogs", "saturated"),
    [
        (0.0, 0, False),
        # One long turn at a time.
        (0.1, 1, True),
        # A storm: many short turns, each timer late by less than a quarter of the probe
        # but late most of the time (this was taken for an outage).
        (0.005, 4, True),
    ],
)
async def test_a_probe_timeout_is_an_outage_unless_the_process_itself_is_saturated(
    settings, turn, hogs, saturated
):
    """Under a reconnect storm the event loop, not Redis, made the probe time out: every
    subscription then polled the database at once, which made the storm worse."""
    settings.CHANNEL_LAYER_PROBE_INTERVAL = 0.4
    hub = fanout.Hub(SilentLayer())

    async def hog() -> None:
        while True:
            time.sleep(turn)  # noqa: ASYNC251 - a loop kept busy `turn` at a time
            await asyncio.sleep(0)

    hogging = [asyncio.create_task(hog()) for _ in range(hogs)]
    try:
        outcome = await hub._probe(0.4)
    finally:
        for task in hogging:
            task.cancel()

    assert outcome is (None if saturated else False)
    assert hub.outages == (0 if saturated else 1)


async def test_a_probe_timeout_is_no_outage_while_the_layer_delivers_to_feeds(settings):
    """In a storm the probe waits behind thousands of the process's own Redis commands:
    a layer that keeps delivering meanwhile is busy, not gone (it was taken for an
    outage, and every subscription polled the database for 17 s)."""
    settings.CHANNEL_LAYER_PROBE_INTERVAL = 0.4
    hub = fanout.Hub(SilentLayer())
    loop = asyncio.get_running_loop()

    async def deliver_meanwhile() -> None:
        await asyncio.sleep(0.1)
        hub.heard = loop.time()  # what a feed does for every message it receives

    delivering = asyncio.create_task(deliver_meanwhile())
    outcome = await hub._probe(0.4)
    await delivering

    assert outcome is None
    assert hub.outages == 0
    # Heard from before the probe began: no proof, and silence is an outage.
    assert await hub._probe(0.4) is False
    assert hub.outages == 1


class CountingLayer(InMemoryChannelLayer):
    """Counts the channels received on: on Redis pub/sub each is a SUBSCRIBE."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.listened: set[str] = set()

    async def receive(self, channel):
        self.listened.add(channel)
        return await super().receive(channel)


async def test_probes_listen_on_one_channel_for_as_long_as_the_hub_watches(settings):
    """Each probe subscribed to a new channel: in a storm that SUBSCRIBE waited behind
    the thousands the new sockets made, and the probe timed out (a false outage)."""
    settings.CHANNEL_LAYER_PROBE_INTERVAL = 0.05
    hub = fanout.Hub(CountingLayer())
    listener = fanout.Listener(render=str)

    async with hub.listening(listener, ["chat.watched"]):
        # (The hub watches only layers that can lose events; this one, as if it could.)
        watching = asyncio.create_task(hub._watch_forever())
        assert [await hub._probe(1) for _ in range(3)] == [True, True, True]
        await asyncio.sleep(0.3)  # and the hub's own probes meanwhile
        probe_channels = {c for c in hub.layer.listened if c.startswith("probe.")}
        assert len(probe_channels) == 1
        assert hub.layer_ok
    # The hub stops watching with its last feed, and listening to the probe's channel.
    await asyncio.wait([watching], timeout=2)
    await asyncio.sleep(0)
    assert watching.done()
    assert hub._probe_listener.done()


async def test_a_probe_whose_listener_fails_reports_the_failure(settings):
    class BrokenReceive(InMemoryChannelLayer):
        async def receive(self, channel):
            raise ConnectionError("Redis went away")

    hub = fanout.Hub(BrokenReceive())

    assert await hub._probe(0.5) is False
    assert hub.outages == 1


async def test_a_busy_generator_writes_an_in_order_event_through_with_the_shared_payload(
    hub, monkeypatch
):
    """After a reconnect storm most subscriptions are busy when a message arrives: their
    generators write it as the hub would, executing it once for all of them."""
    executions = []
    payload = fanout._payload

    async def counted(sink, root):
        executions.append(sink.operation_id)
        return await payload(sink, root)

    monkeypatch.setattr(fanout, "_payload", counted)
    busy = [Subscription(last_seq=4, op_id=str(n)) for n in range(3)]
    behind = Subscription(last_seq=3, op_id="behind")
    message = added(5)
    await hub.deliver(
        SimpleNamespace(listeners={s.listener for s in [*busy, behind]}, group="g"), message
    )
    queued = [s.listener.queue.get_nowait() for s in busy]

    written = [await s.listener.write_through(m) for s, m in zip(busy, queued, strict=True)]
    not_in_order = await behind.listener.write_through(behind.listener.queue.get_nowait())

    assert written == [True, True, True]
    assert [s.frames for s in busy] == [[frame(5, op_id=str(n))] for n in range(3)]
    assert [s.listener.positions[CHAT].last for s in busy] == [5, 5, 5]
    assert len(executions) == 1  # one execution for the three
    assert not_in_order is False
    assert behind.frames == []
