"""Column fields read straight from the row (`schema/columns.py`), and fall back to the
field's own resolver when the column was not loaded."""

import pytest
from django.test import RequestFactory
from graphql import GraphQLObjectType
from strawberry_django.optimizer import DjangoOptimizerExtension

from chat.models import Message, User
from chat.services import chats, messages
from schema import columns, plans, schema
from schema.columns import ColumnAwareMiddleware, column_reader
from schema.context import Context

FIELDS = schema._schema.type_map


def reads_directly(type_name: str, field: str) -> bool:
    return getattr(FIELDS[type_name].fields[field].resolve, "reads_directly", False)


def test_plain_columns_are_read_directly_and_everything_else_keeps_its_resolver():
    assert reads_directly("Message", "body")
    assert reads_directly("Message", "seq")
    assert reads_directly("User", "joinedAt")  # a column under another name (date_joined)
    assert reads_directly("Message", "author")  # the row a foreign key points to
    # Resolvers that say when their data is loaded (`unless_loaded`), with or without info:
    assert reads_directly("Chat", "unreadCount")
    assert reads_directly("Message", "location")
    assert reads_directly("User", "email")  # only for the user themself
    assert not reads_directly("Chat", "members")  # a list of rows, by its own resolver
    assert not reads_directly("Chat", "onlineCount")  # async: asks the presence store
    assert not reads_directly("Message", "reactions")  # async: a data loader


def test_a_reader_returns_the_loaded_value_and_falls_back_for_a_deferred_one():
    calls = []

    def resolver(source, info, **kwargs):
        calls.append(source)
        return "from the resolver"

    read = column_reader("body", resolver)

    class Row:
        def __init__(self, **columns) -> None:
            self.__dict__.update(columns)

    loaded, deferred = Row(body="loaded"), Row()
    assert read(loaded, None) == "loaded"
    assert read(deferred, None) == "from the resolver"
    assert calls == [deferred]


def test_each_django_type_checks_its_own_rows_directly_and_anything_else_the_long_way():
    import strawberry

    from chat.models import Chat
    from schema.types import Chat as ChatType
    from schema.types import Message as MessageType

    is_message = FIELDS["Message"].is_type_of
    long_way = is_message.__wrapped__
    cases = [
        Message(body="a row"),
        strawberry.cast(MessageType, Message(body="cast")),
        strawberry.cast(ChatType, Message(body="cast elsewhere")),
        Chat(name="a chat"),
        object(),
    ]
    assert [is_message(case, None) for case in cases] == [True, True, False, False, False]
    assert [is_message(case, None) for case in cases] == [long_way(case, None) for case in cases]
    assert all(
        hasattr(FIELDS[name].is_type_of, "__wrapped__")
        for name in ("Chat", "User", "Message", "Attachment", "Member")
    )


@pytest.mark.django_db
def test_a_deferred_column_still_resolves_through_the_schema(make_user):
    make_user(display_name="Ada")
    viewer = User.objects.only("id").get()
    assert "display_name" not in viewer.__dict__

    result = schema.execute_sync(
        "{ me { displayName joinedAt } }",
        context_value=Context(request=RequestFactory().post("/graphql/"), user=viewer),
    )

    assert result.errors is None
    assert result.data["me"]["displayName"] == "Ada"


def test_only_column_readers_skip_the_optimizer_middleware():
    middleware = ColumnAwareMiddleware(DjangoOptimizerExtension())
    read = column_reader("body", lambda source, info: None)

    def resolver(source, info):
        return None

    assert middleware.get_field_resolver(read) is read
    assert middleware.get_field_resolver(resolver) is not resolver


def test_the_optimizer_is_the_only_middleware_a_reader_skips():
    """The readers skip the middleware chain because the optimizer, which acts only on
    querysets, is all it holds. A new extension with a `resolve` must revisit that."""
    resolving = [
        extension for extension in schema.get_extensions() if extension._implements_resolve()
    ]

    assert [type(extension) for extension in resolving] == [DjangoOptimizerExtension]


def execute(query: str, viewer: User) -> dict:
    result = schema.execute_sync(
        query, context_value=Context(request=RequestFactory().post("/graphql/"), user=viewer)
    )
    return {
        "data": result.data,
        "errors": [(e.message, e.path, e.extensions) for e in result.errors or ()],
    }


