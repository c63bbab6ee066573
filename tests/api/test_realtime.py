import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat import services
from chat.events import SESSIONS_CHANGED_GROUP
from schema import fanout
from tests.api.realtime import (
    CHAT_EVENTS,
    INBOX,
    LOGOUT,
    MARK_READ,
    ONLINE,
    TYPING,
    arrivals,
    events,
    http,
    send,
    signed_in,
    subscribe,
    subscribed,
)
from tests.factories import UserFactory, token_for
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLSocket

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]
BOTH = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])


@BOTH
async def test_a_message_sent_over_http_arrives_with_every_field(asgi_app, people, protocol):
    chat = people["chat"]
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)}, protocol
    )

    await send(asgi_app, people["grace_token"], chat, "  Hi Ada  ")
    [event] = await events(socket, 1)
    await socket.close()

    message = await sync_to_async(chat.messages.get)()
    assert event == {
        "chatEvents": {
            "__typename": "MessageAdded",
            "message": {
                "id": str(message.id),
                "chatId": str(chat.id),
                "seq": 1,
                "kind": "TEXT",
                "body": "Hi Ada",
                "clientId": None,
                "isDeleted": False,
                "editedAt": None,
                "createdAt": message.created_at.isoformat(),
                "systemEvent": None,
                "author": {
                    "id": str(people["grace"].id),
                    "displayName": "Grace",
                    "joinedAt": people["grace"].date_joined.isoformat(),
                },
                "subject": None,
            },
        }
    }


@BOTH
async def test_edits_deletes_joins_leaves_typing_and_receipts_arrive_as_their_types(
    asgi_app, people, protocol
):
    ada, grace = people["ada"], people["grace"]
    room = await sync_to_async(services.create_room)(owner=ada, name="Lounge", is_public=True)
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(room.id)}, protocol
    )

    await sync_to_async(services.join_room)(user=grace, chat_id=room.id)
    await send(asgi_app, people["grace_token"], room, "tpyo")
    message = await sync_to_async(room.messages.get)(seq=3)
    await sync_to_async(services.edit_message)(user=grace, message_id=message.id, body="typo")
    await sync_to_async(services.delete_message)(user=grace, message_id=message.id)
    await http(asgi_app, TYPING, {"c": str(room.id), "t": True}, people["grace_token"])
    # Grace read seq 3 by sending it; Ada's marker is still at 1.
    await http(asgi_app, MARK_READ, {"c": str(room.id), "s": 3}, people["ada_token"])
    await sync_to_async(services.leave_room)(user=grace, chat_id=room.id)
    received = [e["chatEvents"] for e in await events(socket, 9)]
    await socket.close()

    summary = [
        (
            e["__typename"],
            e.get("message", {}).get("seq") or e.get("seq"),
            e.get("message", {}).get("body"),
        )
        for e in received
    ]
    assert summary == [
        ("MessageAdded", 2, "Grace joined"),
        ("MemberJoined", None, None),
        ("MessageAdded", 3, "tpyo"),
        ("MessageEdited", 3, "typo"),
        ("MessageDeleted", 3, ""),
        ("TypingChanged", None, None),
        ("ReadUpTo", 3, None),
        ("MessageAdded", 4, "Grace left"),
        ("MemberLeft", None, None),
    ]
    assert received[1] == {
        "__typename": "MemberJoined",
        "chatId": str(room.id),
        "memberCount": 2,
        "user": {"displayName": "Grace"},
    }
    assert received[5]["typing"] is True
    assert received[5]["user"] == {"displayName": "Grace"}
    assert received[6] == {
        "__typename": "ReadUpTo",
        "chatId": str(room.id),
        "seq": 3,
        "user": {"displayName": "Ada"},
    }
    assert received[8]["memberCount"] == 1


async def test_a_typing_indicator_lapses_by_itself(asgi_app, people, settings):
    settings.TYPING_TTL = 1
    chat = people["chat"]
    socket = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)})

    await http(asgi_app, TYPING, {"c": str(chat.id), "t": True}, people["grace_token"])
    started, lapsed = await events(socket, 2)
    await socket.close()

    assert (started["chatEvents"]["typing"], lapsed["chatEvents"]["typing"]) == (True, False)
    assert lapsed["chatEvents"]["expiresAt"] is None


