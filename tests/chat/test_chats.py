import pytest
from django.core.exceptions import ValidationError

from chat import services
from chat.events import chat_group, user_group
from chat.exceptions import Forbidden
from chat.models import Chat, Membership, Message
from tests.chat.test_messages import codes


def timeline(chat: Chat) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(chat=chat).order_by("seq").values_list("seq", "kind", "body")
    )


@pytest.mark.django_db
def test_a_direct_chat_is_the_same_from_both_sides(user, grace, events_sent):
    with events_sent() as sent:
        mine = services.open_direct_chat(user=user, other_user_id=grace.id)
    theirs = services.open_direct_chat(user=grace, other_user_id=str(user.id))

    assert mine.pk == theirs.pk
    assert (mine.kind, mine.member_count) == ("DIRECT", 2)
    assert set(Membership.objects.filter(chat=mine).values_list("user_id", flat=True)) == {
        user.id,
        grace.id,
    }
    assert sorted(group for group, event, _ in sent) == sorted(
        [user_group(user.id), user_group(grace.id)]
    )
    assert {event for _, event, _ in sent} == {"chat_created"}


@pytest.mark.parametrize("target", ["self", "inactive", "missing", "garbage"])
@pytest.mark.django_db
def test_no_direct_chat_with_yourself_or_a_user_you_cannot_reach(user, make_user, target):
    inactive = make_user(is_active=False)
    other_id = {
        "self": user.id,
        "inactive": inactive.id,
        "missing": "00000000-0000-0000-0000-000000000000",
        "garbage": "nope",
    }[target]

    with pytest.raises(ValidationError) as error:
        services.open_direct_chat(user=user, other_user_id=other_id)

    expected = "cannot_chat_with_self" if target == "self" else "not_found"
    assert codes(error.value) == {"user_id": [expected]}
    assert Chat.objects.count() == 0


@pytest.mark.django_db
def test_creating_a_room_makes_an_owner_and_opens_the_timeline(user):
    room = services.create_room(
        owner=user, name="  Analytical   Engines ", topic="Gears", is_public=True
    )

    assert (room.name, room.topic, room.is_public, room.member_count, room.last_seq) == (
        "Analytical Engines",
        "Gears",
        True,
        1,
        1,
    )
    assert (
        Membership.objects.get(chat=room).role,
        Membership.objects.get(chat=room).last_read_seq,
    ) == ("OWNER", 1)
    assert timeline(room) == [(1, "SYSTEM", "Ada Lovelace created the room")]


@pytest.mark.parametrize(
    ("name", "topic", "expected"),
    [
        ("", "", {"name": ["invalid_room_name"]}),
        ("x" * 101, "", {"name": ["invalid_room_name"]}),
        ("ok", "t" * 301, {"topic": ["topic_too_long"]}),
    ],
)
@pytest.mark.django_db
def test_bad_rooms_are_not_created(user, name, topic, expected):
    with pytest.raises(ValidationError) as error:
        services.create_room(owner=user, name=name, topic=topic)

    assert codes(error.value) == expected
    assert Chat.objects.count() == 0


@pytest.mark.django_db
def test_joining_and_leaving_are_system_messages_in_order(user, grace, events_sent):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.send_message(author=user, chat_id=room.id, body="welcome")

    with events_sent() as sent:
        services.join_room(user=grace, chat_id=room.id)
    services.send_message(author=grace, chat_id=room.id, body="thanks")
    services.leave_room(user=grace, chat_id=room.id)

    room.refresh_from_db()
    assert timeline(room) == [
        (1, "SYSTEM", "Ada Lovelace created the room"),
        (2, "TEXT", "welcome"),
        (3, "SYSTEM", "Grace Hopper joined"),
        (4, "TEXT", "thanks"),
        (5, "SYSTEM", "Grace Hopper left"),
    ]
    assert room.member_count == 1
    # The chat hears the join as its SYSTEM message (a change with a revision to resume
    # from); Grace's inbox hears that she gained a chat.
    assert [(g, e) for g, e, _ in sent] == [
        (chat_group(room.id), "message_added"),
        (user_group(grace.id), "member_joined"),
    ]
    joined = sent[0][2]
    assert (joined["seq"], joined["revision"], joined["member_count"]) == (3, 3, 2)
    assert joined["system_event"] == "MEMBER_JOINED"


@pytest.mark.django_db
def test_a_new_member_starts_with_nothing_unread(user, grace):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.send_message(author=user, chat_id=room.id, body="before you came")

    services.join_room(user=grace, chat_id=room.id)

    assert Membership.objects.get(chat=room, user=grace).last_read_seq == 3


@pytest.mark.django_db
def test_joining_twice_changes_nothing(user, grace):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)

    services.join_room(user=grace, chat_id=room.id)

    room.refresh_from_db()
    assert (room.member_count, room.last_seq) == (2, 2)


@pytest.mark.django_db
def test_a_private_room_cannot_be_joined_or_even_found(user, grace):
    room = services.create_room(owner=user, name="Secret", is_public=False)

    with pytest.raises(ValidationError) as error:
        services.join_room(user=grace, chat_id=room.id)

    assert codes(error.value) == {"chat_id": ["not_found"]}


