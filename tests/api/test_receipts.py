"""Read receipts as queries: who has read each message, after the live event has passed."""

import pytest

from chat import services
from tests.factories import UserFactory

HISTORY = """
query($chatId: ID!, $last: Int, $first: Int = 10) {
  messages(chatId: $chatId, last: $last) {
    edges { node { seq readCount readBy(first: $first) { id displayName } } }
  }
}
"""


@pytest.fixture
def room(user, settings):
    settings.SEND_RATE_BURST = settings.MEMBERSHIP_RATE_BURST = 1000
    settings.READ_RATE_BURST = 1000
    return services.create_room(owner=user, name="Readers", is_public=True)


def _receipts(gql, token, chat, **variables):
    response = gql.execute(HISTORY, {"chatId": str(chat.id), **variables}, token=token)
    return {
        e["node"]["seq"]: (e["node"]["readCount"], [u["displayName"] for u in e["node"]["readBy"]])
        for e in response.data["messages"]["edges"]
    }


@pytest.mark.django_db
def test_read_by_after_three_members_read_to_different_points(gql, user, token, room):
    bea, cy, dee = (UserFactory(display_name=name) for name in ("Bea", "Cy", "Dee"))
    for member in (bea, cy, dee):
        services.join_room(user=member, chat_id=room.id)
    sent = [services.send_message(author=user, chat_id=room.id, body=f"m{n}") for n in range(3)]
    services.mark_read(user=bea, chat_id=room.id, seq=sent[2].seq)
    services.mark_read(user=cy, chat_id=room.id, seq=sent[1].seq)
    services.mark_read(user=dee, chat_id=room.id, seq=sent[0].seq)

    receipts = _receipts(gql, token, room, last=3)
    two_first = _receipts(gql, token, room, last=3, first=2)

    assert receipts == {
        sent[0].seq: (3, ["Bea", "Cy", "Dee"]),
        sent[1].seq: (2, ["Bea", "Cy"]),
        sent[2].seq: (1, ["Bea"]),
    }
    assert two_first[sent[0].seq] == (3, ["Bea", "Cy"])


@pytest.mark.django_db
def test_in_a_direct_chat_read_by_is_whether_the_peer_read_it(gql, user, token, grace):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)
    read = services.send_message(author=user, chat_id=chat.id, body="seen")
    services.mark_read(user=grace, chat_id=chat.id, seq=read.seq)
    unread = services.send_message(author=user, chat_id=chat.id, body="not yet")

    receipts = _receipts(gql, token, chat, last=10)

    assert receipts == {read.seq: (1, ["Grace Hopper"]), unread.seq: (0, [])}


@pytest.mark.django_db
def test_a_page_of_50_messages_costs_one_query_for_every_receipt(
    gql, user, token, room, django_assert_num_queries
):
    members = UserFactory.create_batch(12)
    for member in members:
        services.join_room(user=member, chat_id=room.id)
    for n in range(50):
        services.send_message(author=members[n % 12], chat_id=room.id, body=f"m{n}")
    for n, member in enumerate(members):
        services.mark_read(user=member, chat_id=room.id, seq=10 + 4 * n)
    query = "query($c: ID!) { messages(chatId: $c, last: 50) { edges { node { seq } } } }"
    gql.execute(query, {"c": str(room.id)}, token=token)  # the token's last use, recorded

    # The token and the page (which checks the membership itself) ...
    with django_assert_num_queries(2) as plain:
        gql.execute(query, {"c": str(room.id)}, token=token)
    with django_assert_num_queries(3):  # ... the same, and one query for every receipt
        receipts = _receipts(gql, token, room, last=50)

    assert len(plain.captured_queries) == 2
    assert len(receipts) == 50
    newest = max(receipts)
    # Its author read it by sending it and is never listed; Ada reads nothing here.
    assert receipts[newest] == (0, [])
    # The oldest was sent by members[0]; the other eleven have all sent later messages
    # (which reads the chat for them), and Ada has read nothing.
    oldest = min(receipts)
    assert receipts[oldest][0] == 11
    assert len(receipts[oldest][1]) == 10


@pytest.mark.django_db
def test_read_by_refuses_a_page_over_the_cap(gql, user, token, room):
    response = gql.execute(HISTORY, {"chatId": str(room.id), "last": 1, "first": 101}, token=token)

    assert response.error_codes == ["BAD_USER_INPUT"]
