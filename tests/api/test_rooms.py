"""Rooms by name (slugs), their settings, and archiving them."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError

from chat import services
from chat.models import Chat, Membership, Message
from tests.api.realtime import events as next_events
from tests.api.realtime import http, subscribed
from tests.factories import token_for

CREATE = """
mutation($name: String!, $slug: String, $public: Boolean! = true) {
  createRoom(name: $name, slug: $slug, isPublic: $public) {
    ... on Chat { id slug }
    ... on OperationInfo { messages { field code } }
  }
}
"""
ROOM = "query($slug: String!) { room(slug: $slug) { id name slug myRole } }"
JOIN = """
mutation($chatId: ID, $slug: String) {
  joinRoom(chatId: $chatId, slug: $slug) {
    ... on Chat { id memberCount }
    ... on OperationInfo { messages { field code } }
  }
}
"""
UPDATE = """
mutation($chatId: ID!, $name: String, $topic: String, $isPublic: Boolean, $slug: String) {
  updateRoom(chatId: $chatId, name: $name, topic: $topic, isPublic: $isPublic, slug: $slug) {
    ... on Chat { name topic isPublic slug }
    ... on OperationInfo { messages { field code } }
  }
}
"""
ARCHIVE = """
mutation($chatId: ID!) {
  archiveRoom(chatId: $chatId) {
    ... on Chat { archivedAt }
    ... on OperationInfo { messages { field code } }
  }
}
"""
SEND = """
mutation($chatId: ID!) {
  sendMessage(input: { chatId: $chatId, body: "hello?" }) {
    ... on Message { seq }
    ... on OperationInfo { messages { field code } }
  }
}
"""
ROOMS = "query { rooms { edges { node { name } } } }"
UPDATED = """
subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) {
    __typename
    ... on ChatUpdated { chat { id name topic isPublic slug archivedAt } }
  }
}
"""


def _codes(response, name: str) -> list[dict]:
    return response.data[name]["messages"]


@pytest.fixture
def room(user):
    return services.create_room(owner=user, name="General", is_public=True, slug="general")


@pytest.mark.django_db
def test_a_slug_is_given_at_creation_lowercased_and_unique(gql, token, grace, room):
    made = gql.execute(CREATE, {"name": "Dev", "slug": "  Dev-Talk "}, token=token)
    taken = gql.execute(CREATE, {"name": "Other", "slug": "general"}, token=token_for(grace))
    invalid = [
        gql.execute(CREATE, {"name": "Bad", "slug": slug}, token=token)
        for slug in ("-dev", "dev--talk", "dév", "a b", "x" * 51)
    ]

    assert made.data["createRoom"]["slug"] == "dev-talk"
    assert _codes(taken, "createRoom") == [{"field": "slug", "code": "slug_taken"}]
    assert {str(_codes(r, "createRoom")) for r in invalid} == {
        str([{"field": "slug", "code": "invalid_slug"}])
    }
    assert Chat.objects.filter(kind=Chat.Kind.GROUP).count() == 2


@pytest.mark.django_db
def test_room_by_slug_is_public_rooms_and_ones_you_are_in(gql, user, token, grace, room):
    private = services.create_room(owner=user, name="Staff", slug="staff")

    mine = gql.execute(ROOM, {"slug": "STAFF"}, token=token)
    outsider = token_for(grace)
    public = gql.execute(ROOM, {"slug": "general"}, token=outsider)
    hidden = gql.execute(ROOM, {"slug": "staff"}, token=outsider)
    unknown = gql.execute(ROOM, {"slug": "nope"}, token=outsider)

    assert mine.data == {
        "room": {"id": str(private.id), "name": "Staff", "slug": "staff", "myRole": "OWNER"}
    }
    assert public.data["room"]["myRole"] is None
    assert hidden.error_codes == unknown.error_codes == ["NOT_FOUND"]


@pytest.mark.django_db
def test_join_by_slug_or_by_id_but_not_both(gql, token, grace, room):
    grace_token = token_for(grace)

    joined_ = gql.execute(JOIN, {"slug": "general"}, token=grace_token)
    both = gql.execute(JOIN, {"slug": "general", "chatId": str(room.id)}, token=grace_token)
    neither = gql.execute(JOIN, {}, token=grace_token)
    unknown = gql.execute(JOIN, {"slug": "nowhere"}, token=grace_token)

    assert joined_.data == {"joinRoom": {"id": str(room.id), "memberCount": 2}}
    one_way = [{"field": "chatId", "code": "one_way_to_name_a_room"}]
    assert _codes(both, "joinRoom") == _codes(neither, "joinRoom") == one_way
    assert _codes(unknown, "joinRoom") == [{"field": "chatId", "code": "not_found"}]


@pytest.mark.django_db
def test_owner_and_admins_update_what_they_give(gql, user, token, grace, make_user, room):
    services.join_room(user=grace, chat_id=room.id)
    Membership.objects.filter(user=grace).update(role=Membership.Role.ADMIN)
    member = make_user()
    services.join_room(user=member, chat_id=room.id)
    services.create_room(owner=user, name="Taken", slug="taken")

    renamed = gql.execute(
        UPDATE, {"chatId": str(room.id), "name": " Lobby ", "topic": "Say hi"}, token=token
    )
    by_admin = gql.execute(
        UPDATE, {"chatId": str(room.id), "isPublic": False, "slug": ""}, token=token_for(grace)
    )
    by_member = gql.execute(
        UPDATE, {"chatId": str(room.id), "name": "Mine"}, token=token_for(member)
    )
    nothing = gql.execute(UPDATE, {"chatId": str(room.id)}, token=token)
    taken = gql.execute(UPDATE, {"chatId": str(room.id), "slug": "taken"}, token=token)
    direct = services.open_direct_chat(user=user, other_user_id=member.id)
    not_a_room = gql.execute(UPDATE, {"chatId": str(direct.id), "name": "x"}, token=token)

    assert renamed.data == {
        "updateRoom": {"name": "Lobby", "topic": "Say hi", "isPublic": True, "slug": "general"}
    }
    assert by_admin.data == {
        "updateRoom": {"name": "Lobby", "topic": "Say hi", "isPublic": False, "slug": None}
    }
    assert _codes(by_member, "updateRoom") == [{"field": None, "code": "admin_only"}]
    assert _codes(nothing, "updateRoom") == [{"field": None, "code": "nothing_to_update"}]
    assert _codes(taken, "updateRoom") == [{"field": "slug", "code": "slug_taken"}]
    assert _codes(not_a_room, "updateRoom") == [{"field": "chatId", "code": "not_a_room"}]
    room.refresh_from_db()
    assert (room.name, room.slug, room.is_public) == ("Lobby", None, False)


@pytest.mark.django_db
def test_an_archived_room_is_read_only_and_leaves_rooms(gql, user, token, grace, make_user, room):
    services.join_room(user=grace, chat_id=room.id)
    earlier = services.send_message(author=grace, chat_id=room.id, body="before")
    grace_token = token_for(grace)

    by_member = gql.execute(ARCHIVE, {"chatId": str(room.id)}, token=grace_token)
    archived = gql.execute(ARCHIVE, {"chatId": str(room.id)}, token=token)
    send = gql.execute(SEND, {"chatId": str(room.id)}, token=grace_token)
    join = gql.execute(JOIN, {"chatId": str(room.id)}, token=token_for(make_user()))
    history = gql.execute(
        "query($c: ID!) { messages(chatId: $c, last: 1) { edges { node { body } } } }",
        {"c": str(room.id)},
        token=grace_token,
    )

    assert _codes(by_member, "archiveRoom") == [{"field": None, "code": "owner_only"}]
    assert archived.data["archiveRoom"]["archivedAt"] is not None
    room_archived = [{"field": "chatId", "code": "room_archived"}]
    assert _codes(send, "sendMessage") == _codes(join, "joinRoom") == room_archived
    assert history.data == {"messages": {"edges": [{"node": {"body": "before"}}]}}
    assert gql.execute(ROOMS, token=token).data == {"rooms": {"edges": []}}
    refused = []
    for write in (
        lambda: services.edit_message(user=grace, message_id=earlier.id, body="after"),
        lambda: services.delete_message(user=grace, message_id=earlier.id),
        lambda: services.send_location(author=grace, chat_id=room.id, latitude=1, longitude=2),
    ):
        with pytest.raises(ValidationError) as error:
            write()
        refused.append([e.code for e in error.value.error_dict["chat_id"]])
    assert refused == [["room_archived"]] * 3
    assert Message.objects.filter(chat=room).count() == 3  # created, joined, "before"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
async def test_rename_and_archive_reach_a_live_subscriber(asgi_app, user, grace):
    room = await sync_to_async(services.create_room)(
        owner=user, name="General", is_public=True, slug="general"
    )
    await sync_to_async(services.join_room)(user=grace, chat_id=room.id)
    tokens = await sync_to_async(lambda: (token_for(user), token_for(grace)))()
    socket = await subscribed(asgi_app, tokens[1], UPDATED, {"chatId": str(room.id)})

    await http(asgi_app, UPDATE, {"chatId": str(room.id), "name": "Lobby"}, tokens[0])
    await http(asgi_app, ARCHIVE, {"chatId": str(room.id)}, tokens[0])
    renamed, archived = await asyncio.wait_for(next_events(socket, 2), 5)
    await socket.close()

    assert renamed == {
        "chatEvents": {
            "__typename": "ChatUpdated",
            "chat": {
                "id": str(room.id),
                "name": "Lobby",
                "topic": "",
                "isPublic": True,
                "slug": "general",
                "archivedAt": None,
            },
        }
    }
    assert archived["chatEvents"]["chat"]["archivedAt"] is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
async def test_a_chat_from_an_event_still_answers_the_viewers_fields(asgi_app, user, grace):
    """A chat built from an event carries none of what the chat list loads up front (read
    marker, role, mute, last message, peer): those fields fall back to a query in a
    thread, where the chat list's answer from memory without one (schema.hops)."""
    room = await sync_to_async(services.create_room)(owner=user, name="General", is_public=True)
    await sync_to_async(services.join_room)(user=grace, chat_id=room.id)
    tokens = await sync_to_async(lambda: (token_for(user), token_for(grace)))()
    query = """subscription($chatId: ID!) { chatEvents(chatId: $chatId) {
      ... on ChatUpdated { chat { name unreadCount lastReadSeq myRole isMuted mutedUntil
        lastMessage { body } peer { id } } }
    } }"""
    socket = await subscribed(asgi_app, tokens[1], query, {"chatId": str(room.id)})

    await http(asgi_app, UPDATE, {"chatId": str(room.id), "name": "Lobby"}, tokens[0])
    [renamed] = await asyncio.wait_for(next_events(socket, 1), 5)
    await socket.close()

    membership = await Membership.objects.select_related("chat").aget(chat=room, user=grace)
    chat = renamed["chatEvents"]["chat"]
    assert chat["name"] == "Lobby"
    assert chat["myRole"] == "MEMBER"
    assert chat["isMuted"] is False
    assert chat["mutedUntil"] is None
    assert chat["peer"] is None
    assert chat["lastMessage"] == {"body": f"{grace.display_name} joined"}
    assert chat["lastReadSeq"] == membership.last_read_seq
    assert chat["unreadCount"] == membership.chat.last_seq - membership.last_read_seq
