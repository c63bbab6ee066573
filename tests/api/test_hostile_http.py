"""Hostile input over HTTP: every one is a 4xx or a coded GraphQL error, is refused
quickly, and writes nothing."""

import base64
import json
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from chat import services
from chat.models import Chat, Message
from tests.factories import token_for

SEND = """
mutation($chatId: ID!, $body: String!) {
  sendMessage(input: {chatId: $chatId, body: $body}) {
    __typename ... on OperationInfo { messages { code } }
  }
}
"""
EDIT = """
mutation($id: ID!, $body: String!) {
  editMessage(messageId: $id, body: $body) { __typename }
}
"""
CREATE_ROOM = 'mutation { createRoom(name: "Spam") { __typename } }'
HISTORY = """
query($chatId: ID!, $before: String) {
  messages(chatId: $chatId, last: 10, before: $before) { edges { node { seq } } }
}
"""
USERS = "query($s: String!) { users(search: $s) { edges { node { id } } } }"


def fragment_chain(length: int) -> str:
    """Each fragment spreads the previous one twice: 2^length fields once inlined."""
    fragments = ["fragment F0 on User { id displayName }"]
    for n in range(1, length + 1):
        fragments.append(f"fragment F{n} on User {{ ...F{n - 1} ...F{n - 1} }}")
    return "query { me { ...F%d } }\n%s" % (length, "\n".join(fragments))  # noqa: UP031


def post(app, content: bytes, headers: dict | None = None) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post(
                "/graphql/",
                content=content,
                headers={"Content-Type": "application/json", **(headers or {})},
            )

    return async_to_sync(send)()


# --- stalls ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("token_needed", [False, True])
def test_a_30_fragment_chain_is_refused_at_once(gql, token, token_needed):
    started = time.perf_counter()
    response = gql.execute(fragment_chain(30), token=token if token_needed else None)
    elapsed = time.perf_counter() - started

    assert response.json["data"] is None
    assert response.error_codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert response.errors[0]["message"].startswith("The document selects ")
    # Exponential validation would take years; a linear check takes milliseconds (the
    # bound is loose only because the machines are shared).
    assert elapsed < 2


@pytest.mark.django_db
def test_a_fragment_chain_within_the_limit_still_runs(gql, token, user):
    response = gql.execute(fragment_chain(5), token=token)

    assert response.data == {"me": {"id": str(user.id), "displayName": user.display_name}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ ...Missing }", "Unknown fragment 'Missing'."),
        (
            "query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }",
            "Cannot spread fragment 'A' within itself via 'B'.",
        ),
    ],
)
def test_unknown_and_cyclic_fragments_are_validation_errors(gql, token, query, message):
    response = gql.execute(query, token=token)

    assert response.json["data"] is None
    assert response.error_codes[0] == "GRAPHQL_VALIDATION_FAILED"
    assert response.errors[0]["message"] == message


@pytest.mark.django_db
def test_aliases_are_counted_through_fragments(gql, token, settings):
    settings.GRAPHQL_MAX_ALIASES = 4
    # Two aliases in a fragment spread four times: eight once inlined.
    query = """
    query { me { ...A ...A ...A ...A } }
    fragment A on User { a: id b: id }
    """

    response = gql.execute(query, token=token)

    assert response.error_codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert response.errors[0]["message"] == "8 aliases found. Allowed: 4"


# --- malformed bodies ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"query": "{ me { id } }", "x": "\xff\xfe"}', "Unable to parse request body as JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "Unable to parse request body as JSON"),
        (b'"{ me { id } }"', "The request body must be a JSON object."),
        (b"42", "The request body must be a JSON object."),
        (
            b'{"query": 42}',
            "The GraphQL operation's `query` must be a string or null, if provided.",
        ),
    ],
    ids=["invalid-utf8", "nested-100000", "json-string", "json-number", "query-not-string"],
)
def test_a_malformed_body_is_a_400_with_a_json_error(asgi_app, body, message):
    response = post(asgi_app, body)

    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]
    }


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_with_a_json_error(asgi_app, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"query": "{ __typename }", "pad": "x" * 2000}).encode()

    response = post(asgi_app, body)

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}