@pytest.mark.django_db
def test_a_direct_chat_cannot_be_joined_or_left(user, grace, make_user):
    direct = services.open_direct_chat(user=user, other_user_id=grace.id)

    with pytest.raises(ValidationError) as joined:
        services.join_room(user=make_user(), chat_id=direct.id)
    with pytest.raises(ValidationError) as left:
        services.leave_room(user=user, chat_id=direct.id)

    assert codes(joined.value) == {"chat_id": ["not_found"]}
    assert codes(left.value) == {"chat_id": ["not_a_room"]}


@pytest.mark.django_db
def test_an_owner_who_leaves_hands_the_room_on(user, grace, make_user):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    services.join_room(user=make_user(), chat_id=room.id)

    services.leave_room(user=user, chat_id=room.id)

    assert Membership.objects.get(chat=room, user=grace).role == "OWNER"


@pytest.mark.django_db
def test_the_owner_adds_and_removes_members_of_a_private_room(user, grace, make_user):
    room = services.create_room(owner=user, name="Secret")
    alan = make_user(display_name="Alan Turing")

    services.add_members(actor=user, chat_id=room.id, user_ids=[grace.id, str(alan.id), grace.id])
    services.add_members(actor=user, chat_id=room.id, user_ids=[grace.id])
    services.remove_member(actor=user, chat_id=room.id, user_id=alan.id)

    room.refresh_from_db()
    assert room.member_count == 2
    assert [body for _, _, body in timeline(room)] == [
        "Ada Lovelace created the room",
        "Ada Lovelace added Grace Hopper",
        "Ada Lovelace added Alan Turing",
        "Ada Lovelace removed Alan Turing",
    ]


@pytest.mark.django_db
def test_only_the_owner_and_admins_manage_members(user, grace, make_user):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    outsider = make_user()

    with pytest.raises(Forbidden) as member:
        services.add_members(actor=grace, chat_id=room.id, user_ids=[outsider.id])
    with pytest.raises(ValidationError) as stranger:
        services.remove_member(actor=outsider, chat_id=room.id, user_id=grace.id)

    assert member.value.code == "admin_only"
    assert codes(stranger.value) == {"chat_id": ["not_found"]}
    assert Membership.objects.filter(chat=room).count() == 2


@pytest.mark.parametrize(
    ("who", "expected"),
    [("self", {"user_id": ["cannot_remove_self"]}), ("stranger", {"user_id": ["not_found"]})],
)
@pytest.mark.django_db
def test_remove_member_failures(user, make_user, who, expected):
    room = services.create_room(owner=user, name="Lounge")
    target = user if who == "self" else make_user()

    with pytest.raises(ValidationError) as error:
        services.remove_member(actor=user, chat_id=room.id, user_id=target.id)

    assert codes(error.value) == expected


@pytest.mark.django_db
def test_adding_an_unknown_user_adds_no_one(user, grace):
    room = services.create_room(owner=user, name="Lounge")

    with pytest.raises(ValidationError) as error:
        services.add_members(actor=user, chat_id=room.id, user_ids=[grace.id, "nope"])

    assert codes(error.value) == {"user_ids": ["not_found"]}
    assert Membership.objects.filter(chat=room).count() == 1


@pytest.mark.django_db
def test_row_values_in_finds_what_djangos_tuple_in_finds(user, grace):
    """`RowValuesIn` prepares its values without Django's `Value` expressions, and on
    PostgreSQL asks with one array per column; the rows must not change (SQLite keeps
    Django's fallback)."""
    import uuid

    from django.db import connection
    from django.db.models import F
    from django.db.models.fields.tuple_lookups import Tuple, TupleIn

    from chat.selectors import RowValuesIn

    room = services.create_room(owner=user, name="Room", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    for body in ("one", "two", "three"):
        services.send_message(author=user, chat_id=room.id, body=body)
    direct = services.open_direct_chat(user=user, other_user_id=grace.id)
    services.send_message(author=grace, chat_id=direct.id, body="hi")
    room.refresh_from_db()
    wanted = [(room.id, room.last_seq), (direct.id, 1), (room.id, None), (uuid.uuid4(), 1)]

    def found(lookup: type, pairs: list) -> list[tuple]:
        rows = Message.objects.filter(lookup(Tuple(F("chat_id"), F("seq")), pairs))
        return sorted(rows.values_list("chat_id", "seq", "body"), key=str)

    assert found(RowValuesIn, wanted) == found(TupleIn, wanted)
    assert sorted(body for _, _, body in found(RowValuesIn, wanted)) == ["hi", "three"]
    assert found(RowValuesIn, [(room.id, None)]) == found(RowValuesIn, []) == []
    if connection.vendor == "postgresql":
        sql = str(Message.objects.filter(RowValuesIn(Tuple(F("chat_id"), F("seq")), wanted)).query)
        assert '("chat_message"."chat_id", "chat_message"."seq") IN (SELECT * FROM unnest(' in sql