async def test_typing_is_not_echoed_to_the_typist_and_is_throttled(asgi_app, people):
    chat = people["chat"]
    mine = await subscribed(asgi_app, people["grace_token"], CHAT_EVENTS, {"chatId": str(chat.id)})
    theirs = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)})

    for _ in range(5):
        await http(asgi_app, TYPING, {"c": str(chat.id), "t": True}, people["grace_token"])
    [typing] = await events(theirs, 1)

    assert typing["chatEvents"]["typing"] is True
    assert await arrivals(theirs) == []
    assert await arrivals(mine) == []
    await mine.close()
    await theirs.close()


@BOTH
async def test_reconnecting_with_after_replays_exactly_what_was_missed(asgi_app, people, protocol):
    chat = people["chat"]
    for n in range(5):
        await send(asgi_app, people["grace_token"], chat, f"seen {n}")
    for n in range(50):
        await send(asgi_app, people["grace_token"], chat, f"missed {n}")

    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id), "after": 5}, protocol
    )
    replayed = [e["chatEvents"]["message"] for e in await events(socket, 50)]

    assert [m["seq"] for m in replayed] == list(range(6, 56))
    assert [m["body"] for m in replayed] == [f"missed {n}" for n in range(50)]
    assert await socket.communicator.receive_nothing(timeout=0.2)
    await socket.close()


async def test_messages_sent_during_the_replay_arrive_once_in_order(asgi_app, people):
    chat = people["chat"]
    for n in range(50):
        await send(asgi_app, people["grace_token"], chat, f"old {n}")

    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id), "after": 0}
    )

    async def send_more() -> None:
        for n in range(20):
            await send(asgi_app, people["grace_token"], chat, f"new {n}")

    sending = asyncio.create_task(send_more())
    received = [e["chatEvents"]["message"]["seq"] for e in await events(socket, 70)]
    await sending

    assert received == list(range(1, 71))
    assert await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()


async def test_a_gap_in_live_seqs_is_backfilled_from_the_database(asgi_app, people, monkeypatch):
    chat = people["chat"]
    socket = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)})
    from chat import events as chat_events

    real = chat_events.message_added
    dropped = []

    def lossy(message, **details):  # the layer loses the first two broadcasts
        if len(dropped) < 2:
            dropped.append(message.seq)
            return
        real(message, **details)

    monkeypatch.setattr(chat_events, "message_added", lossy)
    for n in range(3):
        await send(asgi_app, people["grace_token"], chat, f"m{n}")
    received = [e["chatEvents"]["message"]["body"] for e in await events(socket, 3)]
    await socket.close()

    assert dropped == [1, 2]
    assert received == ["m0", "m1", "m2"]


async def test_a_non_member_cannot_subscribe(asgi_app, people):
    outsider = await sync_to_async(UserFactory)()
    token = await sync_to_async(token_for)(outsider)

    socket = await subscribed(asgi_app, token, CHAT_EVENTS, {"chatId": str(people["chat"].id)})
    payload = await socket.next_payload("s")
    await socket.close()

    assert payload["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in payload["errors"]] == [
        ("Chat not found.", "NOT_FOUND")
    ]


@pytest.mark.parametrize("chat_id", ["not-a-uuid", "", "00000000-0000-0000-0000-000000000000"])
async def test_a_malformed_or_unknown_chat_id_is_not_found_and_joins_no_group(
    asgi_app, people, chat_id
):
    """chatEvents joins the chat's group before it checks membership (one query for both):
    an id that is no chat must neither fail differently nor leave the hub in a group."""
    before = set(fanout.hub().feeds)
    socket = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": chat_id})
    payload = await socket.next_payload("s")
    await socket.close()

    assert payload["data"] is None
    assert [e["extensions"]["code"] for e in payload["errors"]] == ["NOT_FOUND"]
    # The process's own group, where token revocations arrive (server.tokens), may join.
    assert set(fanout.hub().feeds) <= before | {SESSIONS_CHANGED_GROUP}


