"""Querysets compiled once per shape (chat.prepared) answer exactly what the ORM would, on
SQLite and on PostgreSQL (the services pass runs this file again there)."""

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from chat import selectors, services
from chat.models import Chat, Membership, Message
from chat.prepared import PreparedQueries, Shaped, prepared
from schema.pagination import encode_cursor, paginate
from schema.queries import CHAT_ORDER, MESSAGE_ORDER

pytestmark = pytest.mark.django_db


def fields(instance) -> dict:
    return {k: v for k, v in instance.__dict__.items() if not k.startswith("_")}


def same_rows(found: list, orm: list) -> None:
    assert [fields(row) for row in found] == [fields(row) for row in orm]
    for row, expected in zip(found, orm, strict=True):
        assert row._state.fields_cache.keys() == expected._state.fields_cache.keys()
        for name, related in expected._state.fields_cache.items():
            if related is None:
                assert row._state.fields_cache[name] is None
            else:
                assert fields(row._state.fields_cache[name]) == fields(related)
        assert not row._state.adding
        assert row._state.db == expected._state.db


@pytest.fixture
def room(user, grace) -> Chat:
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    first = services.send_message(author=grace, chat_id=room.id, body="first")
    services.send_message(author=user, chat_id=room.id, body="a reply", reply_to_id=first.id)
    for n in range(5):
        services.send_message(author=grace, chat_id=room.id, body=f"more {n}")
    return room


def by_chat(chat: Chat, builds: list, reader) -> Shaped:
    shaped = selectors.member_messages(
        user=reader, chat_id=chat.pk, joins=("author", "reply_to", "reply_to__author")
    )

    def build():
        builds.append(chat.pk)
        return shaped.build()

    return Shaped(("test", shaped.key), build, shaped.params)


def test_a_shape_is_compiled_once_and_each_run_reads_its_own_parameters(room, user, grace):
    other = services.create_room(owner=grace, name="Other")
    services.send_message(author=grace, chat_id=other.id, body="elsewhere")
    queries, builds = PreparedQueries(), []

    first = queries.fetch(by_chat(room, builds, grace))
    again = queries.fetch(by_chat(room, builds, user))
    elsewhere = queries.fetch(by_chat(other, builds, grace))
    not_a_member = queries.fetch(by_chat(other, builds, user))

    orm = list(selectors.messages_of(room, ("author", "reply_to", "reply_to__author")))
    same_rows(first, orm)
    same_rows(again, orm)
    same_rows(
        elsewhere, list(selectors.messages_of(other, ("author", "reply_to", "reply_to__author")))
    )
    assert [m.chat_id for m in elsewhere] == [other.pk] * len(elsewhere)
    assert "elsewhere" in [m.body for m in elsewhere]
    assert not_a_member == []
    assert builds == [room.pk]  # built and compiled once; the later runs only executed
    reply = next(m for m in again if m.body == "a reply")
    assert reply.reply_to.body == "first"
    assert reply.reply_to.author.pk == grace.pk
    assert "search_vector" not in reply.__dict__  # still deferred, as with_related has it


def test_a_shape_whose_parameters_are_not_djangos_runs_through_the_orm_every_time(room):
    queries, builds = PreparedQueries(), []

    def build():
        builds.append(1)
        return Message.objects.filter(chat=room, seq__gt=F("seq") - 1).order_by("seq")

    wrong = Shaped("wrong", build, ["not", "these"])
    first, again = queries.fetch(wrong), queries.fetch(wrong)

    same_rows(first, list(build()))
    same_rows(again, first)
    assert len(builds) == 3  # two runs and the check above: never kept


