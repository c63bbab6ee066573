"""Objects completed in one pass by a plan (`schema/plans.py`) answer exactly as
graphql-core completes them, and anything a plan cannot read goes graphql-core's way."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from django.test import RequestFactory
from strawberry.extensions import ParserCache

from chat.services import chats, messages
from schema import plans, schema
from schema.columns import ColumnExecutor
from schema.context import Context
from schema.plans import PlannedExecutor, Planner


@strawberry.type
class Item:
    name: str
    tags: list[str]
    scores: list[int | None] | None
    child: "Item | None" = None


async def _later(value: Any) -> Any:
    return value


def _tags() -> Iterator[str]:
    yield from ("a", "b")


# What a resolver might hand graphql-core; each is compared with its own executor.
SHAPES: dict[str, Any] = {
    "plain": lambda: [
        Item(
            name="one", tags=["x"], scores=[1, None], child=Item(name="two", tags=[], scores=None)
        )
    ],
    "a null where the schema forbids one": lambda: [Item(name=None, tags=[], scores=None)],
    "a value the scalar refuses": lambda: [Item(name="one", tags=[object()], scores=[])],
    "a value the scalar converts": lambda: [Item(name=12, tags=[True], scores=[2.0])],
    "an iterator, spent by reading it": lambda: [Item(name="one", tags=_tags(), scores=None)],
    "an awaitable list item": lambda: [Item(name="one", tags=[_later("late")], scores=None)],
    "an awaitable object": lambda: [_later(Item(name="late", tags=[], scores=None))],
    "an awaitable attribute": lambda: [Item(name=_later("late"), tags=[], scores=None)],
    "a nested null": lambda: [
        Item(name="one", tags=[], scores=None, child=Item(name=None, tags=[], scores=None))
    ],
}


def synthetic_schema(items: Any, executor: type | None, **options: Any) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def items(self) -> list[Item]:
            return items()

    if executor is None:
        return strawberry.Schema(Query, **options)
    return strawberry.Schema(Query, execution_context_class=executor, **options)


QUERIES = {
    "fields": "{ items { name tags scores child { name tags } } }",
    "aliases, fragments and __typename": """{ items { __typename n: name ...F
        child { ... on Item { __typename name } } } } fragment F on Item { name tags }""",
    "skip and include": """query($on: Boolean!) { items {
        name @include(if: $on) tags @skip(if: $on) child @include(if: $on) { name } } }""",
}


@pytest.fixture
def planned(monkeypatch) -> list[bool]:
    """Whether each planned completion was answered by its plan (False: it fell back)."""
    answered: list[bool] = []
    object_plan = Planner.object_plan

    def record(self, object_type, field_details_list):
        plan = object_plan(self, object_type, field_details_list)
        if plan is None:
            return None

        def run(value, path):
            try:
                result = plan.run(value, path)
            except plans.Unplanned:
                answered.append(False)
                raise
            answered.append(True)
            return result

        return plans.Planned(run, plan.wants_path)

    monkeypatch.setattr(Planner, "object_plan", record)
    return answered


@pytest.fixture
def long_way(monkeypatch) -> list[str]:
    """The object types graphql-core completed itself, field by field."""
    completed: list[str] = []
    complete = ColumnExecutor.complete_object_value

    def record(self, return_type, *args):
        completed.append(return_type.name)
        return complete(self, return_type, *args)

    monkeypatch.setattr(ColumnExecutor, "complete_object_value", record, raising=False)
    return completed


# A coroutine the query does not select is never awaited, by either executor.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("query", QUERIES)
def test_a_plan_answers_as_graphql_core_does_whatever_it_is_handed(planned, shape, query):
    variables = {"on": True} if "$on" in QUERIES[query] else None

    def run(executor: type | None) -> tuple[Any, list[tuple]]:
        result = asyncio.run(
            synthetic_schema(SHAPES[shape], executor).execute(
                QUERIES[query], variable_values=variables
            )
        )
        return result.data, [(e.message, e.path) for e in result.errors or ()]

    assert run(PlannedExecutor) == run(None)
    assert planned, "no plan was tried"
    if shape == "plain":
        assert all(planned)


@pytest.fixture
def plans_made(monkeypatch) -> list[str]:
    """The object types a plan was worked out for."""
    plans._shared.clear()
    made: list[str] = []
    original = Planner._object

    def counting(self, object_type, details):
        made.append(object_type.name)
        return original(self, object_type, details)

    monkeypatch.setattr(Planner, "_object", counting)
    return made


def test_a_plan_is_worked_out_once_per_selection_and_kept_for_the_same_document(plans_made):
    query = "{ items { name child { name } } }"
    items = [
        Item(name=str(n), tags=[], scores=None, child=Item(name="c", tags=[], scores=None))
        for n in range(20)
    ]
    # The document is parsed once, as the project's DocumentCache parses it.
    schema_ = synthetic_schema(lambda: items, PlannedExecutor, extensions=[ParserCache])
    for _ in range(3):
        result = schema_.execute_sync(query)
        assert result.errors is None
        assert len(result.data["items"]) == 20
    assert sorted(plans_made) == ["Item", "Item"]  # the item's selection, the child's


def test_a_selection_that_depends_on_the_variables_is_planned_per_execution(plans_made):
    query = "query($on: Boolean!) { items { name @include(if: $on) tags } }"
    schema_ = synthetic_schema(
        lambda: [Item(name="n", tags=["t"], scores=None)],
        PlannedExecutor,
        extensions=[ParserCache],
    )

    answers = [
        schema_.execute_sync(query, variable_values={"on": on}).data for on in (True, False, True)
    ]

    assert answers == [
        {"items": [{"name": "n", "tags": ["t"]}]},
        {"items": [{"tags": ["t"]}]},
        {"items": [{"name": "n", "tags": ["t"]}]},
    ]
    assert plans_made == ["Item", "Item", "Item"]


def execute(query: str, viewer: Any, **variables: Any) -> dict:
    result = schema.execute_sync(
        query,
        variable_values=variables,
        context_value=Context(request=RequestFactory().post("/graphql/"), user=viewer),
    )
    return {
        "data": result.data,
        "errors": [(e.message, e.path, e.extensions) for e in result.errors or ()],
    }


HISTORY = """query($chatId: ID!) { messages(chatId: $chatId, last: 10) {
    edges { cursor node { __typename id seq kind body createdAt editedAt
                          author { id displayName } } }
    pageInfo { hasPreviousPage startCursor } } }"""


@pytest.mark.django_db
def test_a_history_page_is_one_plan_and_answers_as_graphql_core_does(
    monkeypatch, planned, long_way, make_user
):
    ada, bob = make_user(display_name="Ada"), make_user(display_name="Bob")
    chat = chats.open_direct_chat(user=ada, other_user_id=bob.pk)
    for body in ("one", "two", "three"):
        messages.send_message(author=ada, chat_id=chat.pk, body=body)

    ours = execute(HISTORY, ada, chatId=str(chat.pk))
    assert planned
    assert all(planned)
    assert long_way == [], "graphql-core completed part of the page itself"
    with monkeypatch.context() as patch:
        patch.setattr(Planner, "object_plan", lambda *args: None)
        theirs = execute(HISTORY, ada, chatId=str(chat.pk))

    assert ours == theirs
    page = ours["data"]["messages"]
    assert [e["node"]["body"] for e in page["edges"]] == ["one", "two", "three"]
    assert {e["node"]["author"]["displayName"] for e in page["edges"]} == {"Ada"}


@pytest.mark.django_db
def test_a_page_whose_author_is_not_joined_is_completed_the_long_way(
    monkeypatch, planned, long_way, make_user
):
    """The page's query joins the author only when it is selected: a row without it (as
    a reused page might be) makes the plan give way, and the resolver loads it."""
    ada, bob = make_user(display_name="Ada"), make_user(display_name="Bob")
    chat = chats.open_direct_chat(user=ada, other_user_id=bob.pk)
    messages.send_message(author=bob, chat_id=chat.pk, body="hi")
    monkeypatch.setattr("schema.queries.message_joins", lambda fields: ())  # join nothing

    ours = execute(HISTORY, ada, chatId=str(chat.pk))

    assert ours["errors"] == []
    assert [e["node"]["author"]["displayName"] for e in ours["data"]["messages"]["edges"]] == [
        "Bob"
    ]
    assert set(long_way) == {"MessageConnection", "MessageEdge", "Message"}  # gave way ...
    assert True in planned  # ... and the author and page info still had their plans


CHAT_LIST = """{ chats(first: 10) { edges { cursor node {
    id kind name unreadCount lastReadSeq isMuted myRole
    lastMessage { seq body author { displayName email } }
    peer { id displayName email }
} } pageInfo { hasNextPage endCursor } } }"""


@pytest.mark.django_db
def test_a_chat_list_is_one_plan_and_answers_as_graphql_core_does(
    monkeypatch, planned, long_way, make_user
):
    """Unread counts, last messages and peers are read from what the page loaded, with the
    viewer's `info` where a resolver asks for it (an email shows to its owner only)."""
    ada, bob = make_user(display_name="Ada"), make_user(display_name="Bob")
    direct = chats.open_direct_chat(user=ada, other_user_id=bob.pk)
    room = chats.create_room(owner=ada, name="Room", is_public=True)
    messages.send_message(author=bob, chat_id=direct.pk, body="hi")
    messages.send_message(author=ada, chat_id=room.pk, body="mine")

    ours = execute(CHAT_LIST, ada)
    assert planned
    assert all(planned)
    assert long_way == [], "graphql-core completed part of the list itself"
    with monkeypatch.context() as patch:
        patch.setattr(Planner, "object_plan", lambda *args: None)
        theirs = execute(CHAT_LIST, ada)

    assert ours == theirs
    nodes = {e["node"]["kind"]: e["node"] for e in ours["data"]["chats"]["edges"]}
    assert nodes["DIRECT"]["unreadCount"] == 1
    assert nodes["DIRECT"]["peer"] == {"id": str(bob.pk), "displayName": "Bob", "email": None}
    assert nodes["DIRECT"]["lastMessage"]["author"] == {"displayName": "Bob", "email": None}
    assert nodes["GROUP"]["lastMessage"]["author"] == {"displayName": "Ada", "email": ada.email}
    assert nodes["GROUP"]["myRole"] == "OWNER"

    # The same document for another viewer, through the plan kept from Ada's: each
    # resolver is given Bob's own request (an email shows to its owner only).
    [bobs] = [e["node"] for e in execute(CHAT_LIST, bob)["data"]["chats"]["edges"]]
    assert bobs["peer"] == {"id": str(ada.pk), "displayName": "Ada", "email": None}
    assert bobs["lastMessage"]["author"] == {"displayName": "Bob", "email": bob.email}
    assert bobs["unreadCount"] == 0


TOGGLED = """query($chatId: ID!, $on: Boolean!) { messages(chatId: $chatId, last: 5) {
    edges { node { seq ...Text } } } }
fragment Text on Message { body @include(if: $on) author @skip(if: $on) { displayName } }"""


@pytest.mark.django_db(transaction=True)
def test_a_selection_a_variable_changes_is_never_answered_from_another_requests_plan(
    gql, user, token, grace
):
    """Hostile to a kept plan: one document whose fields depend on a variable (inside a
    fragment), sent over HTTP with it on, off and on again."""
    chat = chats.open_direct_chat(user=user, other_user_id=grace.pk)
    messages.send_message(author=grace, chat_id=chat.pk, body="hi")

    nodes = [
        gql.execute(TOGGLED, {"chatId": str(chat.pk), "on": on}, token=token).data["messages"][
            "edges"
        ][0]["node"]
        for on in (True, False, True)
    ]

    assert nodes == [
        {"seq": 1, "body": "hi"},
        {"seq": 1, "author": {"displayName": grace.display_name}},
        {"seq": 1, "body": "hi"},
    ]
