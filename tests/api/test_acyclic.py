"""Executions are freed when they end, not by the garbage collector (schema/acyclic.py)."""

import asyncio
import gc
import weakref
from contextlib import contextmanager

import pytest
import strawberry

from chat.services import chats, messages
from schema import execution
from schema.acyclic import AcyclicExecutor


@contextmanager
def no_collector():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def executions(monkeypatch) -> list[weakref.ref]:
    made: list[weakref.ref] = []
    init = execution.SharedEventExecutor.__init__

    def remember(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(execution.SharedEventExecutor, "__init__", remember)
    return made


HISTORY = """query($chatId: ID!) { messages(chatId: $chatId, last: 10) {
    edges { node { seq body author { displayName } reactions { emoji count } } } } }"""


@pytest.mark.django_db(transaction=True)
def test_a_history_page_over_http_is_freed_as_soon_as_it_is_answered(
    executions, gql, user, token, grace
):
    chat = chats.open_direct_chat(user=user, other_user_id=grace.pk)
    messages.send_message(author=grace, chat_id=chat.pk, body="hi")
    gql.execute(HISTORY, {"chatId": str(chat.pk)}, token=token)  # warm: caches filled
    executions.clear()

    with no_collector():
        reply = gql.execute(HISTORY, {"chatId": str(chat.pk)}, token=token)
        [execution_] = executions
        freed = execution_() is None

    assert reply.data["messages"]["edges"][0]["node"]["body"] == "hi"
    assert freed, "the execution waited for the garbage collector"


def test_resolvers_still_gather_and_track_asynchronous_work():
    tracked: list[str] = []

    async def later(value: str) -> str:
        await asyncio.sleep(0)
        tracked.append(value)
        return value

    @strawberry.type
    class Query:
        @strawberry.field
        async def both(self, info: strawberry.Info) -> list[str]:
            helpers = info._raw_info.async_helpers
            helpers.track([later("tracked"), "not awaitable"])
            return await helpers.gather([later("a"), later("b")])

    made: list[weakref.ref] = []

    class Remembered(AcyclicExecutor):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    synthetic = strawberry.Schema(Query, execution_context_class=Remembered)

    async def run():
        result = await synthetic.execute("{ both }")
        await asyncio.sleep(0.01)  # the tracked work settles in the background
        return result

    with no_collector():
        result = asyncio.run(run())
        freed = made[0]() is None

    assert result.errors is None
    assert result.data == {"both": ["a", "b"]}
    assert "tracked" in tracked
    assert freed


SEND = """mutation($input: SendMessageInput!) {
    sendMessage(input: $input) {
        __typename ... on Message { seq body author { displayName } } } }"""


@pytest.mark.django_db(transaction=True)
def test_a_send_over_http_is_freed_as_soon_as_it_is_answered(executions, gql, user, token, grace):
    chat = chats.open_direct_chat(user=user, other_user_id=grace.pk)
    variables = {"input": {"chatId": str(chat.pk), "body": "warm"}}
    gql.execute(SEND, variables, token=token)
    executions.clear()

    with no_collector():
        reply = gql.execute(SEND, {"input": {"chatId": str(chat.pk), "body": "hi"}}, token=token)
        [execution_] = executions
        freed = execution_() is None

    assert reply.data["sendMessage"]["body"] == "hi"
    assert freed, "the execution waited for the garbage collector"


async def test_a_subscription_events_execution_is_freed_once_delivered(
    asgi_app, people, executions
):
    """The hub executes each event for the sockets that share its selection (schema.fanout);
    that execution is freed once its frame is written."""
    from tests.api.realtime import CHAT_EVENTS, events, send, subscribed

    chat = people["chat"]
    socket = await subscribed(asgi_app, people["ada_token"], CHAT_EVENTS, {"chatId": str(chat.id)})
    await send(asgi_app, people["grace_token"], chat, "warm")
    await events(socket, 1)
    executions.clear()

    with no_collector():
        await send(asgi_app, people["grace_token"], chat, "hi")
        [event] = await events(socket, 1)
        await asyncio.sleep(0.05)  # the frame is written; nothing of the event is left
        alive = [execution_ for execution_ in executions if execution_() is not None]
    await socket.close()

    assert event["chatEvents"]["message"]["body"] == "hi"
    assert len(executions) >= 2, "the send and the event were not both executed"
    assert alive == [], "an execution waited for the garbage collector"


async def daphne_post(app, body: bytes, token: str) -> bytes:
    """A POST as daphne serves one: `http.disconnect` is queued as soon as the response's
    last body message is written, whether or not the client stays connected."""
    from tests.graphql_client import post_scope

    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answered = asyncio.Event()
    chunks: list[bytes] = []

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    await asyncio.wait_for(app(post_scope(headers), receive, send), 10)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "query",
    [
        "{ __typename }",  # the request's own machinery
        "{ me { displayName } }",  # and a resolver run on a worker thread
    ],
)
@pytest.mark.django_db(transaction=True)
async def test_a_request_served_as_daphne_serves_it_is_freed_once_answered(
    asgi_app, monkeypatch, close_worker_connections, query
):
    """Django's handler re-raised daphne's `http.disconnect` (a RequestAborted) in a frame
    that held the request, and the request's lazy user, `auser` and message storage refer
    back to it: every request, with its scope, body and response, waited for the
    collector, and what outlived two young collections set off full ones (server.handler).

    A worker thread may still hold its last task for a moment after handing the result
    back (concurrent.futures deletes it once `set_result` returns, and the event loop may
    run first), so a request is given a moment; one in a cycle is never freed with the
    collector off."""
    import json

    from asgiref.sync import sync_to_async
    from django.core.handlers.asgi import ASGIRequest

    from server.asgi import django_application
    from tests.factories import UserFactory, token_for

    made: list[weakref.ref] = []

    class Remembered(ASGIRequest):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(django_application, "request_class", Remembered)
    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    body = json.dumps({"query": query}).encode()
    await daphne_post(asgi_app, body, token)  # warm: the token is cached
    made.clear()

    with no_collector():
        replies = [await daphne_post(asgi_app, body, token) for _ in range(3)]
        for _ in range(50):
            alive = [request for request in made if request() is not None]
            if not alive:
                break
            await asyncio.sleep(0.02)

    assert all("errors" not in json.loads(reply) for reply in replies), replies
    assert len(made) == 3
    assert alive == [], "a request waited for the garbage collector"
