"""Pages join only what their selection reads, and every field still costs no query per
row (issue 14: each join cost PostgreSQL planning time on every history page)."""

import re

import pytest

from chat import services
from chat.models import Attachment, Message
from chat.selectors import UNREAD_USER_COLUMNS
from schema import schema
from schema.selection import MESSAGE_JOINS, message_joins

pytestmark = pytest.mark.django_db

# Every field of `Message`, each with what it needs below it.
EVERY_FIELD = """
  __typename id chatId seq kind body clientId createdAt editedAt deletedAt pinnedAt
  isDeleted systemEvent readCount
  location { latitude longitude label }
  attachment { name contentType size width height url }
  author { id displayName } subject { id displayName }
  replyTo { id seq body isDeleted author { displayName } }
  readBy { id } reactions { emoji count } editHistory { body } mentions { id }
"""

HISTORY = """
query($chatId: ID!, $last: Int) {
  messages(chatId: $chatId, last: $last) { edges { node { ...Fields } } }
}
fragment Fields on Message { %s }
"""

CHATS = "query { chats(first: 10) { edges { node { id %s } } } }"


@pytest.fixture
def room(user, grace, settings):
    """A room whose history has every kind of row a field can read: text, a reply, a
    location, a file, and SYSTEM joins."""
    settings.SEND_RATE_BURST = settings.MEMBERSHIP_RATE_BURST = 1000
    room = services.create_room(owner=user, name="Room", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    first = services.send_message(author=user, chat_id=room.id, body="first")
    services.send_message(author=grace, chat_id=room.id, body="re", reply_to_id=first.id)
    services.send_location(author=grace, chat_id=room.id, latitude=1.5, longitude=2.5)
    photo = services.send_message(author=user, chat_id=room.id, body="caption")
    attachment = Attachment.objects.create(
        file="a/b.png", name="b.png", content_type="image/png", size=3, width=1, height=1
    )
    Message.objects.filter(pk=photo.pk).update(kind=Message.Kind.IMAGE, attachment=attachment)
    for n in range(4):
        services.send_message(author=grace, chat_id=room.id, body=f"more {n}")
    return room


def test_every_message_field_says_what_it_joins():
    fields = set(schema._schema.type_map["Message"].fields)

    assert fields | {"__typename"} == MESSAGE_JOINS.keys()


def test_message_joins_follow_the_fields_and_default_to_all_for_unknown_ones():
    assert message_joins({"id", "body"}) == ()
    assert message_joins({"body", "author"}) == ("author",)
    assert message_joins({"replyTo", "attachment"}) == (
        "attachment",
        "reply_to",
        "reply_to__author",
    )
    assert message_joins({"body", "notAField"}) is None


def test_a_history_page_of_text_joins_nothing_and_with_authors_joins_users(
    gql, token, room, user, grace, django_assert_max_num_queries
):
    gql.execute(HISTORY % "seq", {"chatId": str(room.id)}, token=token)  # records the token's use
    with django_assert_max_num_queries(3) as bare:
        plain = gql.execute(HISTORY % "seq body", {"chatId": str(room.id), "last": 5}, token=token)
    with django_assert_max_num_queries(3) as authored:
        named = gql.execute(
            HISTORY % "seq author { displayName }",
            {"chatId": str(room.id), "last": 5},
            token=token,
        )

    page = [edge["node"] for edge in plain.data["messages"]["edges"]]
    assert [node["body"] for node in page] == ["caption", "more 0", "more 1", "more 2", "more 3"]
    authors = [edge["node"]["author"]["displayName"] for edge in named.data["messages"]["edges"]]
    assert authors == [user.display_name] + [grace.display_name] * 4
    history_sql = [q["sql"] for q in bare.captured_queries if '"chat_message"' in q["sql"]]
    assert history_sql
    assert "JOIN" not in history_sql[-1]
    authored_sql = [q["sql"] for q in authored.captured_queries if '"chat_message"' in q["sql"]]
    assert len(re.findall(r'JOIN "chat_user"', authored_sql[-1])) == 1
    assert "chat_attachment" not in authored_sql[-1]


def test_every_message_field_costs_the_same_queries_for_a_short_or_long_page(
    gql, token, room, django_assert_max_num_queries
):
    """No field reads a relation it did not join: a query per row would make the longer
    page cost more. Each field alone, then all of them."""
    gql.execute(HISTORY % "seq", {"chatId": str(room.id)}, token=token)  # records the token's use
    for field in [*EVERY_FIELD.split("\n"), EVERY_FIELD]:
        if not field.strip():
            continue
        counts = []
        for last in (2, 9):
            with django_assert_max_num_queries(12) as queries:
                reply = gql.execute(
                    HISTORY % field, {"chatId": str(room.id), "last": last}, token=token
                )
            assert "errors" not in reply.json, (field, reply.json)
            assert len(reply.data["messages"]["edges"]) == last
            counts.append(len(queries.captured_queries))
        assert counts[0] == counts[1], (field, counts)


def test_the_full_page_reads_every_relation(gql, token, room):
    nodes = [
        edge["node"]
        for edge in gql.execute(
            HISTORY % EVERY_FIELD, {"chatId": str(room.id), "last": 20}, token=token
        ).data["messages"]["edges"]
    ]
    by_body = {node["body"]: node for node in nodes}

    assert by_body["re"]["replyTo"]["body"] == "first"
    assert (
        by_body["re"]["replyTo"]["author"]["displayName"]
        == by_body["first"]["author"]["displayName"]
    )
    assert by_body["caption"]["attachment"]["name"] == "b.png"
    assert any(
        node["location"] == {"latitude": 1.5, "longitude": 2.5, "label": ""} for node in nodes
    )
    assert any(node["subject"] for node in nodes if node["kind"] == "SYSTEM")


def test_a_chat_list_without_last_messages_or_peers_does_not_query_them(
    gql, token, room, user, grace, django_assert_max_num_queries
):
    services.open_direct_chat(user=user, other_user_id=grace.id)
    gql.execute(CHATS % "name", token=token)  # records the token's last use
    with django_assert_max_num_queries(10) as bare:
        names = gql.execute(CHATS % "name", token=token)
    with django_assert_max_num_queries(10) as full:
        shown = gql.execute(
            CHATS % "name peer { displayName } lastMessage { body author { displayName } }",
            token=token,
        )

    assert len(names.data["chats"]["edges"]) == 2
    assert len(full.captured_queries) == len(bare.captured_queries) + 2
    chats = {edge["node"]["name"]: edge["node"] for edge in shown.data["chats"]["edges"]}
    assert chats["Room"]["lastMessage"] == {
        "body": "more 3",
        "author": {"displayName": grace.display_name},
    }
    assert (chats["Room"]["peer"], chats[""]["lastMessage"]) == (None, None)
    assert chats[""]["peer"] == {"displayName": grace.display_name}


def test_joins_follow_aliases_repeated_fields_and_nested_fragments(
    gql, token, room, user, grace, django_assert_max_num_queries
):
    """A selection a client might send to confuse the walk: `edges` twice under aliases,
    the author only in the second, through an inline fragment holding a named one, under
    an alias of its own. The page must still join authors: a query per row otherwise."""
    query = """
    query($chatId: ID!, $last: Int) {
      messages(chatId: $chatId, last: $last) {
        plain: edges { node { body } }
        named: edges { node { ... on Message { ...Writer } } }
      }
    }
    fragment Writer on Message {
      by: author { displayName }
      skipped: subject @skip(if: true) { id }
    }
    """
    gql.execute(HISTORY % "seq", {"chatId": str(room.id)}, token=token)  # records the token's use
    counts = []
    for last in (2, 9):
        with django_assert_max_num_queries(4) as queries:
            reply = gql.execute(query, {"chatId": str(room.id), "last": last}, token=token)
        counts.append(len(queries.captured_queries))
        page = reply.data["messages"]
        assert len(page["plain"]) == len(page["named"]) == last
    sql = [q["sql"] for q in queries.captured_queries if '"chat_message"' in q["sql"]][-1]

    assert counts[0] == counts[1]
    assert [edge["node"]["by"]["displayName"] for edge in page["named"][-4:]] == [
        grace.display_name
    ] * 4
    assert len(re.findall(r'JOIN "chat_user"', sql)) == 2  # author, and the skipped subject


# Every field of `User` that reads the user's own row (`devices` and the block lists read
# other tables, and only for the viewer).
USER_FIELDS = "id displayName joinedAt email avatarUrl avatarThumbnailUrl lastSeenAt"


def test_no_user_field_reads_a_column_joined_users_leave_out():
    """Authors, subjects and quoted authors are loaded without these columns; a field
    reading one would cost a query per message."""
    definition = schema.get_type_by_name("User")
    read = set()
    for field in definition.fields:
        read.add(getattr(field, "django_name", None) or field.python_name)
        store = getattr(field, "store", None)
        read.update(store.only if store is not None else ())
    assert read
    assert not read & set(UNREAD_USER_COLUMNS)


def test_joined_users_are_loaded_without_what_no_field_reads(
    gql, token, room, django_assert_max_num_queries
):
    """A page's authors came with their password hashes, flags and last sign-in, a third of
    the page's columns; every user field still costs no query per row without them."""
    fields = (
        f"author {{ {USER_FIELDS} }} subject {{ {USER_FIELDS} }} "
        f"replyTo {{ author {{ {USER_FIELDS} }} }}"
    )
    gql.execute(HISTORY % "seq", {"chatId": str(room.id)}, token=token)  # records the token's use
    counts = []
    for last in (2, 9):
        with django_assert_max_num_queries(12) as queries:
            reply = gql.execute(
                HISTORY % fields, {"chatId": str(room.id), "last": last}, token=token
            )
        assert "errors" not in reply.json, reply.json
        counts.append(len(queries.captured_queries))
        [page_sql] = [
            q["sql"] for q in queries.captured_queries if 'FROM "chat_message"' in q["sql"]
        ]
        assert page_sql.count('JOIN "chat_user"') == 3
        assert not [column for column in UNREAD_USER_COLUMNS if f'."{column}"' in page_sql]
    assert counts[0] == counts[1]
    nodes = [edge["node"] for edge in reply.data["messages"]["edges"]]
    authors = {node["author"]["displayName"] for node in nodes if node["author"]}
    assert authors == {"Ada Lovelace", "Grace Hopper"}
    [reply_to] = [node["replyTo"] for node in nodes if node["replyTo"]]
    assert reply_to["author"]["displayName"] == "Ada Lovelace"
    assert any(node["subject"] for node in nodes)
