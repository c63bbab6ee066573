import uuid

import pytest

from chat import services
from chat.models import Message
from tests.factories import token_for

MESSAGE_FIELDS = """
  id chatId seq kind body clientId isDeleted editedAt deletedAt createdAt systemEvent
  author { id displayName } subject { id displayName }
"""

SEND = f"""
mutation($input: SendMessageInput!) {{
  sendMessage(input: $input) {{
    __typename
    ... on Message {{ {MESSAGE_FIELDS} }}
    ... on OperationInfo {{ messages {{ kind field code }} }}
  }}
}}
"""

HISTORY = f"""
query($chatId: ID!, $last: Int, $before: String, $first: Int, $after: String) {{
  messages(chatId: $chatId, last: $last, before: $before, first: $first, after: $after) {{
    edges {{ cursor node {{ {MESSAGE_FIELDS} }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}
"""

CHATS = """
query($first: Int, $after: String) {
  chats(first: $first, after: $after) {
    edges {
      node {
        id kind name unreadCount lastReadSeq myRole memberCount
        peer { id displayName }
        lastMessage { seq body author { displayName } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CHAT = "query($id: ID!) { chat(id: $id) { id kind name unreadCount } }"

OPEN_DIRECT = """
mutation($userId: ID!) {
  openDirectChat(userId: $userId) {
    __typename
    ... on Chat { id kind peer { id } }
    ... on OperationInfo { messages { field code } }
  }
}
"""

CREATE_ROOM = """
mutation($name: String!, $public: Boolean!) {
  createRoom(name: $name, topic: "About things", isPublic: $public) {
    __typename
    ... on Chat { id name topic isPublic memberCount myRole lastMessage { body systemEvent } }
    ... on OperationInfo { messages { field code } }
  }
}
"""

JOIN = """
mutation($chatId: ID!) {
  joinRoom(chatId: $chatId) {
    __typename
    ... on Chat { id memberCount }
    ... on OperationInfo { messages { field code } }
  }
}
"""

MARK_READ = """
mutation($chatId: ID!, $seq: Int!) {
  markRead(chatId: $chatId, seq: $seq) {
    __typename
    ... on Chat { unreadCount lastReadSeq }
    ... on OperationInfo { messages { field code } }
  }
}
"""

ERRORS_ONLY = "... on OperationInfo { messages { field code } }"
LEAVE = f"mutation($c: ID!) {{ leaveRoom(chatId: $c) {{ {ERRORS_ONLY} }} }}"
EDIT = f'mutation($m: ID!) {{ editMessage(messageId: $m, body: "x") {{ {ERRORS_ONLY} }} }}'
DELETE = f"mutation($m: ID!) {{ deleteMessage(messageId: $m) {{ {ERRORS_ONLY} }} }}"

ROOMS = """
query($search: String!) { rooms(search: $search) { edges { node { name memberCount } } } }
"""

USERS = """
query($search: String!) { users(search: $search) { edges { node { id displayName email } } } }
"""


@pytest.fixture
def direct(user, grace):
    return services.open_direct_chat(user=user, other_user_id=grace.id)


@pytest.fixture
def grace_token(grace) -> str:
    return token_for(grace)


def send(gql, token, chat_id, body, client_id=None):
    variables = {"input": {"chatId": str(chat_id), "body": body, "clientId": client_id}}
    return gql.execute(SEND, variables, token=token).data["sendMessage"]


# --- sending ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_message_returns_the_whole_message(gql, user, token, direct):
    message = send(gql, token, direct.id, "  Hello, Grace  ", client_id="m-1")

    stored = Message.objects.get()
    assert message == {
        "__typename": "Message",
        "id": str(stored.id),
        "chatId": str(direct.id),
        "seq": 1,
        "kind": "TEXT",
        "body": "Hello, Grace",
        "clientId": "m-1",
        "isDeleted": False,
        "editedAt": None,
        "deletedAt": None,
        "createdAt": stored.created_at.isoformat(),
        "systemEvent": None,
        "author": {"id": str(user.id), "displayName": "Ada Lovelace"},
        "subject": None,
    }


@pytest.mark.django_db
def test_a_retried_send_returns_the_same_message(gql, token, direct):
    first = send(gql, token, direct.id, "once", client_id="retry-1")
    again = send(gql, token, direct.id, "once", client_id="retry-1")

    assert again == first
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_a_stranger_learns_nothing_from_a_reply_or_a_mention(gql, make_user, user, grace, direct):
    """Replies and mentions are resolved under the chat's lock, after membership: their
    errors would otherwise tell a stranger which messages and members a chat has."""
    outsider = make_user()
    stranger = token_for(outsider)
    original = services.send_message(author=user, chat_id=direct.id, body="hi")

    # Whether the message or the member is there or not, the answer is the same.
    for extra in [
        {"replyToId": str(original.id)},
        {"replyToId": str(uuid.uuid4())},
        {"mentions": [str(grace.id)]},
        {"mentions": [str(outsider.id)]},
    ]:
        variables = {"input": {"chatId": str(direct.id), "body": "hi", **extra}}
        result = gql.execute(SEND, variables, token=stranger).data["sendMessage"]
        assert result["messages"] == [
            {"kind": "VALIDATION", "field": "chatId", "code": "not_found"}
        ]
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_a_client_id_used_in_another_chat_is_refused_whatever_the_chat_id(
    gql, user, token, direct
):
    room = services.create_room(owner=user, name="Room")
    first = send(gql, token, direct.id, "first", client_id="k-1")
    before = Message.objects.count()

    # Another chat of the sender's, and (hostile) a chat id that is not one.
    for chat_id in [room.id, "not-an-id"]:
        result = send(gql, token, chat_id, "second", client_id="k-1")
        assert result["messages"] == [
            {"kind": "VALIDATION", "field": "clientId", "code": "client_id_reused"}
        ]
    assert Message.objects.count() == before
    assert send(gql, token, direct.id, "first", client_id="k-1") == first


@pytest.mark.parametrize(
    ("body", "code"),
    [("", "message_empty"), (" \n ", "message_empty"), ("x" * 4001, "message_too_long")],
)
@pytest.mark.django_db
def test_a_bad_body_is_an_error_as_data(gql, token, direct, body, code):
    result = send(gql, token, direct.id, body)

    assert result == {
        "__typename": "OperationInfo",
        "messages": [{"kind": "VALIDATION", "field": "body", "code": code}],
    }
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_sending_too_fast_is_rate_limited_with_a_retry_time(gql, token, direct, settings):
    settings.SEND_RATE_BURST, settings.SEND_RATE_PER_SECOND = 2, 0.2
    send(gql, token, direct.id, "1")
    send(gql, token, direct.id, "2")

    response = gql.execute(SEND, {"input": {"chatId": str(direct.id), "body": "3"}}, token=token)

    assert response.json["data"] is None
    assert response.errors[0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 5}
    assert Message.objects.count() == 2


# --- history ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_paging_backwards_through_1000_messages_returns_each_once_in_order(
    gql, user, grace, token, settings
):
    settings.SEND_RATE_BURST = 10_000
    room = services.create_room(owner=user, name="Archive", is_public=True)
    for n in range(1000):
        services.send_message(author=user, chat_id=room.id, body=f"message {n}")
        if n == 499:
            services.join_room(user=grace, chat_id=room.id)

    seen, before, pages = [], None, 0
    while True:
        page = gql.execute(
            HISTORY, {"chatId": str(room.id), "last": 100, "before": before}, token=token
        ).data["messages"]
        seen = [edge["node"] for edge in page["edges"]] + seen
        pages += 1
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]

    assert pages == 11
    assert [m["seq"] for m in seen] == list(range(1, 1003))
    assert seen[0]["body"] == "Ada Lovelace created the room"
    assert (seen[501]["kind"], seen[501]["body"], seen[501]["systemEvent"]) == (
        "SYSTEM",
        "Grace Hopper joined",
        "MEMBER_JOINED",
    )
    assert seen[501]["subject"] == {"id": str(grace.id), "displayName": "Grace Hopper"}
    assert [m["body"] for m in seen[1:501]] == [f"message {n}" for n in range(500)]
    assert seen[-1]["body"] == "message 999"


@pytest.mark.django_db
def test_history_pages_forward_from_a_cursor(gql, token, direct):
    for n in range(5):
        send(gql, token, direct.id, f"m{n}")
    oldest_two = gql.execute(HISTORY, {"chatId": str(direct.id), "first": 2}, token=token)

    page = oldest_two.data["messages"]
    rest = gql.execute(
        HISTORY,
        {"chatId": str(direct.id), "first": 10, "after": page["pageInfo"]["endCursor"]},
        token=token,
    ).data["messages"]

    assert [e["node"]["body"] for e in page["edges"]] == ["m0", "m1"]
    assert page["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["body"] for e in rest["edges"]] == ["m2", "m3", "m4"]
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": rest["edges"][0]["cursor"],
        "endCursor": rest["edges"][-1]["cursor"],
    }


@pytest.mark.django_db
def test_the_default_history_page_is_the_newest_50(gql, token, direct, settings):
    settings.SEND_RATE_BURST = 1000
    for n in range(60):
        services.send_message(
            author=direct.memberships.first().user, chat_id=direct.id, body=f"{n}"
        )

    page = gql.execute(HISTORY, {"chatId": str(direct.id)}, token=token).data["messages"]

    assert [e["node"]["seq"] for e in page["edges"]] == list(range(11, 61))
    assert page["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.django_db
def test_a_history_page_costs_the_same_queries_whatever_its_size(
    gql, user, token, direct, settings, django_assert_max_num_queries
):
    settings.SEND_RATE_BURST = 1000
    for n in range(100):
        services.send_message(author=user, chat_id=direct.id, body=f"{n}")

    for size in (5, 100):
        with django_assert_max_num_queries(4):
            page = gql.execute(HISTORY, {"chatId": str(direct.id), "last": size}, token=token)
        assert len(page.data["messages"]["edges"]) == size


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 101}, "`first` must be between 0 and 100."),
        ({"last": -1}, "`last` must be between 0 and 100."),
        ({"first": 1, "last": 1}, "Pass `first` or `last`, not both."),
        ({"before": "not-a-cursor"}, "Invalid cursor."),
        ({"after": "WzEsMl0="}, "Invalid cursor."),
    ],
)
@pytest.mark.django_db
def test_bad_paging_arguments_are_bad_user_input(gql, token, direct, variables, message):
    response = gql.execute(HISTORY, {"chatId": str(direct.id), **variables}, token=token)

    assert response.error_codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["message"] == message


# --- my chats and unread counts ------------------------------------------------------


@pytest.mark.django_db
def test_my_chats_most_recent_first_with_last_message_unread_and_peer(
    gql, user, grace, make_user, token, grace_token, direct
):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    send(gql, grace_token, direct.id, "first")
    send(gql, grace_token, direct.id, "second")
    send(gql, grace_token, room.id, "in the room")
    quiet = services.open_direct_chat(user=user, other_user_id=make_user(display_name="Quiet").id)

    chats = [e["node"] for e in gql.execute(CHATS, token=token).data["chats"]["edges"]]

    assert [c["id"] for c in chats] == [str(quiet.id), str(room.id), str(direct.id)]
    assert chats[1] == {
        "id": str(room.id),
        "kind": "GROUP",
        "name": "Lounge",
        "unreadCount": 2,
        "lastReadSeq": 1,
        "myRole": "OWNER",
        "memberCount": 2,
        "peer": None,
        "lastMessage": {
            "seq": 3,
            "body": "in the room",
            "author": {"displayName": "Grace Hopper"},
        },
    }
    assert chats[2]["peer"] == {"id": str(grace.id), "displayName": "Grace Hopper"}
    assert (chats[2]["unreadCount"], chats[2]["lastMessage"]["body"]) == (2, "second")
    assert (chats[0]["lastMessage"], chats[0]["unreadCount"]) == (None, 0)


@pytest.mark.django_db
def test_mark_read_moves_unread_counts_across_two_users(gql, token, grace_token, direct):
    for n in range(4):
        send(gql, token, direct.id, f"{n}")

    before = gql.execute(CHAT, {"id": str(direct.id)}, token=grace_token).data["chat"]
    marked = gql.execute(MARK_READ, {"chatId": str(direct.id), "seq": 3}, token=grace_token)
    backwards = gql.execute(MARK_READ, {"chatId": str(direct.id), "seq": 1}, token=grace_token)
    sender = gql.execute(CHAT, {"id": str(direct.id)}, token=token).data["chat"]

    assert before["unreadCount"] == 4
    assert marked.data["markRead"] == {"__typename": "Chat", "unreadCount": 1, "lastReadSeq": 3}
    assert backwards.data["markRead"] == {"__typename": "Chat", "unreadCount": 1, "lastReadSeq": 3}
    assert sender["unreadCount"] == 0


@pytest.mark.django_db
def test_the_chat_list_costs_the_same_queries_for_3_or_30_chats(
    gql, user, make_user, token, settings, django_assert_max_num_queries
):
    settings.SEND_RATE_BURST = settings.MEMBERSHIP_RATE_BURST = 1000

    def add_chats(count):
        for _ in range(count):
            other = make_user()
            chat = services.open_direct_chat(user=user, other_user_id=other.id)
            services.send_message(author=other, chat_id=chat.id, body="hi")
            room = services.create_room(owner=other, name="Room", is_public=True)
            services.join_room(user=user, chat_id=room.id)

    add_chats(2)
    gql.execute(CHATS, token=token)  # the first request also records the token's last use
    with django_assert_max_num_queries(5) as few:
        small = gql.execute(CHATS, token=token).data["chats"]["edges"]
    add_chats(14)
    with django_assert_max_num_queries(5) as many:
        large = gql.execute(CHATS, token=token).data["chats"]["edges"]

    assert (len(small), len(large)) == (4, 32)
    assert len(few.captured_queries) == len(many.captured_queries)


@pytest.mark.django_db
def test_the_chat_list_pages_by_cursor(gql, user, make_user, token):
    chats = [services.open_direct_chat(user=user, other_user_id=make_user().id) for _ in range(5)]

    first = gql.execute(CHATS, {"first": 3}, token=token).data["chats"]
    rest = gql.execute(
        CHATS, {"first": 3, "after": first["pageInfo"]["endCursor"]}, token=token
    ).data["chats"]

    ids = [e["node"]["id"] for e in first["edges"] + rest["edges"]]
    assert ids == [str(c.id) for c in reversed(chats)]
    assert (first["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasNextPage"]) == (True, False)


# --- rooms, direct chats, users --------------------------------------------------------


@pytest.mark.django_db
def test_create_and_join_a_room_over_graphql(gql, token, grace_token):
    created = gql.execute(CREATE_ROOM, {"name": "Engines", "public": True}, token=token)
    room = created.data["createRoom"]
    joined = gql.execute(JOIN, {"chatId": room["id"]}, token=grace_token)

    assert room == {
        "__typename": "Chat",
        "id": room["id"],
        "name": "Engines",
        "topic": "About things",
        "isPublic": True,
        "memberCount": 1,
        "myRole": "OWNER",
        "lastMessage": {"body": "Ada Lovelace created the room", "systemEvent": "ROOM_CREATED"},
    }
    assert joined.data["joinRoom"] == {"__typename": "Chat", "id": room["id"], "memberCount": 2}


@pytest.mark.django_db
def test_create_room_rejects_a_blank_name(gql, token):
    response = gql.execute(CREATE_ROOM, {"name": "  ", "public": False}, token=token)

    assert response.data["createRoom"] == {
        "__typename": "OperationInfo",
        "messages": [{"field": "name", "code": "invalid_room_name"}],
    }


@pytest.mark.django_db
def test_rooms_lists_public_rooms_with_member_counts(gql, user, grace, token):
    busy = services.create_room(owner=user, name="Busy Room", is_public=True)
    services.join_room(user=grace, chat_id=busy.id)
    services.create_room(owner=user, name="Quiet Room", is_public=True)
    services.create_room(owner=user, name="Secret Room", is_public=False)

    everything = gql.execute(ROOMS, {"search": ""}, token=token).data["rooms"]["edges"]
    quiet = gql.execute(ROOMS, {"search": "quiet"}, token=token).data["rooms"]["edges"]

    assert [e["node"] for e in everything] == [
        {"name": "Busy Room", "memberCount": 2},
        {"name": "Quiet Room", "memberCount": 1},
    ]
    assert [e["node"]["name"] for e in quiet] == ["Quiet Room"]


@pytest.mark.django_db
def test_open_direct_chat_over_graphql(gql, user, grace, token, grace_token):
    mine = gql.execute(OPEN_DIRECT, {"userId": str(grace.id)}, token=token).data["openDirectChat"]
    theirs = gql.execute(OPEN_DIRECT, {"userId": str(user.id)}, token=grace_token)
    myself = gql.execute(OPEN_DIRECT, {"userId": str(user.id)}, token=token)

    assert mine == {
        "__typename": "Chat",
        "id": mine["id"],
        "kind": "DIRECT",
        "peer": {"id": str(grace.id)},
    }
    assert theirs.data["openDirectChat"]["id"] == mine["id"]
    assert myself.data["openDirectChat"] == {
        "__typename": "OperationInfo",
        "messages": [{"field": "userId", "code": "cannot_chat_with_self"}],
    }


@pytest.mark.django_db
def test_users_search_finds_active_users_by_name_or_whole_email(gql, make_user, token):
    alan = make_user(email="alan@example.com", display_name="Alan Turing")
    make_user(email="turing.fan@example.com", display_name="Fan", is_active=False)
    barbara = make_user(email="liskov@example.com", display_name="Barbara Liskov")

    by_name = gql.execute(USERS, {"search": "turi"}, token=token).data["users"]["edges"]
    by_email = gql.execute(USERS, {"search": " LISKOV@example.com"}, token=token)
    by_email_prefix = gql.execute(USERS, {"search": "liskov@"}, token=token)
    by_middle_of_email = gql.execute(USERS, {"search": "example"}, token=token)

    assert [e["node"] for e in by_name] == [
        {"id": str(alan.id), "displayName": "Alan Turing", "email": None}
    ]
    assert [e["node"]["id"] for e in by_email.data["users"]["edges"]] == [str(barbara.id)]
    # A private address is never matched in part: it cannot be spelled out letter by letter.
    assert by_email_prefix.data["users"]["edges"] == []
    assert by_middle_of_email.data["users"]["edges"] == []


# --- access ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_non_member_cannot_read_or_write_a_chat(gql, user, make_user, direct):
    message = services.send_message(author=user, chat_id=direct.id, body="private")
    outsider = token_for(make_user())
    chat_id = str(direct.id)

    reads = [
        gql.execute(CHAT, {"id": chat_id}, token=outsider),
        gql.execute(HISTORY, {"chatId": chat_id}, token=outsider),
    ]
    writes = {
        "sendMessage": gql.execute(
            SEND, {"input": {"chatId": chat_id, "body": "hi"}}, token=outsider
        ),
        "markRead": gql.execute(MARK_READ, {"chatId": chat_id, "seq": 1}, token=outsider),
        "joinRoom": gql.execute(JOIN, {"chatId": chat_id}, token=outsider),
        "leaveRoom": gql.execute(LEAVE, {"c": chat_id}, token=outsider),
        "editMessage": gql.execute(EDIT, {"m": str(message.id)}, token=outsider),
        "deleteMessage": gql.execute(DELETE, {"m": str(message.id)}, token=outsider),
    }

    for read in reads:
        assert read.error_codes == ["NOT_FOUND"]
        assert read.errors[0]["message"] == "Chat not found."
    for name, write in writes.items():
        assert write.data[name]["messages"][0]["code"] == "not_found", name
    assert Message.objects.count() == 1


@pytest.mark.parametrize("chat_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
@pytest.mark.django_db
def test_an_unknown_chat_is_not_found(gql, token, chat_id):
    assert gql.execute(CHAT, {"id": chat_id}, token=token).error_codes == ["NOT_FOUND"]
    assert gql.execute(HISTORY, {"chatId": chat_id}, token=token).error_codes == ["NOT_FOUND"]


@pytest.mark.django_db
def test_a_member_reads_an_empty_page_where_a_stranger_is_refused(gql, token, user, make_user):
    """The page's statement checks the membership itself: no rows is an empty chat, or a
    page before the first message, for a member, and NOT_FOUND for anyone else."""
    empty = services.open_direct_chat(user=user, other_user_id=make_user().id)
    stranger = token_for(make_user())
    busy = services.create_room(owner=user, name="Busy")
    services.send_message(author=user, chat_id=busy.id, body="the newest")
    edges = gql.execute(HISTORY, {"chatId": str(busy.id)}, token=token).data["messages"]["edges"]
    first = edges[0]

    pages = [
        gql.execute(HISTORY, {"chatId": str(empty.id)}, token=token),
        gql.execute(HISTORY, {"chatId": str(busy.id), "before": first["cursor"]}, token=token),
    ]
    refused = [
        gql.execute(HISTORY, {"chatId": str(empty.id)}, token=stranger),
        gql.execute(HISTORY, {"chatId": str(busy.id), "before": first["cursor"]}, token=stranger),
    ]

    for page in pages:
        assert "errors" not in page.json
        assert page.data["messages"]["edges"] == []
        assert page.data["messages"]["pageInfo"]["hasPreviousPage"] is False
    assert [r.error_codes for r in refused] == [["NOT_FOUND"], ["NOT_FOUND"]]


@pytest.mark.django_db
def test_chat_queries_need_a_signed_in_user(gql, direct):
    for query, variables in [(CHATS, {}), (CHAT, {"id": str(direct.id)}), (ROOMS, {"search": ""})]:
        assert gql.execute(query, variables).error_codes == ["UNAUTHENTICATED"]


ADD_MEMBERS = """
mutation($c: ID!, $u: [ID!]!) {
  addMembers(chatId: $c, userIds: $u) {
    __typename
    ... on Chat { memberCount }
    ... on OperationInfo { messages { kind field code message } }
  }
}
"""
EDIT_FULL = """
mutation($m: ID!) {
  editMessage(messageId: $m, body: "changed") {
    __typename
    ... on OperationInfo { messages { kind field code message } }
  }
}
"""


@pytest.mark.django_db
def test_permission_failures_are_errors_as_data_of_kind_permission(
    gql, user, grace, make_user, grace_token
):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    message = services.send_message(author=user, chat_id=room.id, body="mine")

    add = gql.execute(
        ADD_MEMBERS, {"c": str(room.id), "u": [str(make_user().id)]}, token=grace_token
    )
    edit = gql.execute(EDIT_FULL, {"m": str(message.id)}, token=grace_token)

    assert add.data["addMembers"] == {
        "__typename": "OperationInfo",
        "messages": [
            {
                "kind": "PERMISSION",
                "field": None,
                "code": "admin_only",
                "message": "Only the room's owner and admins can do this.",
            }
        ],
    }
    assert edit.data["editMessage"] == {
        "__typename": "OperationInfo",
        "messages": [
            {
                "kind": "PERMISSION",
                "field": None,
                "code": "not_author",
                "message": "Only the author can change a message.",
            }
        ],
    }


CHAT_VIEWER_FIELDS = "query($id: ID!) { chat(id: $id) { id unreadCount lastReadSeq myRole } }"


@pytest.mark.django_db
def test_a_chat_reads_the_viewers_membership_once(gql, user, token, django_assert_num_queries):
    room = services.create_room(owner=user, name="Lounge")
    gql.execute(CHAT_VIEWER_FIELDS, {"id": str(room.id)}, token=token)  # records token use

    with django_assert_num_queries(2):  # the token, then the membership with its chat
        response = gql.execute(CHAT_VIEWER_FIELDS, {"id": str(room.id)}, token=token)

    assert response.data == {
        "chat": {"id": str(room.id), "unreadCount": 0, "lastReadSeq": 1, "myRole": "OWNER"}
    }
