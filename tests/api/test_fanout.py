"""Fan-out over WebSocket: new messages written straight to live subscriptions, once per
distinct query, the same frames their generators would send, never out of order."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat import services
from schema import fanout
from tests.api.realtime import http, send, subscribe, subscribed
from tests.ws import LEGACY_WS, TRANSPORT_WS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]
BOTH = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])

SHARED = """
subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) { ... on MessageAdded { message { seq body author { email } } } }
}
"""
SHARED_NO_EMAIL = """
subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) { ... on MessageAdded { message { seq body } } }
}
"""
RESUMING = """
subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) {
    __typename
    ... on MessageAdded { message { id seq body createdAt author { id displayName } } }
  }
}
"""


async def settled(chat, subscriptions: int) -> None:
    """Until that many subscriptions listen to the chat, each done with what it got so far
    (presence changes of sockets just opened travel through the channel layer too)."""
    for _ in range(100):
        feed = fanout.hub().feeds.get(f"chat.{chat.id.hex}")
        listeners = feed.listeners if feed else set()
        if len(listeners) == subscriptions and all(x.idle for x in listeners):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("subscriptions not live yet")


async def first_message(socket, op_id: str = "s") -> dict:
    """The next event with a message, past presence changes."""
    while True:
        data = (await socket.next_payload(op_id))["data"]
        event = data["chatEvents"]
        if event and event.get("__typename", "MessageAdded") == "MessageAdded":
            return data


@BOTH
async def test_a_direct_frame_is_what_the_generator_would_send(asgi_app, people, protocol):
    chat, hub = people["chat"], fanout.hub()
    ada = await subscribed(
        asgi_app, people["ada_token"], RESUMING, {"chatId": str(chat.id)}, protocol
    )
    await settled(chat, 1)
    written = hub.written

    # Live, Ada's copy is written directly; Grace subscribes afterwards from seq 0 and
    # gets the same message replayed by her subscription's generator.
    await send(asgi_app, people["grace_token"], chat, "hello")
    direct = await first_message(ada)
    written_for_it = hub.written - written
    grace = await subscribed(
        asgi_app, people["grace_token"], RESUMING, {"chatId": str(chat.id), "after": 0}, protocol
    )
    replayed = await first_message(grace)
    await ada.close()
    await grace.close()

    assert written_for_it == 1
    assert direct == replayed
    assert direct["chatEvents"]["message"]["body"] == "hello"


async def test_subscribers_resuming_from_different_seqs_share_one_execution(
    asgi_app, people, monkeypatch
):
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    executions = []
    real = StrawberryGraphQLCoreExecutionContext.execute_operation

    def counted(self, serially=None):
        if getattr(self.root_value, "share_key", None) is not None:
            executions.append(self.root_value.message.seq)
        return real(self, serially)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "execute_operation", counted)
    chat = people["chat"]
    await send(asgi_app, people["grace_token"], chat, "one")
    sockets = [
        await subscribed(asgi_app, token, RESUMING, {"chatId": str(chat.id), "after": after})
        for token, after in (
            (people["ada_token"], None),
            (people["grace_token"], 1),
            (people["ada_token"], 0),
        )
    ]
    replayed = await first_message(sockets[2])
    await settled(chat, 3)

    await send(asgi_app, people["grace_token"], chat, "two")
    received = [await first_message(socket) for socket in sockets]
    for socket in sockets:
        await socket.close()

    assert replayed["chatEvents"]["message"]["seq"] == 1
    assert [r["chatEvents"]["message"]["body"] for r in received] == ["two"] * 3
    # Written directly or sent by the generators (a presence change still queued sends
    # a subscription the long way): either way, executed once.
    assert executions.count(2) == 1


async def test_subscribers_with_the_same_query_share_one_execution(asgi_app, people, monkeypatch):
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    executions = []
    real = StrawberryGraphQLCoreExecutionContext.execute_operation

    def counted(self, serially=None):
        executions.append(getattr(self.root_value, "share_key", None))
        return real(self, serially)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "execute_operation", counted)
    chat = people["chat"]
    sockets = [
        await subscribed(asgi_app, token, SHARED_NO_EMAIL, {"chatId": str(chat.id)})
        for token in (people["ada_token"], people["grace_token"], people["ada_token"])
    ]

    await send(asgi_app, people["grace_token"], chat, "once for all")
    received = [await first_message(socket) for socket in sockets]
    for socket in sockets:
        await socket.close()

    expected = {"chatEvents": {"message": {"seq": 1, "body": "once for all"}}}
    assert received == [expected] * 3
    assert len([key for key in executions if key is not None]) == 1


async def test_a_viewer_dependent_field_is_not_shared_between_viewers(asgi_app, people):
    chat = people["chat"]
    ada = await subscribed(asgi_app, people["ada_token"], SHARED, {"chatId": str(chat.id)})
    grace = await subscribed(asgi_app, people["grace_token"], SHARED, {"chatId": str(chat.id)})

    await send(asgi_app, people["ada_token"], chat, "whose email?")
    seen_by_ada, seen_by_grace = await first_message(ada), await first_message(grace)
    await ada.close()
    await grace.close()

    assert seen_by_ada["chatEvents"]["message"]["author"] == {"email": "ada@example.com"}
    assert seen_by_grace["chatEvents"]["message"]["author"] == {"email": None}


async def test_a_completed_operation_gets_no_more_frames_and_its_id_can_be_reused(
    asgi_app, people
):
    chat, hub = people["chat"], fanout.hub()
    socket = await subscribed(asgi_app, people["ada_token"], RESUMING, {"chatId": str(chat.id)})
    await socket.send({"type": "complete", "id": "s"})
    await asyncio.sleep(0.05)
    left_the_group = f"chat.{chat.id.hex}" not in hub.feeds

    await send(asgi_app, people["grace_token"], chat, "after complete")
    quiet = await socket.communicator.receive_nothing(timeout=0.2)
    await subscribe(socket, "s", RESUMING, {"chatId": str(chat.id)})
    await send(asgi_app, people["grace_token"], chat, "resubscribed")
    again = await first_message(socket)
    nothing_else = await socket.communicator.receive_nothing(timeout=0.2)
    await socket.close()

    assert left_the_group
    assert quiet
    assert again["chatEvents"]["message"]["seq"] == 2
    assert nothing_else


async def test_a_result_with_errors_goes_through_the_generator(asgi_app, people, monkeypatch):
    async def with_errors(sink, root):
        return None

    monkeypatch.setattr(fanout, "_payload", with_errors)
    chat, hub = people["chat"], fanout.hub()
    socket = await subscribed(asgi_app, people["ada_token"], RESUMING, {"chatId": str(chat.id)})
    await settled(chat, 1)
    written = hub.written

    await send(asgi_app, people["grace_token"], chat, "the long way")
    received = await first_message(socket)
    await socket.close()

    assert received["chatEvents"]["message"]["body"] == "the long way"
    assert hub.written == written


async def test_a_sender_who_renamed_themself_is_shown_by_the_new_name_to_everyone(
    asgi_app, people
):
    # Ada's socket signed in before the rename: the event, not the socket's copy of her,
    # says what her name is now.
    chat = people["chat"]
    query = RESUMING.replace("author { id displayName }", "author { displayName email }")
    ada = await subscribed(asgi_app, people["ada_token"], query, {"chatId": str(chat.id)})
    grace = await subscribed(asgi_app, people["grace_token"], query, {"chatId": str(chat.id)})
    await settled(chat, 2)
    renamed = await http(
        asgi_app,
        'mutation { updateProfile(displayName: "Ada King") { ... on User { displayName } } }',
        {},
        people["ada_token"],
    )

    await send(asgi_app, people["ada_token"], chat, "new name")
    seen = [(await first_message(s))["chatEvents"]["message"]["author"] for s in (ada, grace)]
    await ada.close()
    await grace.close()

    assert renamed == {"data": {"updateProfile": {"displayName": "Ada King"}}}
    assert seen == [
        {"displayName": "Ada King", "email": "ada@example.com"},
        {"displayName": "Ada King", "email": None},
    ]


async def test_an_inbox_stops_listening_to_a_chat_the_viewer_lost(asgi_app, people):
    ada, grace = people["ada"], people["grace"]
    inbox = await subscribed(
        asgi_app, people["ada_token"], "subscription { inbox { __typename } }", {}
    )
    room = await sync_to_async(services.create_room)(owner=grace, name="Brief")
    group = f"chat.{room.id.hex}"
    await sync_to_async(services.add_members)(actor=grace, chat_id=room.id, user_ids=[ada.id])
    gained = [await inbox.next_payload("s") for _ in range(2)]
    listening = group in fanout.hub().feeds

    await sync_to_async(services.remove_member)(actor=grace, chat_id=room.id, user_id=ada.id)
    lost = [await inbox.next_payload("s") for _ in range(2)]
    still_listening = group in fanout.hub().feeds
    await inbox.close()

    assert [p["data"]["inbox"]["__typename"] for p in gained + lost] == [
        "AddedToChat",
        "MessageAdded",
        "MessageAdded",
        "RemovedFromChat",
    ]
    assert listening
    assert not still_listening


TYPING_EVENTS = """
subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) {
    ... on TypingChanged { typing expiresAt user { displayName } }
  }
}
"""
SET_TYPING = "mutation($c: ID!) { setTyping(chatId: $c, typing: true) { __typename } }"


async def test_typing_and_its_lapse_are_written_directly_and_not_to_the_typist(
    asgi_app, people, settings, monkeypatch
):
    from schema.events import TypingChanged

    executed = []
    real = fanout._payload

    async def recorded(sink, root):
        if isinstance(root, TypingChanged):
            executed.append(root.typing)
        return await real(sink, root)

    monkeypatch.setattr(fanout, "_payload", recorded)
    settings.TYPING_TTL = 0.5
    chat = people["chat"]
    ada = await subscribed(asgi_app, people["ada_token"], TYPING_EVENTS, {"chatId": str(chat.id)})
    grace = await subscribed(
        asgi_app, people["grace_token"], TYPING_EVENTS, {"chatId": str(chat.id)}
    )
    await settled(chat, 2)

    await http(asgi_app, SET_TYPING, {"c": str(chat.id)}, people["grace_token"])
    seen = [await typing_event(ada) for _ in range(2)]
    typist_heard = await typing_events_within(grace, 0.3)
    await ada.close()
    await grace.close()

    assert [(e["typing"], e["user"]["displayName"]) for e in seen] == [
        (True, "Grace"),
        (False, "Grace"),
    ]
    assert seen[0]["expiresAt"] is not None
    assert seen[1]["expiresAt"] is None
    assert executed == [True, False]  # once each, for the direct write to Ada
    assert typist_heard == []


async def typing_event(socket) -> dict:
    """The next typing change, past presence changes (`{}` under this selection)."""
    while True:
        event = (await socket.next_payload("s"))["data"]["chatEvents"]
        if event:
            return event


async def typing_events_within(socket, timeout: float) -> list[dict]:
    """The typing changes that arrive within `timeout`, presence changes left out."""
    seen = []
    while not await socket.communicator.receive_nothing(timeout=timeout):
        event = (await socket.next_payload("s"))["data"]["chatEvents"]
        if event:
            seen.append(event)
    return seen
