"""Thread hops per HTTP request: each is a thread switch and two event-loop wake-ups, and
under ASGI they were most of a request's overhead (issue 14)."""

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
    hops: list[str] = []
    call = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", type(self.func).__name__))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)

    reply = await http(asgi_app, "query { me { displayName } }", {}, token)

    assert reply == {"data": {"me": {"displayName": "Ada"}}}
    assert not [hop for hop in hops if "process_" in hop], hops
    # What is left: request_started and request_finished (closing the request's database
    # connection), the token's first use and the resolver.
    assert len(hops) <= 4, hops


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
        opened.append(connection.alias)
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
