"""Every change a subscriber renders has a revision to resume from: a client that missed
edits, deletes, joins or leaves (a dropped socket, a lost broadcast, a channel-layer
outage) converges on the database's state, and sees nothing twice."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from chat import events as chat_events
from chat import services
from schema import fanout
from tests.api.realtime import CHAT_EVENTS, INBOX, events, http, send, subscribed
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

RESUMING = """
subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) {
    __typename
    ... on MessageAdded { revision message { seq body } }
    ... on MessageEdited { revision message { seq body } }
    ... on MessageDeleted { revision message { seq isDeleted } }
    ... on MemberJoined { revision memberCount user { displayName } }
    ... on MemberLeft { revision memberCount user { displayName } }
  }
}
"""
CHAT_REVISION = "query($id: ID!) { chat(id: $id) { lastSeq revision } }"


def summary(received: list[dict]) -> list[tuple]:
    rows = []
    for data in received:
        event = data["chatEvents"]
        if "user" in event:
            detail = (event["memberCount"], event["user"]["displayName"])
        else:
            detail = tuple(event["message"].values())
        rows.append((event["__typename"], event["revision"], *detail))
    return rows


async def history_while_away(people):
    """A room where, after revision 3, a message is edited and deleted, Grace joins, says
    something and leaves."""
    ada, grace = people["ada"], people["grace"]
    room = await sync_to_async(services.create_room)(owner=ada, name="Lounge")
    await send_as(ada, room, "one")  # revision 2
    await send_as(ada, room, "two")  # revision 3
    two = await sync_to_async(room.messages.get)(seq=3)
    await sync_to_async(services.edit_message)(user=ada, message_id=two.id, body="2")
    one = await sync_to_async(room.messages.get)(seq=2)
    await sync_to_async(services.delete_message)(user=ada, message_id=one.id)
    await sync_to_async(services.add_members)(actor=ada, chat_id=room.id, user_ids=[grace.id])
    await send_as(grace, room, "hi")
    await sync_to_async(services.remove_member)(actor=ada, chat_id=room.id, user_id=grace.id)
    return room


# What `history_while_away` replays to a socket resuming after revision 3, by type and
# revision.
AFTER_REVISION_3 = [
    ("MessageEdited", 4),
    ("MessageDeleted", 5),
    ("MessageAdded", 6),
    ("MemberJoined", 6),
    ("MessageAdded", 7),
    ("MessageAdded", 8),
    ("MemberLeft", 8),
]


@pytest.fixture
def gated_reads(monkeypatch) -> tuple[asyncio.Event, list]:
    """Replay reads held until the gate opens, and the reads that arrived at it: sockets
    let through at once share one read."""
    from schema import replays

    gate, arrived = asyncio.Event(), []
    read = replays.SharedReads.read

    async def gated(self, *key):
        arrived.append(key)
        await gate.wait()
        return await read(self, *key)

    monkeypatch.setattr(replays.SharedReads, "read", gated)
    return gate, arrived


async def all_arrived(arrived: list, count: int) -> None:
    for _ in range(100):
        if len(arrived) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(arrived)} of {count} reads arrived")


async def send_as(user, room, body):
    await sync_to_async(services.send_message)(author=user, chat_id=room.id, body=body)


async def test_resuming_after_a_revision_replays_every_change_since(asgi_app, people):
    room = await history_while_away(people)

    socket = await subscribed(
        asgi_app, people["ada_token"], RESUMING, {"chatId": str(room.id), "after": 3}
    )
    received = await events(socket, 7)
    quiet = await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()

    assert summary(received) == [
        ("MessageEdited", 4, 3, "2"),
        ("MessageDeleted", 5, 2, True),
        ("MessageAdded", 6, 4, "Ada added Grace"),
        ("MemberJoined", 6, 1, "Grace"),
        ("MessageAdded", 7, 5, "hi"),
        ("MessageAdded", 8, 6, "Ada removed Grace"),
        ("MemberLeft", 8, 1, "Grace"),
    ]
    assert quiet


async def test_chat_revision_is_where_loaded_history_ends(asgi_app, people):
    room = await history_while_away(people)

    answer = await http(asgi_app, CHAT_REVISION, {"id": str(room.id)}, people["ada_token"])

    assert answer == {"data": {"chat": {"lastSeq": 6, "revision": 8}}}


async def test_live_edits_and_deletes_are_ordered_and_a_lost_one_is_backfilled(
    asgi_app, people, monkeypatch
):
    ada, chat = people["ada"], people["chat"]
    await send_as(ada, chat, "first")
    message = await sync_to_async(chat.messages.get)(seq=1)
    variables = {"chatId": str(chat.id), "after": 1}
    socket = await subscribed(asgi_app, people["grace_token"], RESUMING, variables)
    real, lost = chat_events.message_changed, []

    def lossy(message, event, **details):  # the layer loses the edit
        if event == "message_edited":
            lost.append(details["revision"])
            return
        real(message, event, **details)

    monkeypatch.setattr(chat_events, "message_changed", lossy)
    await sync_to_async(services.edit_message)(user=ada, message_id=message.id, body="edited")
    nothing_yet = await socket.communicator.receive_nothing(timeout=0.2)
    await send_as(ada, chat, "second")  # revision 3 reveals that 2 is missing
    # The backfill replays the message as it is when it reads it: deleted by then, it
    # would show the edit empty (as it must: a replay never reveals deleted text).
    backfilled = await events(socket, 2)
    await sync_to_async(services.delete_message)(user=ada, message_id=message.id)
    received = backfilled + await events(socket, 1)
    await socket.close()

    assert lost == [2]
    assert nothing_yet
    assert summary(received) == [
        ("MessageEdited", 2, 1, "edited"),
        ("MessageAdded", 3, 2, "second"),
        ("MessageDeleted", 4, 1, True),
    ]


async def test_a_resync_catches_a_live_subscription_up_without_a_further_change(
    asgi_app, people, monkeypatch
):
    ada, chat = people["ada"], people["chat"]
    variables = {"chatId": str(chat.id), "after": 0}
    socket = await subscribed(asgi_app, people["grace_token"], RESUMING, variables)
    # The layer is down: every broadcast is lost.
    monkeypatch.setattr(chat_events, "_send", lambda group, message: None)
    await send_as(ada, chat, "while down")
    message = await sync_to_async(chat.messages.get)(seq=1)
    await sync_to_async(services.edit_message)(user=ada, message_id=message.id, body="edited")
    nothing_yet = await socket.communicator.receive_nothing(timeout=0.2)

    fanout.hub().resync()  # what the hub does when its probe fails, and when it works again
    received = await events(socket, 2)
    fanout.hub().resync()  # a second resync finds nothing new
    quiet = await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()

    assert nothing_yet
    assert summary(received) == [
        ("MessageAdded", 1, 1, "edited"),
        ("MessageEdited", 2, 1, "edited"),
    ]
    assert quiet


async def test_a_resync_brings_the_inbox_up_to_date_with_chats_gained_and_lost(
    asgi_app, people, monkeypatch
):
    ada, grace = people["ada"], people["grace"]
    room = await sync_to_async(services.create_room)(owner=ada, name="Lounge")
    await sync_to_async(services.add_members)(actor=ada, chat_id=room.id, user_ids=[grace.id])
    socket = await subscribed(asgi_app, people["grace_token"], INBOX, {})
    monkeypatch.setattr(chat_events, "_send", lambda group, message: None)
    new_room = await sync_to_async(services.create_room)(owner=ada, name="Annex")
    await sync_to_async(services.add_members)(actor=ada, chat_id=new_room.id, user_ids=[grace.id])
    await send_as(ada, new_room, "welcome")
    await send_as(ada, people["chat"], "direct")
    await sync_to_async(services.remove_member)(actor=ada, chat_id=room.id, user_id=grace.id)

    fanout.hub().resync()
    received = [data["inbox"] for data in await events(socket, 4)]
    await socket.close()

    assert received == [
        {"__typename": "RemovedFromChat", "chatId": str(room.id)},
        {
            "__typename": "MessageAdded",
            "message": {
                "chatId": str(people["chat"].id),
                "seq": 1,
                "body": "direct",
                "author": {"displayName": "Ada"},
            },
        },
        {
            "__typename": "AddedToChat",
            "chat": {"id": str(new_room.id), "kind": "GROUP", "name": "Annex"},
        },
        {
            "__typename": "MessageAdded",
            "message": {
                "chatId": str(new_room.id),
                "seq": 3,
                "body": "welcome",
                "author": {"displayName": "Ada"},
            },
        },
    ]


async def test_resuming_from_a_revision_past_the_newest_starts_from_now(asgi_app, people):
    chat = people["chat"]
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id), "after": 500}
    )
    await asyncio.sleep(0.05)

    await send(asgi_app, people["grace_token"], chat, "now")
    [received] = await events(socket, 1)
    await socket.close()

    assert received["chatEvents"]["message"]["body"] == "now"


async def test_a_member_added_while_away_is_replayed_to_a_new_subscriber(asgi_app, people):
    ada = people["ada"]
    room = await sync_to_async(services.create_room)(owner=ada, name="Lounge")
    newcomer = await sync_to_async(UserFactory)(display_name="Newcomer")
    await sync_to_async(services.add_members)(actor=ada, chat_id=room.id, user_ids=[newcomer.id])

    socket = await subscribed(
        asgi_app, people["ada_token"], RESUMING, {"chatId": str(room.id), "after": 1}
    )
    received = await events(socket, 2)
    await socket.close()

    assert summary(received) == [
        ("MessageAdded", 2, 2, "Ada added Newcomer"),
        ("MemberJoined", 2, 2, "Newcomer"),
    ]


@pytest.mark.parametrize("outage_noticed", [True, False])
async def test_a_token_revoked_while_redis_was_down_closes_its_socket_after(
    asgi_app, people, monkeypatch, settings, outage_noticed
):
    from chat import auth
    from chat.models import AuthToken
    from tests.ws import GraphQLSocket

    settings.PRESENCE_HEARTBEAT = 0.2
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {people['ada_token']}"})
    await socket.subscribe("1", "subscription { me { displayName } }")
    await socket.next_payload("1")
    # Redis is down: the revocation's close event is lost.
    monkeypatch.setattr(chat_events, "_send", lambda group, message: None)
    token = await sync_to_async(AuthToken.objects.get)(user=people["ada"])
    await sync_to_async(auth.revoke_token)(token)
    if outage_noticed:
        fanout.hub().outages += 1  # what the hub's probe does when the layer fails

    if outage_noticed:
        assert await socket.receive_close(timeout=3) == 4403
    else:
        # An outage nobody noticed (shorter than a probe interval) is the known gap: the
        # socket lives until it reconnects or its token expires (README, Outages).
        assert await socket.communicator.receive_nothing(timeout=0.8)
        await socket.close()


async def test_a_live_change_the_replay_already_sent_is_dropped_without_being_built(
    asgi_app, people, monkeypatch
):
    """A socket resuming with `after` hears its chat before it reads what it missed, so a
    change committed meanwhile comes twice: in the replay, then live. The live one is
    dropped; building its message first (for every socket of a reconnect storm) was a tenth
    of the process's CPU."""
    from schema import subscriptions

    ada, chat = people["ada"], people["chat"]
    await sync_to_async(chat.refresh_from_db)()
    start = chat.revision
    await send_as(ada, chat, "first")
    release, read = threading.Event(), subscriptions._changes

    def held(*args):
        release.wait(5)
        return read(*args)

    built, build = [], subscriptions.message_from

    def counted(*args):
        built.append(args)
        return build(*args)

    monkeypatch.setattr(subscriptions, "_changes", held)
    monkeypatch.setattr(subscriptions, "message_from", counted)
    variables = {"chatId": str(chat.id), "after": start}
    socket = await subscribed(asgi_app, people["grace_token"], RESUMING, variables, held=True)
    group = f"chat.{chat.id.hex}"
    for _ in range(100):  # in the group; its replay held
        if group in fanout.hub().feeds and fanout.hub().feeds[group].joined.done():
            break
        await asyncio.sleep(0.05)
    send = sync_to_async(services.send_message, thread_sensitive=False)
    await send(author=ada, chat_id=chat.id, body="second")
    await asyncio.sleep(0.3)  # heard, and queued behind the replay
    release.set()
    received = await events(socket, 2)
    quiet = await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()

    assert [e["chatEvents"]["message"]["body"] for e in received] == ["first", "second"]
    assert quiet
    assert built == []


