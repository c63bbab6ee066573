"""Searching messages: only the viewer's chats, never deleted messages, best first."""

import pytest
from django.db import connection

from chat import services

SEARCH = """
query($q: String!, $chat: ID, $first: Int, $after: String) {
  searchMessages(query: $q, chatId: $chat, first: $first, after: $after) {
    edges { node { snippet rank message { body chatId } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture
def chats(user, grace, make_user, settings):
    settings.SEND_RATE_BURST = settings.SEARCH_RATE_BURST = 1000
    ours = services.open_direct_chat(user=user, other_user_id=grace.id)
    theirs = services.open_direct_chat(user=grace, other_user_id=make_user().id)
    return ours, theirs


def _bodies(response) -> list[str]:
    return [e["node"]["message"]["body"] for e in response.data["searchMessages"]["edges"]]


@pytest.mark.django_db
def test_a_word_is_found_in_the_viewers_chats_and_never_in_others(gql, user, token, grace, chats):
    ours, theirs = chats
    services.send_message(author=grace, chat_id=ours.id, body="The pizza is here")
    services.send_message(author=grace, chat_id=theirs.id, body="Secret pizza party")
    services.send_message(author=user, chat_id=ours.id, body="Nothing to see")

    found = gql.execute(SEARCH, {"q": "PIZZA"}, token=token)
    in_chat = gql.execute(SEARCH, {"q": "pizza", "chat": str(ours.id)}, token=token)
    other_chat = gql.execute(SEARCH, {"q": "pizza", "chat": str(theirs.id)}, token=token)

    assert _bodies(found) == _bodies(in_chat) == ["The pizza is here"]
    assert found.data["searchMessages"]["edges"][0]["node"]["snippet"] == (
        "The <mark>pizza</mark> is here"
    )
    assert other_chat.error_codes == ["NOT_FOUND"]


@pytest.mark.django_db
def test_deleted_messages_vanish_from_results(gql, user, token, grace, chats):
    ours, _ = chats
    message = services.send_message(author=grace, chat_id=ours.id, body="delete me, tomato")
    assert _bodies(gql.execute(SEARCH, {"q": "tomato"}, token=token)) == ["delete me, tomato"]

    services.delete_message(user=grace, message_id=message.id)

    assert _bodies(gql.execute(SEARCH, {"q": "tomato"}, token=token)) == []


@pytest.mark.django_db
def test_the_snippet_is_escaped_and_results_page_by_cursor(gql, user, token, grace, chats):
    ours, _ = chats
    for n in range(5):
        services.send_message(author=grace, chat_id=ours.id, body=f"<b>bold</b> note {n}")

    first = gql.execute(SEARCH, {"q": "note", "first": 3}, token=token).data["searchMessages"]
    rest = gql.execute(
        SEARCH, {"q": "note", "first": 3, "after": first["pageInfo"]["endCursor"]}, token=token
    ).data["searchMessages"]

    assert first["edges"][0]["node"]["snippet"].startswith("&lt;b&gt;bold&lt;/b&gt; <mark>note")
    bodies = [e["node"]["message"]["body"] for e in first["edges"] + rest["edges"]]
    assert sorted(bodies) == [f"<b>bold</b> note {n}" for n in range(5)]
    assert (first["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasNextPage"]) == (True, False)


@pytest.mark.django_db
def test_a_query_that_is_empty_or_too_long_is_bad_input(gql, token, chats):
    assert gql.execute(SEARCH, {"q": "   "}, token=token).error_codes == ["BAD_USER_INPUT"]
    assert gql.execute(SEARCH, {"q": "x" * 201}, token=token).error_codes == ["BAD_USER_INPUT"]
    assert gql.execute(SEARCH, {"q": "x"}).error_codes == ["UNAUTHENTICATED"]


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="ranking is PostgreSQL's: runs in that pass"
)
def test_ranking_puts_the_exact_phrase_first(gql, user, token, grace, chats):
    ours, _ = chats
    services.send_message(author=grace, chat_id=ours.id, body="lunch first, then at noon a call")
    services.send_message(author=grace, chat_id=ours.id, body="lunch at noon tomorrow")
    services.send_message(author=grace, chat_id=ours.id, body="at noon? lunch, maybe")
    services.send_message(author=grace, chat_id=ours.id, body="noon lunch at the park")

    ranked = gql.execute(SEARCH, {"q": "lunch at noon"}, token=token)
    phrase = gql.execute(SEARCH, {"q": '"lunch at noon"'}, token=token)
    excluded = gql.execute(SEARCH, {"q": "lunch -tomorrow"}, token=token)

    assert _bodies(ranked)[0] == "lunch at noon tomorrow"
    assert len(_bodies(ranked)) == 4
    assert _bodies(phrase) == ["lunch at noon tomorrow"]
    assert sorted(_bodies(excluded)) == [
        "at noon? lunch, maybe",
        "lunch first, then at noon a call",
        "noon lunch at the park",
    ]
    assert ranked.data["searchMessages"]["edges"][0]["node"]["snippet"] == (
        "<mark>lunch</mark> <mark>at</mark> <mark>noon</mark> tomorrow"
    )


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="ranking is PostgreSQL's: runs in that pass"
)
def test_only_the_newest_candidates_are_ranked(gql, user, token, grace, chats, settings):
    settings.SEARCH_CANDIDATES = 2
    ours, _ = chats
    for body in ("kiwi kiwi kiwi", "a kiwi", "another kiwi"):
        services.send_message(author=grace, chat_id=ours.id, body=body)

    found = gql.execute(SEARCH, {"q": "kiwi"}, token=token)

    assert sorted(_bodies(found)) == ["a kiwi", "another kiwi"]


@pytest.mark.django_db
def test_phrases_exclusions_and_or_mean_the_same_on_every_database(gql, user, token, grace, chats):
    # Before the embedded default read this syntax, `-tomorrow` was a word it required.
    ours, _ = chats
    for body in ("lunch at noon tomorrow", "lunch first, then at noon a call", "mango smoothie"):
        services.send_message(author=grace, chat_id=ours.id, body=body)

    def found(query):
        return sorted(_bodies(gql.execute(SEARCH, {"q": query}, token=token)))

    assert found("lunch -tomorrow") == ["lunch first, then at noon a call"]
    assert found('"lunch at noon"') == ["lunch at noon tomorrow"]
    assert found("kiwi or mango") == ["mango smoothie"]
    assert found("-lunch") == ["mango smoothie"]
    assert found("!!!") == found('"') == found("or") == []
