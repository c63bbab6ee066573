import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client

from chat import presence, tokencache
from tests.factories import UserFactory, token_for
from tests.graphql_client import GraphQLClient
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLSocket

pytestmark = pytest.mark.django_db(transaction=True)

ME = "query { me { id displayName email } }"
# Strawberry's legacy `graphql-ws` carries subscriptions only; there `me` is a subscription.
ME_OVER = {TRANSPORT_WS: ME, LEGACY_WS: "subscription { me { id displayName email } }"}
ME_SUBSCRIPTION = "subscription { me { id displayName } }"
UPDATE_PROFILE = 'mutation { updateProfile(displayName: "Ada King") { __typename } }'
BOTH = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])


@pytest.fixture(autouse=True)
async def _close_worker_connections():
    """The ORM work of these tests runs in asgiref's worker thread, whose connections
    would otherwise stay open and block dropping the test database."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def ada(transactional_db):
    user = UserFactory(email="ada@example.com", display_name="Ada")
    return user, token_for(user)


@BOTH
@pytest.mark.parametrize("key", ["authorization", "Authorization"])
async def test_me_over_a_socket_authenticated_in_connection_init(asgi_app, ada, protocol, key):
    user, token = ada
    socket = GraphQLSocket(asgi_app, protocol)
    connected, subprotocol = await socket.connect()

    ack = await socket.init({key: f"Bearer {token}"})
    await socket.subscribe("1", ME_OVER[protocol])
    payload = await socket.next_payload("1")
    await socket.close()

    assert (connected, subprotocol) == (True, protocol)
    assert ack == {"type": "connection_ack"}
    assert payload == {
        "data": {"me": {"id": str(user.id), "displayName": "Ada", "email": "ada@example.com"}}
    }


async def test_a_query_over_the_query_carrying_protocol_completes(asgi_app, ada):
    _, token = ada
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})

    await socket.subscribe("1", ME)
    await socket.next_payload("1")

    await socket.expect_complete("1")
    await socket.close()


async def test_a_query_over_legacy_graphql_ws_is_a_client_error_not_a_crash(asgi_app, ada):
    _, token = ada
    socket = GraphQLSocket(asgi_app, LEGACY_WS)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})

    await socket.subscribe("1", ME)

    assert await socket.receive() == {
        "type": "error",
        "id": "1",
        "payload": {"message": "queries are not allowed", "extensions": {"code": "BAD_REQUEST"}},
    }
    await socket.close()


async def test_the_auth_token_key_takes_a_bare_token(asgi_app, ada):
    user, token = ada
    socket = GraphQLSocket(asgi_app)
    await socket.connect()

    await socket.init({"authToken": token})
    await socket.subscribe("1", ME)

    assert (await socket.next_payload("1"))["data"]["me"]["id"] == str(user.id)
    await socket.close()


@BOTH
@pytest.mark.parametrize(
    "payload",
    [
        {"authorization": "Bearer ct_not_a_real_token"},
        {"authorization": "Token abc"},
        {"Authorization": "Bearer"},
        {"authToken": "ct_unknown"},
        {"authorization": 42},
        # Hostile tokens reach the token lookup's SQL (chat.rows) only as a hash.
        {"authorization": "Bearer ct_'OR'1'='1'--"},
        {"authorization": "Bearer ct_\x00"},
        {"authToken": "ct_" + "a" * 100_000},
    ],
)
async def test_a_bad_token_is_refused_at_connection_init_with_4403(
    asgi_app, db, protocol, payload
):
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()

    await socket.send({"type": "connection_init", "payload": payload})

    assert await socket.receive_close() == 4403


async def test_a_revoked_token_is_refused(asgi_app, ada):
    user, token = ada
    from chat import auth

    await sync_to_async(auth.revoke_user_tokens)(user)
    socket = GraphQLSocket(asgi_app)
    await socket.connect()

    await socket.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})

    assert await socket.receive_close() == 4403


@BOTH
async def test_a_socket_without_credentials_is_refused_at_connection_init(asgi_app, db, protocol):
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()

    await socket.send({"type": "connection_init", "payload": {}})

    assert await socket.receive_close() == 4403


async def test_a_cookie_session_authenticates_the_socket(asgi_app, ada):
    user, _ = ada
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = GraphQLSocket(asgi_app, headers=[(b"cookie", cookie)])
    await socket.connect()

    await socket.init()
    await socket.subscribe("1", ME)

    assert (await socket.next_payload("1"))["data"]["me"]["id"] == str(user.id)
    await socket.close()


@pytest.mark.parametrize(
    "cookie",
    [
        b"sessionid=" + b"x" * 40,  # well formed, unknown
        b"sessionid=../../etc/passwd",
        b"sessionid=\xff\xfe; theme",  # not UTF-8, a cookie without a value
        b";;=;sessionid",
    ],
)
async def test_a_bogus_session_cookie_is_refused_as_no_sign_in(asgi_app, db, cookie):
    socket = GraphQLSocket(asgi_app, headers=[(b"cookie", cookie)])
    await socket.connect()

    await socket.send({"type": "connection_init", "payload": {}})

    assert await socket.receive_close() == 4403


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ([(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1:8000")], False),
        ([(b"origin", b"null"), (b"host", b"127.0.0.1:8000")], False),
        ([(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")], True),
        ([(b"host", b"127.0.0.1:8000")], True),  # native clients send no Origin
    ],
)
async def test_cross_site_origins_are_refused_before_the_handshake(
    asgi_app, db, headers, accepted
):
    socket = GraphQLSocket(asgi_app, headers=headers)

    connected, _ = await socket.connect()

    assert connected is accepted
    if connected:
        await socket.close()


async def test_subscribing_before_connection_init_closes_4401(asgi_app, db):
    socket = GraphQLSocket(asgi_app)
    await socket.connect()

    await socket.subscribe("1", ME)

    assert await socket.receive_close() == 4401


async def test_a_second_connection_init_closes_4429(asgi_app, ada):
    _, token = ada
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})

    await socket.send({"type": "connection_init", "payload": {}})

    assert await socket.receive_close() == 4429


@BOTH
async def test_the_me_subscription_follows_profile_changes(asgi_app, ada, protocol):
    user, token = ada
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    await socket.subscribe("sub", ME_SUBSCRIPTION)
    first = await socket.next_payload("sub")

    client = GraphQLClient(asgi_app, token=token)
    response = await client._post({"query": UPDATE_PROFILE}, {"Authorization": f"Bearer {token}"})
    second = await socket.next_payload("sub")
    await socket.close()

    assert response.json == {"data": {"updateProfile": {"__typename": "User"}}}
    assert first == {"data": {"me": {"id": str(user.id), "displayName": "Ada"}}}
    assert second == {"data": {"me": {"id": str(user.id), "displayName": "Ada King"}}}


async def test_the_me_subscription_ignores_other_users_changes(asgi_app, ada):
    _, token = ada
    grace = await sync_to_async(UserFactory)(display_name="Grace")
    grace_token = await sync_to_async(token_for)(grace)
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    await socket.subscribe("sub", ME_SUBSCRIPTION)
    await socket.next_payload("sub")

    client = GraphQLClient(asgi_app)
    await client._post({"query": UPDATE_PROFILE}, {"Authorization": f"Bearer {grace_token}"})

    assert await socket.communicator.receive_nothing(timeout=0.3)
    await socket.close()


async def test_sockets_share_one_database_connection_and_survive_its_loss(asgi_app, ada):
    """Channels closes the database connection before every frame; with the default
    `CONN_MAX_AGE=0` each socket then opened a new one (a tenth of a connect's CPU). The
    WebSocket thread keeps one, and replaces it when it breaks."""
    from django.db.backends.signals import connection_created

    _, token = ada
    opened = []

    def count(sender, connection, **kwargs) -> None:
        opened.append(connection.alias)

    async def sign_in_and_ask() -> None:
        socket = GraphQLSocket(asgi_app, TRANSPORT_WS)
        await socket.connect()
        assert (await socket.init({"authorization": f"Bearer {token}"}))["type"] == (
            "connection_ack"
        )
        await socket.subscribe("1", ME)
        assert (await socket.next_payload("1"))["data"]["me"]["displayName"] == "Ada"
        await socket.close()

    connection_created.connect(count)
    try:
        await sign_in_and_ask()  # may open the thread's connection
        opened.clear()
        for _ in range(3):
            await sign_in_and_ask()
        assert opened == []

        # The connection breaks (the database restarted): the next socket gets a new one.
        def break_connection() -> None:
            connection = connections["default"]
            connection.close()
            connection.connect()
            connection.errors_occurred = True
            connection.is_usable = lambda: False

        # What the last socket's close left for the thread (presence's write) runs first:
        # its commit would prove the connection good again.
        await presence.flush()
        await sync_to_async(break_connection)()
        opened.clear()
        # A token checked in the database (not from the process's cache, which asks
        # nothing of it) replaces the connection first.
        tokencache.cache().clear()
        await sign_in_and_ask()
        assert len(opened) == 1
    finally:
        connection_created.disconnect(count)


async def test_a_socket_whose_application_instance_is_killed_is_cleaned_up(asgi_app, ada):
    """daphne cancels an application instance that has not finished 10 s after its socket
    closed (`application_close_timeout`). Its GraphQL handler task must end with it: left
    pending it was garbage-collected ("Task was destroyed but it is pending!") with its
    subscriptions, presence lease and open-socket count never released."""
    from chat import metrics
    from server import consumers

    _, token = ada
    sockets, subscriptions = metrics.OPEN_SOCKETS._value.get(), metrics.SUBSCRIPTIONS._value.get()
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    await socket.subscribe("sub", ME_SUBSCRIPTION)
    await socket.next_payload("sub")
    (consumer,) = consumers._live_sockets
    handler = consumer.run_task
    assert metrics.SUBSCRIPTIONS._value.get() == subscriptions + 1

    socket.communicator.future.cancel()  # as daphne kills it
    for _ in range(100):
        if handler.done() and not consumers._live_sockets:
            break
        await asyncio.sleep(0.02)

    assert handler.done()
    assert not consumers._live_sockets
    assert metrics.OPEN_SOCKETS._value.get() == sockets
    assert metrics.SUBSCRIPTIONS._value.get() == subscriptions


async def test_a_socket_joining_its_session_group_shows_the_layer_alive(asgi_app, ada):
    """The layer probe takes any answer from the layer as a sign of life: in a reconnect
    storm the sockets' group joins are answered while the probe waits behind them."""
    from schema import fanout

    _, token = ada
    before = asyncio.get_running_loop().time()
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    await socket.close()

    assert fanout.hub().heard >= before


@BOTH
async def test_unexpected_errors_in_a_subscription_are_masked(
    asgi_app, ada, protocol, monkeypatch
):
    """A stream masks each result as it is sent: subscriptions run without the operation
    hook that masks a single result at the end (`schema._StreamExtensionsRunner`)."""
    from schema import subscriptions

    _, token = ada
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    await socket.subscribe("sub", ME_SUBSCRIPTION)
    await socket.next_payload("sub")

    class Exploding:
        @staticmethod
        def copy(user):
            raise RuntimeError("secret internals")

    monkeypatch.setattr(subscriptions, "copy", Exploding)
    client = GraphQLClient(asgi_app, token=token)
    await client._post({"query": UPDATE_PROFILE}, {"Authorization": f"Bearer {token}"})
    frame = await socket.receive()
    monkeypatch.undo()
    await socket.close()

    assert frame["type"] in {"next", "data"}
    masked = {"message": "Unexpected error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    assert frame["payload"] == {"data": None, "errors": [masked]}


@BOTH
async def test_a_signed_in_socket_keeps_only_the_headers_it_reads_again(asgi_app, ada, protocol):
    """A browser's handshake headers and cookies are let go once the socket has signed
    in; what it reads later, the host and user agent, stays."""
    from server.consumers import _live_sockets

    _, token = ada
    headers = [
        (b"host", b"testserver"),
        (b"user-agent", b"Mozilla/5.0"),
        (b"accept-language", b"en-GB,en;q=0.9"),
        (b"cookie", b"theme=dark; _ga=GA1.1.12345"),
    ]
    socket = GraphQLSocket(asgi_app, protocol, headers=headers)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    (consumer,) = list(_live_sockets)
    scope = consumer.scope
    await socket.subscribe("1", ME_SUBSCRIPTION)
    assert "data" in await socket.next_payload("1")
    await socket.close()

    assert scope["headers"] == [(b"host", b"testserver"), (b"user-agent", b"Mozilla/5.0")]
    assert scope["cookies"] == {}