@pytest.mark.parametrize("how", ["logout", "change_password", "reset_password"])
async def test_signing_out_closes_the_users_sockets_with_4403(asgi_app, people, how):
    ada = people["ada"]
    other_token = await sync_to_async(token_for)(ada)
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(people["chat"].id)}
    )

    if how == "logout":
        await http(asgi_app, LOGOUT, {}, people["ada_token"])
    elif how == "change_password":
        await sync_to_async(services.change_password)(
            user=ada,
            current_password="correct horse battery staple",
            new_password="a new long passphrase",
            keep=None,
        )
    else:
        await sync_to_async(__import__("chat.auth").auth.revoke_user_tokens)(ada)

    assert await socket.receive_close() == 4403
    assert other_token


async def test_logout_closes_only_the_sockets_of_that_token(asgi_app, people):
    phone = await sync_to_async(token_for)(people["ada"])
    laptop = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(people["chat"].id)}
    )

    await http(asgi_app, LOGOUT, {}, phone)
    await send(asgi_app, people["grace_token"], people["chat"], "still here?")

    [event] = await events(laptop, 1)
    assert event["chatEvents"]["message"]["body"] == "still here?"
    await laptop.close()


async def test_a_socket_is_closed_when_its_token_expires(asgi_app, people):
    from datetime import timedelta

    from django.utils import timezone

    from chat.models import AuthToken

    soon = timezone.now() + timedelta(seconds=0.5)
    await AuthToken.objects.filter(user=people["ada"]).aupdate(expires_at=soon)
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(people["chat"].id)}
    )

    assert await socket.receive_close(timeout=3) == 4403


@pytest.mark.parametrize(
    ("leaving", "system_event"),
    [
        (lambda ada, grace, room: services.leave_room(user=grace, chat_id=room.id), "MEMBER_LEFT"),
        (
            lambda ada, grace, room: services.ban_member(
                actor=ada, chat_id=room.id, user_id=grace.id
            ),
            "MEMBER_BANNED",
        ),
    ],
    ids=["leaves", "is banned"],
)
async def test_a_member_who_leaves_or_is_banned_stops_receiving_at_once(
    asgi_app, people, leaving, system_event
):
    ada, grace = people["ada"], people["grace"]
    room = await sync_to_async(services.create_room)(owner=ada, name="Lounge", is_public=True)
    await sync_to_async(services.join_room)(user=grace, chat_id=room.id)
    socket = await subscribed(
        asgi_app, people["grace_token"], CHAT_EVENTS, {"chatId": str(room.id)}
    )

    await sync_to_async(leaving)(ada, grace, room)
    last = await events(socket, 2)
    await socket.expect_complete("s")
    await send(asgi_app, people["ada_token"], room, "after you left")

    assert [e["chatEvents"]["__typename"] for e in last] == ["MessageAdded", "MemberLeft"]
    assert last[0]["chatEvents"]["message"]["systemEvent"] == system_event
    assert await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()


async def test_the_inbox_carries_new_messages_and_chats_gained_and_lost(asgi_app, people):
    ada, grace = people["ada"], people["grace"]
    socket = await subscribed(asgi_app, people["ada_token"], INBOX, {})

    await send(asgi_app, people["grace_token"], people["chat"], "psst")
    room = await sync_to_async(services.create_room)(owner=grace, name="Secret")
    await sync_to_async(services.add_members)(actor=grace, chat_id=room.id, user_ids=[ada.id])
    await sync_to_async(services.remove_member)(actor=grace, chat_id=room.id, user_id=ada.id)
    alan = await sync_to_async(UserFactory)(display_name="Alan")
    direct = await sync_to_async(services.open_direct_chat)(user=alan, other_user_id=ada.id)
    received = [e["inbox"] for e in await events(socket, 6)]
    await socket.close()

    def added(chat_id, seq, body, author):
        return {
            "__typename": "MessageAdded",
            "message": {"chatId": str(chat_id), "seq": seq, "body": body, "author": author},
        }

    assert received == [
        added(people["chat"].id, 1, "psst", {"displayName": "Grace"}),
        {
            "__typename": "AddedToChat",
            "chat": {"id": str(room.id), "kind": "GROUP", "name": "Secret"},
        },
        added(room.id, 2, "Grace added Ada", None),
        added(room.id, 3, "Grace removed Ada", None),
        {"__typename": "RemovedFromChat", "chatId": str(room.id)},
        {
            "__typename": "AddedToChat",
            "chat": {"id": str(direct.id), "kind": "DIRECT", "name": ""},
        },
    ]