async def test_sockets_replaying_the_same_changes_execute_each_once(
    asgi_app, people, monkeypatch, gated_reads
):
    """After a reconnect storm thousands of sockets replay the same changes. Those that
    render alike for everyone (messages added, edited, deleted) are executed once for all
    that share the read and written to each; joins and leaves still go through each
    socket's generator. Each socket gets every change, in order."""
    from collections import Counter

    from schema import subscriptions

    room = await history_while_away(people)
    (gate, arrived), sockets = gated_reads, 4
    built, build = Counter(), subscriptions.change_events

    def counted(kind, message, revision, members):
        built[revision] += 1
        return build(kind, message, revision, members)

    monkeypatch.setattr(subscriptions, "change_events", counted)
    variables = {"chatId": str(room.id), "after": 3}
    subscribed_ = [
        await subscribed(asgi_app, people["ada_token"], RESUMING, variables, held=True)
        for _ in range(sockets)
    ]
    await all_arrived(arrived, sockets)  # every socket in the group, its membership checked
    gate.set()
    received = [summary(await events(socket, 7)) for socket in subscribed_]
    for socket in subscribed_:
        await socket.close()

    assert received == [received[0]] * sockets
    assert [row[:2] for row in received[0]] == AFTER_REVISION_3
    assert built == {4: 1, 5: 1, 7: 1, 6: sockets, 8: sockets}


