"""Thread hops per HTTP request: each is a thread switch and two event-loop wake-ups, and
under ASGI they were most of a request's overhead (issue 14)."""

import asyncio

import pytest
from asgiref.sync import SyncToAsync, sync_to_async

from tests.api.realtime import http
from tests.factories import UserFactory, token_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_django_middleware_runs_without_thread_hops(
    asgi_app, monkeypatch, close_worker_connections
):
    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    await http(asgi_app, "query { me { displayName } }", {}, token)  # warm up

    reply, hops = await count_hops(
        monkeypatch, lambda: http(asgi_app, "query { me { displayName } }", {}, token)
    )

    assert reply == {"data": {"me": {"displayName": "Ada"}}}
    assert not [hop for hop in hops if "process_" in hop], hops
    # What is left: the token's first use and the resolver (which also runs
    # request_started's upkeep, server.handler).
    assert len(hops) <= 2, hops


async def count_hops(monkeypatch, run) -> tuple[object, list[str]]:
    hops: list[str] = []
    call = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", type(self.func).__name__))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    try:
        return await run(), hops
    finally:
        monkeypatch.setattr(SyncToAsync, "__call__", call)


async def test_a_request_that_needs_no_thread_makes_no_hop(
    asgi_app, monkeypatch, close_worker_connections
):
    """Django hopped twice per request for the request signals' connection upkeep, a
    quarter of the floor's CPU; a request that touches no connection needs neither."""
    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    for _ in range(2):  # the token's first uses; then it is answered from the cache
        await http(asgi_app, "query { me { displayName } }", {}, token)

    reply, hops = await count_hops(
        monkeypatch, lambda: http(asgi_app, "query { __typename }", {}, token)
    )

    assert reply == {"data": {"__typename": "Query"}}
    assert hops == []


SEND = 'mutation($c: ID!) { sendMessage(input: {chatId: $c, body: "hi"}) { __typename } }'


async def test_a_request_that_queries_hops_once_for_its_queries(
    asgi_app, monkeypatch, close_worker_connections
):
    """request_finished's upkeep waits for the next request's start when the connection is
    merely reused (a max age): a send's one hop is its own work."""
    from chat import services

    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    room = await sync_to_async(services.create_room)(owner=user, name="Lounge")
    for _ in range(2):
        await http(asgi_app, SEND, {"c": str(room.id)}, token)

    reply, hops = await count_hops(
        monkeypatch, lambda: http(asgi_app, SEND, {"c": str(room.id)}, token)
    )

    assert reply == {"data": {"sendMessage": {"__typename": "Message"}}}
    assert len(hops) == 1, hops


async def test_a_connection_left_with_an_error_is_looked_after_when_its_request_ends(
    close_worker_connections,
):
    """Another request's job on the thread would otherwise meet a broken connection."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import ThreadSensitiveContext
    from django.db import connections

    from server.handler import PooledASGIHandler, RequestWork

    closed_on: list[str] = []

    class Response:
        def close(self) -> None:
            closed_on.append(threading.current_thread().name)

    def query(fail: bool) -> None:
        connection = connections["default"]
        connection.ensure_connection()
        connection.errors_occurred = fail  # as Django marks a DatabaseError

    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-thread")
    try:
        for fail in (False, True):
            work = RequestWork(thread)
            async with ThreadSensitiveContext(executor=work):
                await sync_to_async(query)(fail)
                await PooledASGIHandler._close(Response(), work)
        assert closed_on[0] == threading.current_thread().name  # clean: closed here
        assert closed_on[1].startswith("request-thread")  # the error: on its thread
    finally:
        thread.submit(connections.close_all).result()
        thread.shutdown()


async def test_a_client_gone_while_its_query_runs_leaves_the_threads_serving(
    asgi_app, close_worker_connections
):
    """A hostile client hangs up as soon as its request is sent: its view is cancelled,
    Django's way, and the next requests find their threads free and answering."""
    import json

    from server.asgi import django_application
    from tests.graphql_client import post_scope

    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    query = "query { chats(first: 1) { edges { node { id } } } }"
    body = json.dumps({"query": query}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    for _ in range(20):
        sent: list[dict] = []
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive(messages=messages) -> dict:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: dict, sent=sent) -> None:
            sent.append(message)

        await asyncio.wait_for(asgi_app(post_scope(headers), receive, send), 10)

    assert set(django_application._busy.values()) == {0}
    for _ in range(3):
        assert await http(asgi_app, query, {}, token) == {"data": {"chats": {"edges": []}}}


def _thread_connections(run) -> list:
    from server.asgi import django_application

    return [thread.submit(run).result() for thread in django_application._threads]