# --- client mistakes are coded ---------------------------------------------------------


def cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "before",
    [cursor(["x"]), cursor([1.5]), cursor([True]), cursor([[1]]), cursor([2**70]), "%%%"],
)
def test_a_cursor_with_values_of_the_wrong_type_is_bad_user_input(gql, user, token, before):
    chat = services.create_room(owner=user, name="Room")

    response = gql.execute(HISTORY, {"chatId": str(chat.id), "before": before}, token=token)

    assert response.json["data"] is None
    assert response.errors[0]["message"] == "Invalid cursor."
    assert response.error_codes == ["BAD_USER_INPUT"]


PAGES = """
query($chatId: ID!, $first: Int, $last: Int, $after: String, $before: String) {
  messages(chatId: $chatId, first: $first, last: $last, after: $after, before: $before) {
    edges { node { seq } }
    pageInfo { hasNextPage hasPreviousPage }
  }
}
"""


TOP, BOTTOM = 2**63 - 1, -(2**63) + 1  # the ends of a bigint, both valid cursors


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"last": 10, "before": TOP}, [0, 1, 2]),
        ({"first": 10, "after": BOTTOM}, [0, 1, 2]),
        ({"first": 10, "after": TOP}, []),
        ({"last": 10, "after": 0, "before": 2}, [1]),
        ({"first": 10, "after": 2, "before": 0}, []),
        ({"last": 0, "before": 2}, []),
    ],
)
def test_extreme_and_crossed_cursors_page_from_the_same_kept_sql_as_the_orm(
    gql, user, token, variables, expected
):
    """History pages run SQL kept per shape (chat.prepared): the ends of a bigint,
    cursors that cross and empty pages answer as pages, twice in a row (built, then
    kept). A cursor below `TOP` names one of the chat's three messages by position."""
    chat = services.create_room(owner=user, name="Room")
    sent = [
        services.send_message(author=user, chat_id=chat.id, body=body).seq
        for body in ("one", "two", "three")
    ]

    def seq(value: int) -> int:
        return value if abs(value) > 2**62 else sent[value]

    arguments = {
        name: cursor([seq(value)]) if name in ("after", "before") else value
        for name, value in variables.items()
    }
    for _ in range(2):
        response = gql.execute(PAGES, {"chatId": str(chat.id), **arguments}, token=token)
        assert "errors" not in response.json
        seqs = [edge["node"]["seq"] for edge in response.data["messages"]["edges"]]
        assert [seq for seq in seqs if seq >= sent[0]] == [sent[i] for i in expected]


@pytest.mark.django_db
def test_a_nul_in_a_variable_is_refused_before_anything_runs(gql, user, token, settings):
    settings.SEND_RATE_BURST = 1
    chat = services.create_room(owner=user, name="Room")
    before = Message.objects.count()

    refused = gql.execute(SEND, {"chatId": str(chat.id), "body": "a\x00b"}, token=token)

    assert refused.json["data"] is None
    assert refused.errors[0]["message"] == "Strings cannot contain NUL characters."
    assert refused.error_codes == ["BAD_USER_INPUT"]
    assert Message.objects.count() == before
    # The refusal spent none of the send budget (a burst of one).
    sent = gql.execute(SEND, {"chatId": str(chat.id), "body": "fine"}, token=token)
    assert sent.data == {"sendMessage": {"__typename": "Message"}}


@pytest.mark.django_db
def test_a_nul_in_a_literal_is_refused(gql):
    query = 'mutation { login(email: "a\\u0000@example.com", password: "x") { __typename } }'

    response = gql.execute(query)

    assert response.json["data"] is None
    assert response.error_codes == ["BAD_USER_INPUT"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "leak"),
    [
        ("{ mee { id } }", "'me'"),
        ("query($k: ChatKnd) { __typename }", "'ChatKind'"),
        ('{ rooms(search: "x", frist: 1) { edges { cursor } } }', "'first'"),
    ],
)
def test_without_introspection_errors_suggest_no_names(gql, token, settings, query, leak):
    settings.GRAPHQL_INTROSPECTION = False

    response = gql.execute(query, token=token)

    assert set(response.error_codes) == {"GRAPHQL_VALIDATION_FAILED"}
    messages = " ".join(error["message"] for error in response.errors)
    assert "Did you mean" not in messages
    assert leak not in messages


