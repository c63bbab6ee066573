import uuid

import pytest
from django.core.exceptions import ValidationError

from chat import services
from chat.events import chat_group
from chat.exceptions import Forbidden, RateLimited
from chat.models import Chat, Membership, Message


def codes(error: ValidationError) -> dict[str, list[str]]:
    return {field: [e.code for e in errors] for field, errors in error.error_dict.items()}


@pytest.fixture
def direct(user, grace) -> Chat:
    return services.open_direct_chat(user=user, other_user_id=grace.id)


@pytest.mark.django_db
def test_messages_get_contiguous_seqs_and_trimmed_bodies(user, grace, direct):
    sent = [
        services.send_message(author=author, chat_id=direct.id, body=f"  hello {n}  ")
        for n, author in enumerate([user, grace, user])
    ]

    assert [(m.seq, m.body, m.author_id) for m in sent] == [
        (1, "hello 0", user.id),
        (2, "hello 1", grace.id),
        (3, "hello 2", user.id),
    ]
    direct.refresh_from_db()
    assert direct.last_seq == 3
    assert direct.last_message_at == sent[-1].created_at


@pytest.mark.django_db
def test_sending_publishes_once_to_the_chat_group(user, grace, direct, events_sent):
    with events_sent() as sent:
        message = services.send_message(author=user, chat_id=direct.id, body="hi", client_id="c-1")

    payload = {
        "revision": 1,
        "member_count": None,
        "id": str(message.id),
        "chat_id": str(direct.id),
        "seq": 1,
        "kind": "TEXT",
        "body": "hi",
        "author": {
            "id": str(user.id),
            "display_name": "Ada Lovelace",
            "joined_at": user.date_joined.isoformat(),
            "avatar": None,
            "avatar_thumbnail": None,
        },
        "system_event": "",
        "subject": None,
        "client_id": "c-1",
        "attachment": None,
        "reply_to": None,
        "mentions": [],
        "latitude": None,
        "longitude": None,
        "location_label": "",
        "created_at": message.created_at.isoformat(),
        "edited_at": None,
        "deleted_at": None,
    }
    assert sent == [(chat_group(direct.id), "message_added", payload)]


@pytest.mark.django_db
def test_a_retry_with_the_same_client_id_returns_the_original_and_publishes_nothing(
    user, direct, events_sent
):
    first = services.send_message(author=user, chat_id=direct.id, body="once", client_id="k1")

    with events_sent() as sent:
        again = services.send_message(author=user, chat_id=direct.id, body="once", client_id="k1")

    assert again.pk == first.pk
    assert Message.objects.count() == 1
    assert sent == []


@pytest.mark.django_db
def test_a_client_id_cannot_be_reused_in_another_chat(user, grace, make_user, direct):
    other = services.open_direct_chat(user=user, other_user_id=make_user().id)
    services.send_message(author=user, chat_id=direct.id, body="a", client_id="k1")

    with pytest.raises(ValidationError) as error:
        services.send_message(author=user, chat_id=other.id, body="b", client_id="k1")

    assert codes(error.value) == {"client_id": ["client_id_reused"]}


@pytest.mark.parametrize(
    ("body", "client_id", "expected"),
    [
        ("   ", None, {"body": ["message_empty"]}),
        ("x" * 4001, None, {"body": ["message_too_long"]}),
        ("ok", "has space", {"client_id": ["invalid_client_id"]}),
        ("ok", "x" * 65, {"client_id": ["invalid_client_id"]}),
    ],
)
@pytest.mark.django_db
def test_bad_messages_write_and_publish_nothing(
    user, direct, events_sent, body, client_id, expected
):
    with events_sent() as sent, pytest.raises(ValidationError) as error:
        services.send_message(author=user, chat_id=direct.id, body=body, client_id=client_id)

    assert codes(error.value) == expected
    assert Message.objects.count() == 0
    assert sent == []


@pytest.mark.django_db
def test_exactly_4000_characters_is_allowed(user, direct):
    assert len(services.send_message(author=user, chat_id=direct.id, body="x" * 4000).body) == 4000


@pytest.mark.django_db
def test_a_non_member_cannot_send(make_user, direct, events_sent):
    stranger = make_user()  # setting a password announces a session change: not in the block
    with events_sent() as sent, pytest.raises(ValidationError) as error:
        services.send_message(author=stranger, chat_id=direct.id, body="let me in")

    assert codes(error.value) == {"chat_id": ["not_found"]}
    assert sent == []