async def test_a_request_closes_and_replaces_obsolete_connections_on_its_thread(
    asgi_app, close_worker_connections
):
    """The upkeep still runs where the request's queries run: an obsolete connection is
    replaced before the request's first query, and with no max age a connection is
    closed once its request is done."""
    import threading

    from django.db import connections
    from django.db.backends.signals import connection_created

    if connections["default"].vendor != "postgresql":
        # SQLite's in-memory test database ignores `close()`.
        pytest.skip("needs DATABASE_URL: runs in the PostgreSQL + Redis pass")
    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    query = "query { chats(first: 1) { edges { node { id } } } }"  # one that queries
    default = connections.settings["default"]
    max_age, default["CONN_MAX_AGE"] = default["CONN_MAX_AGE"], 60
    opened: list[str] = []

    def count(sender, connection, **kwargs) -> None:
        opened.append(threading.current_thread().name)

    def obsolete() -> bool:
        connection = connections["default"]
        connection.close_at = 0  # past its max age
        return connection.connection is not None

    def is_open() -> tuple[str, bool]:
        return threading.current_thread().name, connections["default"].connection is not None

    connection_created.connect(count)
    try:
        await http(asgi_app, query, {}, token)
        assert any(await sync_to_async(_thread_connections)(obsolete))
        opened.clear()
        assert await http(asgi_app, query, {}, token) == {"data": {"chats": {"edges": []}}}
        assert len(opened) == 1  # the obsolete one was closed, a new one opened

        default["CONN_MAX_AGE"] = 0  # from the next connection on
        await sync_to_async(_thread_connections)(obsolete)
        opened.clear()
        assert await http(asgi_app, query, {}, token) == {"data": {"chats": {"edges": []}}}
        (thread,) = opened  # the request's thread opened one, and closed it when done
        assert dict(await sync_to_async(_thread_connections)(is_open))[thread] is False
    finally:
        connection_created.disconnect(count)
        default["CONN_MAX_AGE"] = max_age


async def test_another_receiver_of_the_request_signals_gets_djangos_way(
    asgi_app, close_worker_connections
):
    """A receiver other than Django's upkeep may query: it runs on the request's thread,
    as Django runs it, for every request."""
    import threading

    from django.core.signals import request_finished, request_started

    from chat.models import User

    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    seen: list[tuple[str, str, int]] = []

    def receiver(signal_name: str):
        def receive(sender, **kwargs) -> None:
            seen.append((signal_name, threading.current_thread().name, User.objects.count()))

        return receive

    started, finished = receiver("started"), receiver("finished")
    request_started.connect(started)
    request_finished.connect(finished)
    try:
        reply = await http(asgi_app, "query { __typename }", {}, token)
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)

    assert reply == {"data": {"__typename": "Query"}}
    assert [name for name, _, _ in seen] == ["started", "finished"]
    assert all(thread.startswith("django-sync-") and count == 1 for _, thread, count in seen)


async def test_requests_share_a_bounded_set_of_threads_and_reuse_their_connections(
    asgi_app, settings, close_worker_connections
):
    """Django gives each request a thread of its own: with persistent connections each one
    left a connection open, until PostgreSQL refused more ("too many clients")."""
    import threading

    from django.db import connections
    from django.db.backends.signals import connection_created

    from server.asgi import django_application

    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    me = "query { me { displayName } }"
    opened, threads = [], set()

    def count(sender, connection, **kwargs) -> None:
        opened.append(threading.current_thread().name)
        threads.add(threading.current_thread().name)

    default = connections.settings["default"]
    max_age, default["CONN_MAX_AGE"] = default["CONN_MAX_AGE"], 60
    connection_created.connect(count)
    try:
        replies = [await http(asgi_app, me, {}, token) for _ in range(30)]
    finally:
        connection_created.disconnect(count)
        default["CONN_MAX_AGE"] = max_age
        await sync_to_async(django_application.close_connections, thread_sensitive=False)()

    assert replies == [{"data": {"me": {"displayName": "Ada"}}}] * 30
    assert len(opened) <= settings.HTTP_SYNC_THREADS
    assert all(name.startswith("django-sync-") for name in threads)


CHAT_LIST = """query { chats(first: 50) { edges { node {
  id name unreadCount lastReadSeq isMuted mutedUntil myRole
  lastMessage { seq body author { displayName } } peer { id }
} } } }"""


def _chats(user, count: int) -> None:
    from chat.services.chats import open_direct_chat
    from chat.services.messages import send_message

    for i in range(count):
        other = UserFactory(display_name=f"Peer {i}")
        chat = open_direct_chat(user=user, other_user_id=other.pk)
        send_message(author=other, chat_id=chat.pk, body=f"hello {i}")


async def test_a_chat_list_costs_the_same_hops_however_many_chats_it_shows(
    asgi_app, monkeypatch, close_worker_connections
):
    """Its per-chat fields (unread count, last message, peer, mute, role) answer from the
    page's own query: before, each hopped to a thread, three to seven hops per chat."""
    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    # The token's first uses: the second is cached, once the process hears revocations.
    for _ in range(2):
        await http(asgi_app, "query { me { displayName } }", {}, token)
    call = SyncToAsync.__call__
    counts = []
    for more in (1, 5):
        await sync_to_async(_chats)(user, more)
        hops: list[str] = []

        async def counted(self, *args, hops=hops, **kwargs):
            hops.append(getattr(self.func, "__qualname__", type(self.func).__name__))
            return await call(self, *args, **kwargs)

        monkeypatch.setattr(SyncToAsync, "__call__", counted)
        reply = await http(asgi_app, CHAT_LIST, {}, token)
        monkeypatch.setattr(SyncToAsync, "__call__", call)
        edges = reply["data"]["chats"]["edges"]
        assert [e["node"]["unreadCount"] for e in edges] == [1] * len(edges)
        assert all(e["node"]["lastMessage"]["body"].startswith("hello") for e in edges)
        assert all(e["node"]["peer"]["id"] for e in edges)
        counts.append((len(edges), len(hops), hops))

    (few, few_hops, _), (many, many_hops, hops) = counts
    assert (few, many) == (1, 6)
    assert many_hops == few_hops, hops