async def test_the_first_message_of_a_new_direct_chat_reaches_the_inbox(asgi_app, people):
    socket = await subscribed(asgi_app, people["ada_token"], INBOX, {})
    alan = await sync_to_async(UserFactory)(display_name="Alan")

    def open_and_send():
        chat = services.open_direct_chat(user=alan, other_user_id=people["ada"].id)
        services.send_message(author=alan, chat_id=chat.id, body="hello at once")
        return chat

    chat = await sync_to_async(open_and_send)()
    received = [e["inbox"] for e in await events(socket, 2)]
    await socket.close()

    assert [e["__typename"] for e in received] == ["AddedToChat", "MessageAdded"]
    assert received[1]["message"] == {
        "chatId": str(chat.id),
        "seq": 1,
        "body": "hello at once",
        "author": {"displayName": "Alan"},
    }


async def test_presence_counts_tabs_once_and_reaches_the_chat(asgi_app, people):
    chat = people["chat"]
    watcher = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)}
    )

    tab1 = await signed_in(asgi_app, people["grace_token"])
    tab2 = await signed_in(asgi_app, people["grace_token"])
    [online] = await events(watcher, 1, presence=True)
    both = await http(asgi_app, ONLINE, {"c": str(chat.id)}, people["ada_token"])
    await tab1.close()
    quiet = await watcher.communicator.receive_nothing(timeout=0.3)
    await tab2.close()
    [offline] = await events(watcher, 1, presence=True)
    after = await http(asgi_app, ONLINE, {"c": str(chat.id)}, people["ada_token"])
    await watcher.close()

    assert online["chatEvents"] == {
        "__typename": "PresenceChanged",
        "online": True,
        "user": {"displayName": "Grace"},
    }
    assert both == {"data": {"onlineUsers": [{"displayName": "Ada"}, {"displayName": "Grace"}]}}
    assert quiet is True
    assert offline["chatEvents"]["online"] is False
    assert after == {"data": {"onlineUsers": [{"displayName": "Ada"}]}}


async def test_nobody_is_told_that_they_came_online(asgi_app, people):
    chat = people["chat"]
    watcher = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)}
    )
    # Grace subscribes before her coming online is announced (it is, in a batch, a moment
    # after her socket opens).
    grace = GraphQLSocket(asgi_app)
    await grace.connect()
    await grace.send(
        {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {people['grace_token']}"},
        }
    )
    assert (await grace.receive())["type"] == "connection_ack"
    await subscribe(grace, "s", CHAT_EVENTS, {"chatId": str(chat.id)})

    [online] = await events(watcher, 1, presence=True)
    told_herself = not await grace.communicator.receive_nothing(timeout=0.3)
    for socket in (watcher, grace):
        await socket.close()

    assert online["chatEvents"]["user"] == {"displayName": "Grace"}
    assert told_herself is False


async def test_a_reconnect_within_the_grace_announces_nothing(asgi_app, people, settings):
    settings.PRESENCE_OFFLINE_GRACE = 0.5
    chat = people["chat"]
    watcher = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)}
    )

    first = await signed_in(asgi_app, people["grace_token"])
    [online] = await events(watcher, 1, presence=True)
    await first.close()
    second = await signed_in(
        asgi_app, people["grace_token"]
    )  # a page reload: back before the grace is over
    quiet = await watcher.communicator.receive_nothing(timeout=0.8)
    await second.close()
    started = asyncio.get_running_loop().time()
    [offline] = await events(watcher, 1, presence=True)
    waited = asyncio.get_running_loop().time() - started
    await watcher.close()

    assert online["chatEvents"]["online"] is True
    assert quiet is True
    assert offline["chatEvents"] == {
        "__typename": "PresenceChanged",
        "online": False,
        "user": {"displayName": "Grace"},
    }
    assert waited >= 0.4


async def test_pings_are_answered(asgi_app, people):
    socket = await signed_in(asgi_app, people["ada_token"])

    await socket.send({"type": "ping"})

    assert await socket.receive() == {"type": "pong"}
    await socket.close()


