import asyncio
import copy
import inspect
import traceback
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections

from chat.models import User
from tests.factories import UserFactory, token_for
from tests.graphql_client import GraphQLClient


@pytest.fixture(autouse=True)
def _isolated_cache(settings) -> None:
    """A fresh cache key space per test, so rate-limit counters never leak between tests
    (on Redis too, without flushing a database other processes may share)."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture(scope="session")
def _blocking_redis_calls():
    """Where a synchronous Redis command ran on a thread that runs an event loop."""
    from redis.connection import AbstractConnection

    calls: list[str] = []
    send = AbstractConnection.send_packed_command

    def watched(self, *args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            calls.append("".join(traceback.format_stack(limit=30)[:-1]))
        return send(self, *args, **kwargs)

    AbstractConnection.send_packed_command = watched
    yield calls
    AbstractConnection.send_packed_command = send


@pytest.fixture(autouse=True)
def _no_blocking_redis_on_the_event_loop(_blocking_redis_calls):
    """A synchronous Redis call on the event loop stalls every socket of the process for
    its round trip (for REDIS_TIMEOUT when Redis hangs). Code there uses the cache's async
    API (server.cache); this fails any test that reaches one that does not."""
    _blocking_redis_calls.clear()
    yield
    if _blocking_redis_calls:
        pytest.fail(
            "A synchronous Redis command ran on the event loop:\n" + _blocking_redis_calls[0]
        )


@pytest.fixture(autouse=True)
def _keep_test_connection(request):
    """Django closes the database connection after each request. Inside a test wrapped in
    a transaction that would end the test's transaction, so (like Django's own test
    client) keep it open there. Transactional tests keep the real behaviour: their
    requests run in threads of their own, whose connections must be closed."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        yield
        return
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def asgi_app():
    from server.asgi import application

    return application


@pytest.fixture
def gql(asgi_app) -> GraphQLClient:
    return GraphQLClient(asgi_app)


@pytest.fixture
def make_user(db):
    return UserFactory


@pytest.fixture
def user(make_user) -> User:
    return make_user(email="ada@example.com", display_name="Ada Lovelace")


@pytest.fixture
def token(user) -> str:
    return token_for(user)


@pytest.fixture
def events_sent(monkeypatch, django_capture_on_commit_callbacks):
    """Record what services publish. Use as `with events_sent() as sent:`; on leaving the
    block the transaction's on-commit callbacks run and `sent` holds
    `(group, event, data)` for each publication (for a session change, `(group, type,
    message)`)."""
    from contextlib import contextmanager

    from chat import events

    sent: list[tuple[str, str, dict]] = []

    def record(group: str, message: dict) -> None:
        # A session change carries no event or data, only its type and the user.
        sent.append((group, message.get("event", message["type"]), message.get("data", message)))

    monkeypatch.setattr(events, "_send", record)

    @contextmanager
    def capture():
        with django_capture_on_commit_callbacks(execute=True):
            yield sent

    return capture


@pytest.fixture
def grace(make_user) -> User:
    return make_user(email="grace@example.com", display_name="Grace Hopper")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.fixturenames.append("presence_drained")


@pytest.fixture
async def presence_drained():
    """Sockets a test closed leave presence writes behind, scheduled on the test's loop or
    running in a thread. A transactional test's teardown truncating the tables while one
    ran deadlocked with it, whichever test it was (tests/api/test_websocket.py's too), so
    every async test drains presence before its database teardown: added last, it is
    torn down first. (Sync tests run no presence; the browser tests run a loop of their
    own, which an async fixture would collide with.)"""
    yield
    from chat import presence

    await presence.drain()


@pytest.fixture
async def close_worker_connections():
    """WebSocket tests run database work in worker threads: close their connections, or
    the test database cannot be flushed."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def push_service():
    from tests.push import PushService

    service = PushService()
    yield service
    service.close()


@pytest.fixture
def web_push(settings, push_service):
    """Web Push configured, with the test's push service on 127.0.0.1 allowed, and
    retries quick."""
    from tests.push import VAPID_PRIVATE_KEY

    settings.VAPID_PRIVATE_KEY = VAPID_PRIVATE_KEY
    settings.VAPID_SUBJECT = "mailto:push-tests@example.com"
    settings.WEBPUSH_ENDPOINT_HOSTS = ["127.0.0.1"]
    settings.PUSH_RETRY_DELAY = 0
    settings.PUSH_MAX_ATTEMPTS = 3
    return push_service


@pytest.fixture
def fcm(settings, push_service):
    """FCM configured against the test's push service (send and token endpoints); yields
    the service account's public key, to check the signed assertion."""
    import json

    from tests.push import service_account

    info, public_key = service_account(f"{push_service.url}/token")
    settings.FCM_CREDENTIALS = json.dumps(info)
    settings.FCM_BASE_URL = push_service.url
    settings.PUSH_RETRY_DELAY = 0
    settings.PUSH_MAX_ATTEMPTS = 3
    return public_key


@pytest.fixture(scope="session", autouse=True)
def _close_long_lived_thread_connections(django_db_setup, django_db_blocker):
    """WebSocket work keeps its thread's connection from socket to socket, and requests'
    threads keep theirs (server.handler): close them before the test database is dropped."""
    yield
    from asgiref.sync import SyncToAsync

    from server.asgi import django_application

    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        django_application.close_connections()