def test_history_pages_and_cursors_through_a_kept_shape_match_the_orm(room, grace, make_user):
    prepared.clear()
    every = list(Message.objects.filter(chat=room).order_by("seq"))
    shaped = selectors.member_messages(user=grace, chat_id=room.pk, joins=("author",))
    orm = selectors.messages_of(room, ("author",))
    stranger = make_user(display_name="Stranger")
    refused = selectors.member_messages(user=stranger, chat_id=room.pk, joins=("author",))
    malformed = selectors.member_messages(user=grace, chat_id="not an id", joins=("author",))

    for _ in range(2):  # the second time from the kept SQL
        newest = paginate(shaped, MESSAGE_ORDER, last=3)
        older = paginate(shaped, MESSAGE_ORDER, last=3, before=newest.page_info.start_cursor)
        forward = paginate(shaped, MESSAGE_ORDER, first=2, after=encode_cursor([every[1].seq]))
        assert [e.node.seq for e in newest.edges] == [m.seq for m in every[-3:]]
        assert [e.node.seq for e in older.edges] == [m.seq for m in every[-6:-3]]
        assert [e.node.seq for e in forward.edges] == [m.seq for m in every[2:4]]
        assert newest.page_info.has_previous_page
        assert older.page_info.has_previous_page
        assert forward.page_info.has_next_page
        same_rows([e.node for e in newest.edges], list(orm.order_by("seq"))[-3:])
        same_rows([e.node for e in older.edges], list(orm.order_by("seq"))[-6:-3])
        for not_a_member in (refused, malformed):  # the same statements, with no rows
            assert paginate(not_a_member, MESSAGE_ORDER, last=3).edges == []
            before = newest.page_info.start_cursor
            assert paginate(not_a_member, MESSAGE_ORDER, last=3, before=before).edges == []

    assert kept("member_messages") == [True, True, True]  # newest, before, after


def test_a_chat_lists_newest_messages_match_the_orm_page_after_page(user, grace):
    prepared.clear()
    chats = []
    for n in range(4):
        chat = services.create_room(owner=user, name=f"Room {n}")
        services.send_message(author=user, chat_id=chat.id, body=f"newest of {n}")
        chats.append(Chat.objects.get(pk=chat.pk))

    with CaptureQueriesContext(connection) as queries:
        for page in (chats[:2], chats[2:], chats[:2], chats[1:]):
            latest = selectors.last_messages(page, ("author",))
            assert {chat_id: m.body for chat_id, m in latest.items()} == {
                chat.pk: f"newest of {chats.index(chat)}" for chat in page
            }
            assert all(m.author.pk == user.pk for m in latest.values())

    assert kept("last_messages") == [True, True]  # pages of two and of three
    if connection.vendor == "postgresql":
        # One array per column: PostgreSQL plans a join, not an OR per chat.
        assert all("IN (SELECT * FROM unnest(" in query["sql"] for query in queries)


def kept(name: str) -> list[bool]:
    """Whether each shape of that name has its SQL kept."""
    shapes = prepared._compiled.items()
    return [compiled is not None for key, compiled in shapes if repr(name) in repr(key)]


def test_direct_peers_and_a_first_page_of_chats_come_from_kept_sql(user, make_user):
    prepared.clear()
    peers = [make_user(display_name=f"Peer {n}") for n in range(2)]
    for peer in peers:
        chat = services.open_direct_chat(user=user, other_user_id=peer.pk)
        services.send_message(author=peer, chat_id=chat.id, body=f"hi from {peer.display_name}")
    services.create_room(owner=user, name="A room")

    for _ in range(2):
        page = paginate(selectors.user_chats(user), CHAT_ORDER, first=10)
        chats = [edge.node for edge in page.edges]
        found = selectors.direct_peers(chats, viewer=user)
        expected = list(selectors.chats_for_user(user)[:10])
        assert [fields(chat) for chat in chats] == [fields(chat) for chat in expected]
        others = Membership.objects.filter(chat__kind=Chat.Kind.DIRECT).exclude(user=user)
        assert {chat_id: fields(peer) for chat_id, peer in found.items()} == {
            m.chat_id: fields(m.user) for m in others.select_related("user")
        }
        assert sorted(peer.display_name for peer in found.values()) == ["Peer 0", "Peer 1"]

    assert kept("user_chats") == [True]
    assert kept("direct_peers") == [True]


def test_a_membership_is_found_through_kept_sql_as_the_orm_finds_it(room, user, grace, make_user):
    prepared.clear()
    stranger = make_user(display_name="Stranger")
    for _ in range(2):
        for member in (user, grace):
            found = selectors.find_membership(user=member, chat_id=room.pk)
            expected = Membership.objects.select_related("chat").get(chat=room, user=member)
            expected.user = member
            same_rows([found], [expected])
            assert found.user is member
        assert selectors.find_membership(user=stranger, chat_id=room.pk) is None
        assert selectors.find_membership(user=user, chat_id=str(room.pk)).chat == room
        assert selectors.find_membership(user=user, chat_id="not a uuid") is None
    assert kept("membership") == [True]
