"""The lookups written as SQL (chat.rows) answer exactly what the ORM would, on SQLite
and on PostgreSQL (the services pass runs this file again there)."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import auth, rows, selectors, services
from chat.exceptions import NotFound
from chat.models import AuthToken, Change, Chat, Membership, Mention, Message
from tests.factories import token_for

pytestmark = pytest.mark.django_db


def fields(instance) -> dict:
    return {k: v for k, v in instance.__dict__.items() if not k.startswith("_")}


def test_a_live_token_comes_back_as_the_orm_builds_it(user):
    raw = token_for(user)
    orm = AuthToken.objects.select_related("user").get(key_hash=auth.hash_token(raw))

    token = auth.authenticate_token(raw)

    assert type(token.pk) is type(orm.pk)
    assert fields(token) == {**fields(orm), "last_used_at": token.last_used_at}
    assert fields(token.user) == fields(orm.user)
    assert token.user.is_authenticated
    assert token.user.is_active
    assert timezone.is_aware(token.expires_at)
    assert not token._state.adding
    assert token._state.db == "default"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: AuthToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now()),
        lambda token: AuthToken.objects.filter(pk=token.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        ),
        lambda token: type(token.user).objects.filter(pk=token.user_id).update(is_active=False),
    ],
    ids=["revoked", "expired", "deactivated"],
)
def test_a_dead_token_is_refused(user, spoil):
    raw = token_for(user)
    spoil(AuthToken.objects.get(key_hash=auth.hash_token(raw)))

    assert auth.authenticate_token(raw) is None
    assert auth.authenticate_token(raw + "x") is None


def test_last_use_is_written_once_a_minute(user):
    raw = token_for(user)

    first = auth.authenticate_token(raw).last_used_at
    again = auth.authenticate_token(raw).last_used_at
    AuthToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    later = auth.authenticate_token(raw).last_used_at

    assert first is not None
    assert again == first
    assert later > first
    assert AuthToken.objects.get().last_used_at == later


def test_a_member_reads_the_chats_revision_and_member_count(user, grace):
    room = services.create_room(owner=user, name="Lounge")
    services.send_message(author=user, chat_id=room.id, body="hi")
    room.refresh_from_db()

    assert selectors.member_revision(user=user, chat_id=room.id) == (
        room.revision,
        room.member_count,
    )
    with pytest.raises(NotFound):
        selectors.member_revision(user=grace, chat_id=room.id)
    with pytest.raises(NotFound):
        selectors.member_revision(user=user, chat_id=grace.pk)  # no such chat


def test_names_are_quoted_from_the_models():
    quote = connection.ops.quote_name

    statement = rows.sql(
        "SELECT c.{Chat.revision} FROM {Chat} c JOIN {Membership} m "
        "ON m.{Membership.chat} = c.{Chat.id}",
        Chat=Chat,
        Membership=Membership,
    )

    chats, memberships = quote(Chat._meta.db_table), quote(Membership._meta.db_table)
    expected = " ".join(
        [
            "SELECT", f"c.{quote('revision')}", "FROM", chats, "c", "JOIN", memberships, "m",
            "ON", f"m.{quote('chat_id')}", "=", f"c.{quote('id')}",
        ]
    )  # fmt: skip
    assert statement == expected


def writes(queries: list[dict]) -> list[str]:
    """The statements a block ran, without the test's own savepoints."""
    return [q["sql"] for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]


def test_a_message_written_as_sql_reads_back_as_the_orm_would_write_it(user, grace):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    first = services.send_message(author=grace, chat_id=room.id, body="first")

    message = services.send_message(
        author=user,
        chat_id=room.id,
        body="  second  ",
        client_id="c-1",
        reply_to_id=first.id,
        mentions=[grace.id],
    )

    stored = Message.objects.get(pk=message.pk)
    columns = set(fields(stored)) - {"search_vector"}  # the database's to fill
    assert {k: fields(message)[k] for k in columns} == {k: fields(stored)[k] for k in columns}
    assert (stored.body, stored.reply_to_id, stored.client_id) == ("second", first.pk, "c-1")
    assert not message._state.adding
    assert message._state.db == "default"
    change = Change.objects.get(message=message)
    room.refresh_from_db()
    assert (change.kind, change.revision, change.chat_id) == ("ADDED", room.revision, room.pk)
    assert (room.last_seq, room.last_message_at) == (message.seq, message.created_at)
    assert Membership.objects.get(chat=room, user=user).last_read_seq == message.seq
    assert Membership.objects.get(chat=room, user=grace).last_read_seq == first.seq
    assert list(Mention.objects.filter(message=message).values_list("user", flat=True)) == [
        grace.pk
    ]


def test_a_send_is_two_statements_on_postgresql(user):
    """The chat's lock (with the membership check), then every write at once: through the
    ORM a send was seven statements."""
    room = services.create_room(owner=user, name="Lounge")

    with CaptureQueriesContext(connection) as queries:
        services.send_message(author=user, chat_id=room.id, body="hi")

    statements = writes(queries.captured_queries)
    lock, *rest = statements
    assert "EXISTS" in lock
    if connection.vendor == "postgresql":
        assert lock.endswith("FOR UPDATE")
        assert len(rest) == 1
        assert rest[0].startswith("WITH ")
    else:  # one by one: the message, its change, the chat, the author's read position
        assert [s.split()[0] for s in rest] == ["INSERT", "INSERT", "UPDATE", "UPDATE"]


def test_writes_run_together_fail_together(user):
    """A unique violation in one part refuses the whole statement: nothing is half written."""
    room = services.create_room(owner=user, name="Lounge")
    room.refresh_from_db()
    revision = room.revision

    with pytest.raises(IntegrityError), transaction.atomic():
        rows.run(
            [
                rows.update(Chat, {"id": room.pk}, topic="changed"),
                rows.insert(Membership(chat=room, user=user)),  # already a member
            ]
        )

    room.refresh_from_db()
    assert (room.topic, room.revision) == ("", revision)


def test_a_send_with_a_client_id_asks_for_a_retry_in_plain_sql_twice(user):
    """Before the send limit and again under the lock; neither joins anything."""
    room = services.create_room(owner=user, name="Lounge")

    with CaptureQueriesContext(connection) as queries:
        sent = services.send_message(author=user, chat_id=room.id, body="hi", client_id="c-1")
    with CaptureQueriesContext(connection) as retried:
        again = services.send_message(author=user, chat_id=room.id, body="hi", client_id="c-1")

    first, lock, under_lock, *_ = writes(queries.captured_queries)
    assert first == under_lock
    assert "client_id" in first
    assert "JOIN" not in first.upper()
    assert "EXISTS" in lock
    assert again == sent
    assert len(writes(retried.captured_queries)) == 2  # the lookup, then the message
