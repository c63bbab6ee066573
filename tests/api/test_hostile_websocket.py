"""Hostile sockets: every malformed frame closes 4400 on both subprotocols (never a
socket left open and deaf), a silent socket closes 4408, and sockets are capped per user
and per client address (4429)."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from server import consumers
from server.collector import process_collector
from tests.api.test_hostile_http import fragment_chain
from tests.factories import UserFactory, token_for
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLSocket

pytestmark = pytest.mark.django_db(transaction=True)
BOTH = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
ME = "subscription { me { id } }"


@pytest.fixture(autouse=True)
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def token(transactional_db):
    return token_for(UserFactory())


async def signed_in(app, token: str, protocol: str) -> GraphQLSocket:
    socket = GraphQLSocket(app, protocol)
    await socket.connect()
    assert await socket.init({"authorization": f"Bearer {token}"}) == {"type": "connection_ack"}
    return socket


async def raw(socket: GraphQLSocket, text: str) -> None:
    await socket.communicator.send_to(text_data=text)


MALFORMED_FRAMES = [
    "[0]",
    "42",
    '"subscribe"',
    "null",
    '{"type": 42}',
    '{"no": "type"}',
    '{"type": "subscribe", "id": "1", "payload": "{ me { id } }"}',
    '{"type": "subscribe", "id": "1", "payload": {"query": 42}}',
    '{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "variables": []}}',
    '{"type": "subscribe", "id": 7, "payload": {"query": "{ me { id } }"}}',
    '{"type": "subscribe", "payload": {"query": "{ me { id } }"}}',
    '{"type": "complete"}',
    '{"type": "start", "id": "1", "payload": ["x"]}',
    '{"type": "stop", "id": ["1"]}',
    '{"type": "ping", "payload": "x"}',
    '{"type": "no_such_type"}',
    "{not json",
    "[" * 50_000 + "]" * 50_000,
]


@BOTH
@pytest.mark.parametrize("frame", MALFORMED_FRAMES, ids=range(len(MALFORMED_FRAMES)))
async def test_a_malformed_frame_after_the_ack_closes_4400(asgi_app, token, protocol, frame):
    socket = await signed_in(asgi_app, token, protocol)

    await raw(socket, frame)

    assert await socket.receive_close() == 4400


@BOTH
async def test_a_binary_frame_closes_4400(asgi_app, token, protocol):
    socket = await signed_in(asgi_app, token, protocol)

    await socket.communicator.send_to(bytes_data=b'{"type": "ping"}')

    assert await socket.receive_close() == 4400


@BOTH
@pytest.mark.parametrize("frame", ["[0]", "42", '{"type": "connection_init", "payload": 5}'])
async def test_a_malformed_first_frame_closes_4400(asgi_app, db, protocol, frame):
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()

    await raw(socket, frame)

    assert await socket.receive_close() == 4400


@BOTH
async def test_a_socket_still_works_after_its_frames_were_checked(asgi_app, token, protocol):
    socket = await signed_in(asgi_app, token, protocol)

    await socket.subscribe("1", ME)

    assert (await socket.next_payload("1"))["data"]["me"]["id"]
    await socket.close()


@BOTH
async def test_a_silent_socket_is_closed_4408(asgi_app, db, protocol, settings):
    from server.asgi import application

    socket = GraphQLSocket(application, protocol)
    await socket.connect()
    started = time.monotonic()

    code = await socket.receive_close(timeout=settings.GRAPHQL_WS_CONNECTION_INIT_TIMEOUT + 3)

    assert code == 4408
    assert time.monotonic() - started >= settings.GRAPHQL_WS_CONNECTION_INIT_TIMEOUT - 0.5


@BOTH
async def test_a_second_connection_init_closes_4429(asgi_app, token, protocol):
    socket = await signed_in(asgi_app, token, protocol)

    await socket.send({"type": "connection_init", "payload": {}})

    assert await socket.receive_close() == 4429


@BOTH
async def test_a_fragment_bomb_over_a_socket_is_refused_at_once(asgi_app, token, protocol):
    socket = await signed_in(asgi_app, token, protocol)
    query = fragment_chain(30).replace("query {", "subscription {", 1)
    started = time.perf_counter()

    await socket.subscribe("1", query)
    answer = await socket.receive()

    assert answer["type"] == "error"
    errors = answer["payload"] if isinstance(answer["payload"], list) else [answer["payload"]]
    assert errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert time.perf_counter() - started < 2
    await socket.close()


async def test_sockets_are_capped_per_user(asgi_app, token, settings):
    settings.GRAPHQL_WS_MAX_SOCKETS_PER_USER = 2
    kept = [await signed_in(asgi_app, token, TRANSPORT_WS) for _ in range(2)]

    third = GraphQLSocket(asgi_app)
    await third.connect()
    await third.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})

    assert await third.receive_close() == 4429
    await kept[0].close()
    fourth = await signed_in(asgi_app, token, TRANSPORT_WS)  # a freed place can be taken
    for socket in (kept[1], fourth):
        await socket.close()


@BOTH
async def test_sockets_that_never_sign_in_are_still_walked_by_the_collector(
    asgi_app, db, protocol, monkeypatch
):
    """What they hold is frozen while they are open, like any socket's: the walk that
    reclaims it must run though no socket ever signs in (a flood of them would otherwise
    grow the frozen heap for good)."""
    ticked = asyncio.Event()
    monkeypatch.setattr(process_collector(), "tick", lambda: ticked.set() or False)
    monkeypatch.setattr(consumers, "GC_TICK", 0.01)
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()

    await raw(socket, "[0]")
    assert await socket.receive_close() == 4400

    await asyncio.wait_for(ticked.wait(), 3)


async def test_sockets_are_capped_per_client_address(asgi_app, db, settings):
    settings.GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS = 3

    def from_address(host: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(asgi_app, "/graphql/", subprotocols=[TRANSPORT_WS])
        communicator.scope["client"] = (host, 50000)
        return communicator

    kept = [from_address("192.0.2.1") for _ in range(3)]
    for communicator in kept:
        assert (await communicator.connect())[0]
    over, elsewhere = from_address("192.0.2.1"), from_address("192.0.2.2")

    await over.connect()
    closed = await over.receive_output(timeout=3)
    connected, _ = await elsewhere.connect()

    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4429
    assert connected
    await asyncio.gather(*(c.disconnect() for c in [*kept, elsewhere]))


AFTER_AS = "subscription($c: ID!, $a: Int) { chatEvents(chatId: $c, after: $a) { __typename } }"
AFTER_LITERAL = (
    "subscription($c: ID!) { chatEvents(chatId: $c, after: 99999999999) { __typename } }"
)
NO_INT_AFTER = [
    (AFTER_AS, 2**31, "BAD_USER_INPUT"),  # refused when the variables are coerced
    (AFTER_AS, 1.5, "BAD_USER_INPUT"),
    (AFTER_AS, "9", "BAD_USER_INPUT"),
    (AFTER_LITERAL, None, "GRAPHQL_VALIDATION_FAILED"),  # refused by validation
]


@BOTH
@pytest.mark.parametrize(("query", "after", "code"), NO_INT_AFTER)
async def test_an_after_that_is_no_int_gets_an_error_and_the_socket_lives_on(
    asgi_app, token, protocol, query, after, code
):
    """A cursor a client mangled (past 32 bits, a float, a string) is a GraphQL error with
    its code on that operation; the socket stays open and serves the next one."""
    socket = await signed_in(asgi_app, token, protocol)
    variables = {"c": "00000000-0000-0000-0000-000000000001", "a": after}
    await socket.subscribe("bad", query, variables)
    refused = await socket.receive()
    await socket.subscribe("1", ME)
    served = await socket.next_payload("1")
    await socket.close()

    assert (refused["type"], refused["id"]) == ("error", "bad"), refused
    # graphql-transport-ws sends a list of errors; the legacy protocol, one error.
    [error] = refused["payload"] if protocol == TRANSPORT_WS else [refused["payload"]]
    assert error["extensions"]["code"] == code, error
    assert served["data"]["me"]["id"]
