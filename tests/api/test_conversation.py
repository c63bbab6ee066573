"""Conversation features: replies, reactions, mentions, pins and edit history."""

import pytest

from chat import services

SEND = """
mutation($c: ID!, $body: String!, $replyTo: ID) {
  sendMessage(input: { chatId: $c, body: $body, replyToId: $replyTo }) {
    ... on Message { seq replyTo { id seq kind body isDeleted author { id } } }
    ... on OperationInfo { messages { field code } }
  }
}
"""
HISTORY = """
query($c: ID!) {
  messages(chatId: $c, last: 50) {
    edges { node { seq body replyTo { seq body isDeleted } } }
  }
}
"""


@pytest.fixture
def chat(user, grace, settings):
    settings.SEND_RATE_BURST = 1000
    return services.open_direct_chat(user=user, other_user_id=grace.id)


@pytest.mark.django_db
def test_a_reply_carries_its_quote_and_keeps_it_after_the_original_is_deleted(
    gql, user, token, grace, chat
):
    original = services.send_message(author=grace, chat_id=chat.id, body="Lunch at noon?")

    reply = gql.execute(
        SEND, {"c": str(chat.id), "body": "Yes!", "replyTo": str(original.id)}, token=token
    )
    services.delete_message(user=grace, message_id=original.id)
    history = gql.execute(HISTORY, {"c": str(chat.id)}, token=token)

    assert reply.data == {
        "sendMessage": {
            "seq": 2,
            "replyTo": {
                "id": str(original.id),
                "seq": 1,
                "kind": "TEXT",
                "body": "Lunch at noon?",
                "isDeleted": False,
                "author": {"id": str(grace.id)},
            },
        }
    }
    assert history.data["messages"]["edges"] == [
        {"node": {"seq": 1, "body": "", "replyTo": None}},
        {"node": {"seq": 2, "body": "Yes!", "replyTo": {"seq": 1, "body": "", "isDeleted": True}}},
    ]


@pytest.mark.django_db
def test_a_reply_to_another_chat_a_deleted_or_a_system_message_is_refused(
    gql, user, token, grace, chat, make_user
):
    elsewhere = services.open_direct_chat(user=user, other_user_id=make_user().id)
    foreign = services.send_message(author=user, chat_id=elsewhere.id, body="elsewhere")
    gone = services.send_message(author=grace, chat_id=chat.id, body="gone")
    services.delete_message(user=grace, message_id=gone.id)
    room = services.create_room(owner=user, name="Room")
    created = room.messages.get()

    cases = [
        (chat.id, foreign.id, "reply_not_found"),
        (chat.id, "not-an-id", "reply_not_found"),
        (chat.id, gone.id, "cannot_reply"),
        (room.id, created.id, "cannot_reply"),
    ]
    for chat_id, reply_to, code in cases:
        response = gql.execute(
            SEND, {"c": str(chat_id), "body": "x", "replyTo": str(reply_to)}, token=token
        )
        assert response.data["sendMessage"]["messages"] == [{"field": "replyToId", "code": code}]
    assert chat.messages.count() == 1