@pytest.mark.django_db
def test_with_introspection_errors_still_suggest(gql, token):
    response = gql.execute("{ mee { id } }", token=token)

    assert response.errors[0]["message"] == (
        "Cannot query field 'mee' on type 'Query'. Did you mean 'me'?"
    )


# --- abuse ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_search_is_rate_limited(gql, token, settings):
    settings.SEARCH_RATE_BURST = 2

    answers = [gql.execute(USERS, {"s": f"a{n}"}, token=token) for n in range(3)]

    assert [a.json.get("errors") is None for a in answers] == [True, True, False]
    assert answers[2].error_codes == ["RATE_LIMITED"]
    assert answers[2].errors[0]["extensions"]["retryAfter"] >= 1


@pytest.mark.django_db
def test_edits_are_rate_limited_and_a_refused_edit_changes_nothing(gql, user, token, settings):
    settings.EDIT_RATE_BURST = 2
    chat = services.create_room(owner=user, name="Room")
    message = services.send_message(author=user, chat_id=chat.id, body="v0")

    answers = [
        gql.execute(EDIT, {"id": str(message.id), "body": f"v{n}"}, token=token)
        for n in range(1, 4)
    ]

    assert [a.json.get("errors") is None for a in answers] == [True, True, False]
    assert answers[2].error_codes == ["RATE_LIMITED"]
    message.refresh_from_db()
    assert message.body == "v2"


@pytest.mark.django_db
def test_room_creation_is_rate_limited(gql, user, token, settings):
    settings.ROOM_RATE_BURST = 2

    answers = [gql.execute(CREATE_ROOM, token=token) for _ in range(3)]

    assert [a.json.get("errors") is None for a in answers] == [True, True, False]
    assert answers[2].error_codes == ["RATE_LIMITED"]
    assert Chat.objects.filter(name="Spam").count() == 2


HEAVY = (
    "query($c: ID!) { "
    + " ".join(
        f"m{n}: messages(chatId: $c, last: 100) {{ edges {{ node {{ author {{ id }} }} }} }}"
        for n in range(3)
    )
    + " }"
)


@pytest.mark.django_db
def test_query_cost_is_budgeted_per_user(gql, user, make_user, settings):
    # Three pages of 100 edges, each with a node and its author: 3 * (1 + 100 * 3) = 903.
    settings.GRAPHQL_COST_RATE_BURST = 1500
    settings.GRAPHQL_COST_RATE_PER_SECOND = 1
    chat = services.create_room(owner=user, name="Room")
    heavy_user, other = token_for(user), token_for(make_user())

    first = gql.execute(HEAVY, {"c": str(chat.id)}, token=heavy_user)
    second = gql.execute(HEAVY, {"c": str(chat.id)}, token=heavy_user)
    others = gql.execute("{ me { id } }", token=other)

    assert first.json.get("errors") is None
    assert second.json["data"] is None
    assert second.error_codes == ["RATE_LIMITED"]
    assert second.errors[0]["extensions"]["cost"] == 903
    assert second.errors[0]["extensions"]["retryAfter"] >= 200
    assert others.json.get("errors") is None


@pytest.mark.django_db
def test_a_query_costing_more_than_the_whole_budget_is_refused(gql, user, token, settings):
    settings.GRAPHQL_COST_RATE_BURST = 500
    chat = services.create_room(owner=user, name="Room")

    response = gql.execute(HEAVY, {"c": str(chat.id)}, token=token)

    assert response.json["data"] is None
    assert response.error_codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert response.errors[0]["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED",
        "cost": 903,
        "maxCost": 500,
    }