async def test_typing_queued_behind_a_replay_is_executed_once_for_every_socket(
    asgi_app, people, monkeypatch, gated_reads
):
    """Events that render alike for everyone (typing, receipts, presence) reach a socket
    busy with its replay through its generator. In a reconnect storm that is most sockets,
    and executing each such event once per socket became most of the storm's CPU."""
    from schema import events as schema_events
    from schema import subscriptions

    room = await history_while_away(people)
    (gate, arrived), sockets = gated_reads, 3
    built, build = [], schema_events.chat_event

    def counted(event, data, viewer):
        built.append(event)
        return build(event, data, viewer)

    monkeypatch.setattr(subscriptions, "chat_event", counted)
    typing = RESUMING.replace("__typename", "__typename ... on TypingChanged { typing }", 1)
    variables = {"chatId": str(room.id), "after": 3}
    subscribed_ = [
        await subscribed(asgi_app, people["ada_token"], typing, variables, held=True)
        for _ in range(sockets)
    ]
    await all_arrived(arrived, sockets)
    await chat_events.typing_changed(room.id, people["grace"], typing=True, expires_in=5)
    await asyncio.sleep(0.3)  # heard, and queued behind every replay
    gate.set()
    received = [await events(socket, 8) for socket in subscribed_]
    for socket in subscribed_:
        await socket.close()

    for got in received:
        assert [e["chatEvents"]["__typename"] for e in got][-1] == "TypingChanged"
        assert got[-1]["chatEvents"]["typing"] is True
    assert built.count("typing_changed") == 1


async def test_an_operation_id_reused_during_its_replay_gets_only_its_own_events(
    asgi_app, people, gated_reads
):
    """A client completes a subscription while its replay is held and reuses its id at
    once. The first replay's changes, written once per query for every socket that shares
    the read, must not reach the operation that now holds the id."""
    room = await history_while_away(people)
    gate, arrived = gated_reads
    socket = await subscribed(
        asgi_app, people["ada_token"], RESUMING, {"chatId": str(room.id), "after": 3}, held=True
    )
    await all_arrived(arrived, 1)
    await socket.send({"id": "s", "type": "complete"})
    await socket.subscribe("s", RESUMING, {"chatId": str(room.id), "after": 7})
    await all_arrived(arrived, 2)
    gate.set()
    received = summary(await events(socket, 2))
    quiet = await socket.communicator.receive_nothing(timeout=0.5)
    await socket.close()

    assert [row[:2] for row in received] == AFTER_REVISION_3[-2:]
    assert quiet
