"""The lookups written as SQL (chat.rows) answer exactly what the ORM would, on SQLite
and on PostgreSQL (the services pass runs this file again there)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chat import auth, rows, selectors, services
from chat.exceptions import NotFound
from chat.models import AuthToken, Chat, Membership
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