@pytest.mark.django_db
def test_a_paged_field_written_without_arguments_is_priced_at_the_page_cap(gql, user, token):
    # Before the fix the price check crashed on a field with no arguments written at all,
    # and the error reached the client with no code.
    services.create_room(owner=user, name="Room")

    listed = gql.execute("query { chats { edges { node { name } } } }", token=token)
    nested = gql.execute(
        "query { chats { edges { node { members { edges { node { role } } } } } } }",
        token=token,
    )

    assert listed.data == {"chats": {"edges": [{"node": {"name": "Room"}}]}}
    assert nested.errors[0]["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED",
        "cost": 20301,
        "maxCost": 20000,
    }


@pytest.mark.django_db
def test_anonymous_query_cost_is_budgeted_per_address(asgi_app, gql, settings):
    settings.GRAPHQL_COST_RATE_BURST = 2
    settings.GRAPHQL_COST_RATE_PER_SECOND = 0.01
    from tests.graphql_client import GraphQLClient

    here = [gql.execute("{ __typename }") for _ in range(3)]
    elsewhere = GraphQLClient(asgi_app, client_address="198.51.100.3").execute("{ __typename }")

    assert [r.json.get("errors") is None for r in here] == [True, True, False]
    assert here[2].error_codes == ["RATE_LIMITED"]
    assert elsewhere.json == {"data": {"__typename": "Query"}}


@pytest.mark.django_db
def test_the_introspection_query_graphiql_sends_passes_the_limits(gql):
    from graphql import get_introspection_query

    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )

    response = gql.execute(query)

    assert response.data["__schema"]["queryType"] == {"name": "Query", "kind": "OBJECT"}


REPEATABLE_WRITES = {
    "editMessage": ("EDIT", 'editMessage(messageId: "{message}", body: "again")'),
    "deleteMessage": ("EDIT", 'deleteMessage(messageId: "{message}")'),
    "createRoom": ("ROOM", 'createRoom(name: "Again")'),
    "joinRoom": ("MEMBERSHIP", 'joinRoom(chatId: "{public_room}")'),
    "leaveRoom": ("MEMBERSHIP", 'leaveRoom(chatId: "{public_room}")'),
    "openDirectChat": ("MEMBERSHIP", 'openDirectChat(userId: "{other}")'),
    "addMembers": ("MEMBERSHIP", 'addMembers(chatId: "{room}", userIds: ["{other}"])'),
    "removeMember": ("MEMBERSHIP", 'removeMember(chatId: "{room}", userId: "{other}")'),
    "updateProfile": ("PROFILE", 'updateProfile(displayName: "Again")'),
    "changePassword": ("PROFILE", 'changePassword(currentPassword: "x", newPassword: "y")'),
    "markRead": ("READ", 'markRead(chatId: "{room}", seq: 1)'),
    "sendMessage": ("SEND", 'sendMessage(input: {{chatId: "{room}", body: "again"}})'),
}


@pytest.mark.django_db
@pytest.mark.parametrize("mutation", list(REPEATABLE_WRITES))
def test_every_repeatable_write_is_rate_limited(gql, user, make_user, token, settings, mutation):
    limit, call = REPEATABLE_WRITES[mutation]
    other = make_user()
    room = services.create_room(owner=user, name="Mine")
    public_room = services.create_room(owner=other, name="Open", is_public=True)
    message = services.send_message(author=user, chat_id=room.id, body="hello")
    setattr(settings, f"{limit}_RATE_BURST", 0)  # nothing left: the next call is refused
    setattr(settings, f"{limit}_RATE_PER_SECOND", 0.001)
    ids = {"message": message.id, "room": room.id, "public_room": public_room.id}
    document = "mutation { " + call.format(other=other.id, **ids) + " { __typename } }"
    rows = (Chat.objects.count(), Message.objects.count(), message.body)

    response = gql.execute(document, token=token)

    assert response.json["data"] is None
    assert response.error_codes == ["RATE_LIMITED"]
    assert response.errors[0]["extensions"]["retryAfter"] >= 1
    message.refresh_from_db()
    assert (Chat.objects.count(), Message.objects.count(), message.body) == rows