async def test_subscriptions_per_socket_are_capped(asgi_app, people, settings):
    limit = settings.GRAPHQL_WS_MAX_SUBSCRIPTIONS
    socket = await signed_in(asgi_app, people["ada_token"])
    for n in range(limit):
        await socket.subscribe(f"s{n}", "subscription { me { id } }")
        await socket.next_payload(f"s{n}")

    await socket.subscribe("one-too-many", "subscription { me { id } }")

    assert await socket.receive() == {
        "type": "error",
        "id": "one-too-many",
        "payload": [{"message": "Subscription limit reached"}],
    }
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    await socket.close()


async def test_presence_is_not_broadcast_to_rooms_above_the_limit(asgi_app, people, settings):
    settings.PRESENCE_ROOM_LIMIT = 2
    ada, grace = people["ada"], people["grace"]
    big = await sync_to_async(services.create_room)(owner=ada, name="Big", is_public=True)
    await sync_to_async(services.join_room)(user=grace, chat_id=big.id)
    third = await sync_to_async(UserFactory)()
    await sync_to_async(services.join_room)(user=third, chat_id=big.id)
    small = people["chat"]
    in_big = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(big.id)})
    in_small = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(small.id)}
    )

    tab = await signed_in(asgi_app, people["grace_token"])
    [online] = await events(in_small, 1, presence=True)
    online_in_big = await http(asgi_app, ONLINE, {"c": str(big.id)}, people["ada_token"])

    assert online["chatEvents"]["__typename"] == "PresenceChanged"
    assert await in_big.communicator.receive_nothing(timeout=0.3)
    assert online_in_big == {
        "data": {"onlineUsers": [{"displayName": "Ada"}, {"displayName": "Grace"}]}
    }
    for socket in (tab, in_big, in_small):
        await socket.close()


async def test_a_presence_store_failure_does_not_break_the_socket(asgi_app, people, monkeypatch):
    from chat import presence

    async def unavailable(user, connection, **kwargs):
        raise ConnectionError("presence store unavailable")

    monkeypatch.setattr(presence, "socket_opened", unavailable)

    socket = await subscribed(
        asgi_app, people["ada_token"], "subscription { me { displayName } }", {}
    )

    assert await socket.next_payload("s") == {"data": {"me": {"displayName": "Ada"}}}
    await socket.close()


async def test_an_after_beyond_the_newest_message_streams_from_now(asgi_app, people):
    chat = people["chat"]
    await send(asgi_app, people["grace_token"], chat, "old")
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id), "after": 500}
    )

    await send(asgi_app, people["grace_token"], chat, "new")
    [event] = await events(socket, 1)
    await socket.close()

    assert event["chatEvents"]["message"]["seq"] == 2
    assert event["chatEvents"]["message"]["body"] == "new"


async def test_a_negative_after_is_bad_user_input(asgi_app, people):
    socket = await subscribed(
        asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(people["chat"].id), "after": -1}
    )

    payload = await socket.next_payload("s")
    await socket.close()

    assert payload["data"] is None
    assert [e["extensions"]["code"] for e in payload["errors"]] == ["BAD_USER_INPUT"]


async def test_draining_presence_writes_what_is_pending_and_leaves_nothing_running(
    asgi_app, people, settings
):
    """A flush still running when a test's teardown truncated the tables deadlocked with
    it: after `drain`, nothing of presence is scheduled or touching the database."""
    from chat import presence
    from chat.models import User

    settings.PRESENCE_OFFLINE_GRACE = 60
    settings.PRESENCE_FLUSH_DELAY = 60
    socket = await signed_in(asgi_app, people["grace_token"])
    await socket.close()
    grace_id = people["grace"].pk
    pending_before = str(grace_id) in presence._pending

    await presence.drain()

    loop = asyncio.get_running_loop()
    gone = await User.objects.filter(pk=grace_id).values_list("last_seen_at", flat=True).aget()
    assert pending_before is True
    assert gone is not None
    assert not presence._pending
    assert not presence._leaving
    assert loop not in presence._flushes
    assert loop not in presence._graces
    assert not [task for task in presence._flushing if task.get_loop() is loop]
