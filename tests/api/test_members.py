"""A room's member list, who is online, and when people were last seen."""

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import presence, services
from chat.models import Membership, User
from tests.api.realtime import http
from tests.factories import UserFactory, token_for
from tests.ws import TRANSPORT_WS, GraphQLSocket

MEMBERS = """
query($id: ID!, $first: Int, $after: String, $search: String! = "") {
  chat(id: $id) {
    memberCount
    onlineCount
    members(first: $first, after: $after, search: $search) {
      edges { node { role lastReadSeq online joinedAt user { id displayName lastSeenAt } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
ROOMS = """
query {
  rooms(first: 10) { edges { node { name members(first: 2) { edges { node { role } } } } } }
}
"""
CHATS = "query { chats(first: 50) { edges { node { onlineCount } } } }"
USER = "query($id: ID!) { user(id: $id) { lastSeenAt } }"


def _online(*users: User) -> None:
    User.objects.filter(pk__in=[u.pk for u in users]).update(last_seen_at=None)


@pytest.fixture
def room(user, settings):
    settings.MEMBERSHIP_RATE_BURST = 10_000
    return services.create_room(owner=user, name="Big room", is_public=True)


def _page(gql, token, room, **variables):
    response = gql.execute(MEMBERS, {"id": str(room.id), **variables}, token=token)
    return response.data["chat"]


@pytest.mark.django_db
def test_250_members_page_by_role_then_name_and_search_by_word(gql, user, token, room):
    names = [f"{first} {last}" for last in ("Hopper", "Lovelace", "Turing") for first in "ABC"]
    members = [UserFactory(display_name=f"{names[n % 9]} {n:03}") for n in range(249)]
    for member in members:
        services.join_room(user=member, chat_id=room.id)
    admin = members[100]
    Membership.objects.filter(chat=room, user=admin).update(role=Membership.Role.ADMIN)

    seen, after = [], None
    while True:
        page = _page(gql, token, room, first=100, after=after)["members"]
        seen += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    found = _page(gql, token, room, search="hop")["members"]["edges"]

    assert len(seen) == 250
    assert [n["role"] for n in seen[:3]] == ["OWNER", "ADMIN", "MEMBER"]
    assert [n["user"]["id"] for n in seen[:2]] == [str(user.id), str(admin.id)]
    rest = [(n["user"]["displayName"].lower(), n["user"]["id"]) for n in seen[2:]]
    assert rest == sorted(rest)
    assert len({n["user"]["id"] for n in seen}) == 250
    hoppers = sorted(m.display_name for m in members if "Hopper" in m.display_name)
    assert len(hoppers) == 84
    assert sorted(e["node"]["user"]["displayName"] for e in found) == hoppers[:50]


@pytest.mark.django_db
def test_a_page_of_100_members_costs_the_same_queries_as_a_page_of_5(
    gql, user, token, room, django_assert_max_num_queries
):
    for member in UserFactory.create_batch(120):
        services.join_room(user=member, chat_id=room.id)
    gql.execute(MEMBERS, {"id": str(room.id), "first": 1}, token=token)  # token's last use

    with django_assert_max_num_queries(6) as few:
        _page(gql, token, room, first=5)
    with django_assert_max_num_queries(6) as many:
        page = _page(gql, token, room, first=100)

    assert len(page["members"]["edges"]) == 100
    assert len(few.captured_queries) == len(many.captured_queries)


@pytest.mark.django_db
def test_online_and_online_count_follow_presence(gql, user, token, room, grace):
    services.join_room(user=grace, chat_id=room.id)
    _online(user)

    page = _page(gql, token, room)

    assert page["onlineCount"] == 1
    assert page["memberCount"] == 2
    assert [(e["node"]["user"]["id"], e["node"]["online"]) for e in page["members"]["edges"]] == [
        (str(user.id), True),
        (str(grace.id), False),
    ]


@pytest.mark.django_db
def test_online_count_is_one_query_for_the_whole_chat_list(
    gql, user, token, settings, django_assert_max_num_queries
):
    settings.MEMBERSHIP_RATE_BURST = 1000
    for _ in range(10):
        services.open_direct_chat(user=user, other_user_id=UserFactory().id)
    gql.execute(CHATS, token=token)

    with django_assert_max_num_queries(5):
        edges = gql.execute(CHATS, token=token).data["chats"]["edges"]

    assert [e["node"]["onlineCount"] for e in edges] == [0] * 10


@pytest.mark.django_db
def test_last_seen_is_shown_to_people_who_share_a_chat_and_hidden_while_online(
    gql, user, token, grace, make_user
):
    services.open_direct_chat(user=user, other_user_id=grace.id)
    stranger = token_for(make_user())
    when = timezone.now().replace(microsecond=0)
    User.objects.filter(pk=grace.pk).update(last_seen_at=when)

    to_peer = gql.execute(USER, {"id": str(grace.id)}, token=token)
    to_stranger = gql.execute(USER, {"id": str(grace.id)}, token=stranger)
    _online(grace)
    while_online = gql.execute(USER, {"id": str(grace.id)}, token=token)

    assert to_peer.data == {"user": {"lastSeenAt": when.isoformat()}}
    assert to_stranger.data == {"user": {"lastSeenAt": None}}
    assert while_online.data == {"user": {"lastSeenAt": None}}


@pytest.mark.django_db
def test_members_of_a_public_room_are_open_and_of_a_private_one_only_to_members(
    gql, user, token, grace, make_user
):
    services.create_room(owner=user, name="Open", is_public=True)
    private = services.create_room(owner=user, name="Private")
    services.add_members(actor=user, chat_id=private.id, user_ids=[grace.id])
    outsider = token_for(make_user())

    listing = gql.execute(ROOMS, token=outsider)
    after_leaving = gql.execute(
        "mutation($id: ID!) { leaveRoom(chatId: $id) { ... on Chat { members { edges { "
        "node { role } } } } } }",
        {"id": str(private.id)},
        token=token_for(grace),
    )

    assert listing.data == {
        "rooms": {
            "edges": [
                {"node": {"name": "Open", "members": {"edges": [{"node": {"role": "OWNER"}}]}}}
            ]
        }
    }
    assert after_leaving.error_codes == ["NOT_FOUND"], after_leaving.json


MEMBER_PRESENCE = """
query($id: ID!, $user: ID!) {
  chat(id: $id) { onlineCount members { edges { node { online user { id } } } } }
  user(id: $user) { lastSeenAt }
}
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
async def test_two_sockets_count_once_and_the_last_to_close_sets_last_seen(
    asgi_app, user, grace, make_user
):
    room = await sync_to_async(services.create_room)(owner=user, name="Room", is_public=True)
    await sync_to_async(services.join_room)(user=grace, chat_id=room.id)
    ada_token, grace_token, stranger_token = await sync_to_async(
        lambda: (token_for(user), token_for(grace), token_for(make_user()))
    )()
    variables = {"id": str(room.id), "user": str(grace.id)}

    async def seen(token=ada_token):
        data = (await http(asgi_app, MEMBER_PRESENCE, variables, token))["data"]
        edges = data["chat"]["members"]["edges"]
        online = {e["node"]["user"]["id"]: e["node"]["online"] for e in edges}
        return data["chat"]["onlineCount"], online[str(grace.id)], data["user"]["lastSeenAt"]

    sockets = []
    for _ in range(2):
        socket = GraphQLSocket(asgi_app, TRANSPORT_WS)
        await socket.connect()
        await socket.init({"authorization": f"Bearer {grace_token}"})
        sockets.append(socket)
    await presence.flush()  # the database learns of presence changes in batches
    both_open = await seen()
    await sockets[0].close()
    await presence.flush()
    one_open = await seen()
    await sockets[1].close()
    await presence.flush()
    closed = await seen()
    to_stranger = await http(asgi_app, USER, {"id": str(grace.id)}, stranger_token)

    assert both_open == (1, True, None)
    assert one_open == (1, True, None)
    assert closed[:2] == (0, False)
    assert closed[2] is not None
    assert to_stranger == {"data": {"user": {"lastSeenAt": None}}}