def as_graphql_core_completes(monkeypatch, query: str, viewer: User) -> dict:
    """The same operation with `ColumnExecutor`'s own completion switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(columns, "leaf_column", lambda *args: None)
        patch.setattr(plans.Planner, "object_plan", lambda *args: None)
        return execute(query, viewer)


PROFILE = """{ me { id name: displayName displayName joinedAt email ...More } }
fragment More on User { displayName joinedAt }"""


@pytest.mark.django_db
@pytest.mark.parametrize("completion", ["by ColumnExecutor", "by a plan"])
@pytest.mark.parametrize(
    ("column", "value"),
    [
        pytest.param(None, None, id="as loaded"),
        pytest.param("display_name", None, id="null where the schema forbids it"),
        pytest.param("date_joined", "not a datetime", id="a value the scalar refuses"),
        pytest.param("email", 12, id="a value the scalar converts"),
        pytest.param("display_name", ..., id="not loaded"),
    ],
)
def test_scalar_columns_complete_exactly_as_graphql_core_completes_them(
    monkeypatch, make_user, column, value, completion
):
    make_user(display_name="Ada")
    viewer = User.objects.get()
    if value is ...:
        del viewer.__dict__[column]
    elif column is not None:
        viewer.__dict__[column] = value
    completed = []
    monkeypatch.setattr(plans, "_shared", {})  # worked out here, not kept from another test
    if completion == "by a plan":
        plan = plans.Planner._object
        spy = (
            plans.Planner,
            "_object",
            lambda *args: completed.append(plan(*args)) or completed[-1],
        )
    else:
        leaf_column = columns.leaf_column
        spy = (
            columns,
            "leaf_column",
            lambda *a: completed.append(leaf_column(*a)) or completed[-1],
        )

    with monkeypatch.context() as patch:
        patch.setattr(*spy)
        if completion == "by ColumnExecutor":
            patch.setattr(plans.Planner, "object_plan", lambda *args: None)
        ours = execute(PROFILE, viewer)

    assert ours == as_graphql_core_completes(monkeypatch, PROFILE, viewer)
    assert any(completed), "the fast completion was not used"
    if column is None:
        assert ours["errors"] == []
        assert ours["data"]["me"]["name"] == ours["data"]["me"]["displayName"] == "Ada"
        assert ours["data"]["me"]["joinedAt"] == viewer.date_joined.isoformat()
    elif column == "display_name" and value is None:
        assert ours["data"] is None  # `me` is non-null too
        [(message, path, _)] = ours["errors"]
        assert (message, path) == ("Unexpected error.", ["me", "name"])  # masked, located


@pytest.mark.django_db
def test_an_enum_column_and_a_history_page_complete_as_graphql_core_completes_them(
    monkeypatch, make_user
):
    ada, bob = make_user(display_name="Ada"), make_user(display_name="Bob")
    chat = chats.open_direct_chat(user=ada, other_user_id=bob.pk)
    for body in ("one", "two"):
        messages.send_message(author=ada, chat_id=chat.pk, body=body)
    query = f"""{{ messages(chatId: "{chat.pk}", last: 10) {{
        edges {{ cursor node {{
            id seq kind body createdAt editedAt author {{ id displayName }}
        }} }}
        pageInfo {{ hasPreviousPage startCursor }} }} }}"""

    ours = execute(query, ada)

    assert ours == as_graphql_core_completes(monkeypatch, query, ada)
    nodes = [edge["node"] for edge in ours["data"]["messages"]["edges"]]
    assert [(n["seq"], n["kind"], n["body"], n["author"]["displayName"]) for n in nodes] == [
        (1, "TEXT", "one", "Ada"),
        (2, "TEXT", "two", "Ada"),
    ]
    assert nodes[0]["editedAt"] is None


@pytest.mark.django_db
def test_a_joined_author_is_read_from_the_row_and_a_missing_one_is_loaded(
    make_user, django_assert_num_queries
):
    ada, bob = make_user(display_name="Ada"), make_user(display_name="Bob")
    chat = chats.open_direct_chat(user=ada, other_user_id=bob.pk)
    sent = messages.send_message(author=ada, chat_id=chat.pk, body="hi")
    author = schema._schema.type_map["Message"].fields["author"].resolve

    joined = Message.objects.select_related("author").get(pk=sent.pk)
    with django_assert_num_queries(0):
        assert author(joined, None) == ada

    plain = Message.objects.get(pk=sent.pk)
    info = type("Info", (), {"context": None})()
    with django_assert_num_queries(1):
        assert author(plain, info) == ada


def every_field_the_long_way(patch: pytest.MonkeyPatch) -> None:
    """Direct readers, `ColumnExecutor`'s completion and plans off: every field as
    graphql-core, Strawberry and strawberry-django resolve it."""
    patch.setattr(columns, "leaf_column", lambda *args: None)
    patch.setattr(plans.Planner, "object_plan", lambda *args: None)
    for graphql_type in FIELDS.values():
        if isinstance(graphql_type, GraphQLObjectType):
            for field in graphql_type.fields.values():
                if getattr(field.resolve, "reads_directly", False):
                    patch.setattr(field, "resolve", field.resolve.__wrapped__)


CHAT_LIST = """{ chats(first: 10) { edges { node {
    id kind name lastSeq unreadCount lastReadSeq isMuted
    lastMessage { seq kind body isDeleted location { latitude longitude label }
                  author { id displayName email } }
    peer { id displayName email joinedAt avatarUrl }
} } } }"""

HISTORY = """query($chatId: ID!) { messages(chatId: $chatId, last: 10) { edges { cursor node {
    id seq kind body createdAt editedAt isDeleted
    location { latitude longitude label }
    replyTo { seq body author { displayName } }
    author { id displayName email avatarUrl }
} } pageInfo { hasPreviousPage startCursor } } }"""


@pytest.mark.django_db(transaction=True)
def test_a_chat_list_and_a_history_page_over_http_answer_as_the_long_way_does(
    monkeypatch, gql, token, user, grace
):
    """Over HTTP, with what the direct paths read: columns, joined rows, the viewer's
    membership, last messages and peers, another user's email (null) and one's own."""
    room = chats.create_room(owner=user, name="Room", is_public=True)
    chats.join_room(user=grace, chat_id=room.id)
    first = messages.send_message(author=grace, chat_id=room.id, body="first")
    messages.send_location(author=user, chat_id=room.id, latitude=51.5, longitude=-0.12)
    messages.send_message(author=grace, chat_id=room.id, body="re", reply_to_id=first.id)
    gone = messages.send_message(author=user, chat_id=room.id, body="gone")
    messages.delete_message(user=user, message_id=gone.id)
    messages.send_message(author=grace, chat_id=room.id, body="after")
    direct = chats.open_direct_chat(user=user, other_user_id=grace.id)
    messages.send_message(author=grace, chat_id=direct.id, body="hi")
    variables = {"chatId": str(room.id)}

    ours = [gql.execute(CHAT_LIST, token=token), gql.execute(HISTORY, variables, token=token)]
    with monkeypatch.context() as patch:
        every_field_the_long_way(patch)
        theirs = [
            gql.execute(CHAT_LIST, token=token),
            gql.execute(HISTORY, variables, token=token),
        ]

    assert [r.json for r in ours] == [r.json for r in theirs]
    listed = {e["node"]["kind"]: e["node"] for e in ours[0].data["chats"]["edges"]}
    assert listed["DIRECT"]["peer"]["email"] is None  # another user's
    assert listed["DIRECT"]["lastMessage"]["body"] == "hi"
    assert listed["GROUP"]["unreadCount"] == 1  # grace's one after the viewer's own
    nodes = [e["node"] for e in ours[1].data["messages"]["edges"]]
    emails = {n["author"]["displayName"]: n["author"]["email"] for n in nodes if n["author"]}
    assert emails == {user.display_name: user.email, grace.display_name: None}
    assert [n["body"] for n in nodes if n["isDeleted"]] == [""]
    assert any(n["location"] == {"latitude": 51.5, "longitude": -0.12, "label": ""} for n in nodes)
    assert any(n["replyTo"] and n["replyTo"]["body"] == "first" for n in nodes)