@pytest.mark.django_db
def test_a_non_member_learns_nothing_from_a_reply_or_a_mention(make_user, user, grace, direct):
    """Replies and mentions are resolved only once membership is checked: otherwise their
    errors would tell a stranger which messages and members a chat has."""
    stranger = make_user()
    message = services.send_message(author=user, chat_id=direct.id, body="hi")

    for extra in [
        {"reply_to_id": message.id},
        {"reply_to_id": uuid.uuid4()},  # no such message: the same answer
        {"mentions": [grace.id]},
        {"mentions": [stranger.id]},  # not a member: the same answer
    ]:
        with pytest.raises(ValidationError) as error:
            services.send_message(author=stranger, chat_id=direct.id, body="hi", **extra)
        assert codes(error.value) == {"chat_id": ["not_found"]}


@pytest.mark.django_db
def test_sending_is_limited_to_a_burst_then_a_steady_rate(user, direct, settings):
    settings.SEND_RATE_BURST, settings.SEND_RATE_PER_SECOND = 3, 0.5
    for n in range(3):
        services.send_message(author=user, chat_id=direct.id, body=f"{n}")

    with pytest.raises(RateLimited) as limited:
        services.send_message(author=user, chat_id=direct.id, body="one too many")

    assert limited.value.retry_after == 2
    assert Message.objects.count() == 3


@pytest.mark.django_db
def test_sending_marks_the_chat_read_for_the_sender(user, grace, direct):
    services.send_message(author=user, chat_id=direct.id, body="a")
    services.send_message(author=user, chat_id=direct.id, body="b")

    reads = dict(Membership.objects.filter(chat=direct).values_list("user_id", "last_read_seq"))

    assert reads == {user.id: 2, grace.id: 0}


@pytest.mark.django_db
def test_edit_and_delete_by_the_author(user, direct, events_sent):
    message = services.send_message(author=user, chat_id=direct.id, body="tpyo")

    with events_sent() as sent:
        edited = services.edit_message(user=user, message_id=message.id, body=" typo ")
        deleted = services.delete_message(user=user, message_id=message.id)

    assert (edited.body, edited.edited_at is not None) == ("typo", True)
    message.refresh_from_db()
    assert (message.body, message.is_deleted, message.seq) == ("", True, 1)
    assert [(event, data["body"]) for group, event, data in sent] == [
        ("message_edited", "typo"),
        ("message_deleted", ""),
    ]
    assert deleted.pk == message.pk


@pytest.mark.django_db
def test_only_the_author_can_change_a_message(user, grace, direct, events_sent):
    message = services.send_message(author=user, chat_id=direct.id, body="mine")

    with events_sent() as sent:
        with pytest.raises(Forbidden) as edit:
            services.edit_message(user=grace, message_id=message.id, body="yours")
        with pytest.raises(Forbidden):
            services.delete_message(user=grace, message_id=message.id)

    assert edit.value.code == "not_author"
    message.refresh_from_db()
    assert (message.body, message.edited_at, message.deleted_at) == ("mine", None, None)
    assert sent == []


@pytest.mark.django_db
def test_a_deleted_message_cannot_be_edited(user, direct):
    message = services.send_message(author=user, chat_id=direct.id, body="gone")
    services.delete_message(user=user, message_id=message.id)

    with pytest.raises(ValidationError) as error:
        services.edit_message(user=user, message_id=message.id, body="back")

    assert codes(error.value) == {"message_id": ["message_deleted"]}


@pytest.mark.django_db
def test_a_non_member_cannot_see_a_message_to_change_it(make_user, user, direct):
    message = services.send_message(author=user, chat_id=direct.id, body="private")

    with pytest.raises(ValidationError) as error:
        services.delete_message(user=make_user(), message_id=message.id)

    assert codes(error.value) == {"message_id": ["not_found"]}


@pytest.mark.django_db
def test_mark_read_only_moves_forward_and_stops_at_the_newest(user, grace, direct, events_sent):
    for n in range(5):
        services.send_message(author=user, chat_id=direct.id, body=f"{n}")

    with events_sent() as sent:
        three = services.mark_read(user=grace, chat_id=direct.id, seq=3).last_read_seq
        back = services.mark_read(user=grace, chat_id=direct.id, seq=1).last_read_seq
        capped = services.mark_read(user=grace, chat_id=direct.id, seq=99).last_read_seq

    assert (three, back, capped) == (3, 3, 5)
    assert [(event, data["seq"]) for _, event, data in sent] == [
        ("read_up_to", 3),
        ("read_up_to", 5),
    ]


@pytest.mark.django_db
def test_mark_read_rejects_a_negative_seq(grace, direct):
    with pytest.raises(ValidationError) as error:
        services.mark_read(user=grace, chat_id=direct.id, seq=-1)

    assert codes(error.value) == {"seq": ["invalid_seq"]}
