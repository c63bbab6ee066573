"""server.serve: daphne's listening endpoints get a backlog a reconnect storm fits in, and
its periodic checks do daphne's work without walking every idle socket."""

import asyncio
import time

import pytest
from daphne.http_protocol import WebRequest
from twisted.internet import reactor
from twisted.internet.testing import StringTransport

from server.serve import BoundedWebSocketFactory, GracefulServer, with_backlog


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp:port=8000:interface=127.0.0.1", "tcp:port=8000:interface=127.0.0.1:backlog=2048"),
        ("unix:/run/chat.sock", "unix:/run/chat.sock:backlog=2048"),
        ("tcp:port=8000:backlog=10", "tcp:port=8000:backlog=10"),  # its own is kept
        ("fd:fileno=3:domain=INET", "fd:fileno=3:domain=INET"),  # already listening
    ],
)
def test_an_endpoint_gets_the_backlog_unless_it_names_one(endpoint, expected):
    assert with_backlog(endpoint, 2048) == expected


def test_the_server_listens_with_the_configured_backlog(settings):
    settings.LISTEN_BACKLOG = 4096
    server = GracefulServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])

    assert server.endpoints == ["tcp:port=0:interface=127.0.0.1:backlog=4096"]


@pytest.fixture
def server(monkeypatch):
    """A GracefulServer that is not listening; its checkers' next runs are not scheduled."""
    monkeypatch.setattr(reactor, "callLater", lambda *args, **kwargs: None)
    server = GracefulServer(
        application=None,
        endpoints=["tcp:port=0:interface=127.0.0.1"],  # never listened on
        ping_interval=20,
        websocket_timeout=3600,
        application_close_timeout=10,
    )
    server.connections = {}  # as `run` sets it
    return server


class Connection:
    """What daphne keeps a connection by: any hashable protocol."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def handle_exception(self, error: BaseException) -> None:
        self.errors.append(error)


async def connect(server: GracefulServer, finish: asyncio.Event) -> Connection:
    async def application(scope, receive, send) -> None:
        await finish.wait()

    server.application = application
    protocol = Connection()
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "websocket"})
    return protocol


async def test_a_finished_application_is_reaped_and_its_connection_kept(server):
    finish = asyncio.Event()
    protocol = await connect(server, finish)
    finish.set()
    await asyncio.sleep(0.01)

    server.application_checker()

    assert server.connections[protocol] == {"connected": pytest.approx(time.time(), abs=5)}


async def test_a_connection_whose_client_left_is_dropped_once_its_application_ends(server):
    finish = asyncio.Event()
    protocol = await connect(server, finish)
    server.protocol_disconnected(protocol)

    server.application_checker()
    assert protocol in server.connections  # still running: looked at again next second

    finish.set()
    await asyncio.sleep(0.01)
    server.application_checker()
    assert protocol not in server.connections


async def test_an_application_outliving_its_client_is_cancelled_as_daphne_does(server):
    protocol = await connect(server, asyncio.Event())  # never finishes on its own
    server.protocol_disconnected(protocol)
    server.connections[protocol]["disconnected"] -= 11  # past the close timeout
    instance = server.connections[protocol]["application_instance"]

    server.application_checker()
    await asyncio.sleep(0.01)
    server.application_checker()

    assert instance.cancelled()
    assert protocol not in server.connections


async def test_an_application_error_reaches_its_connection(server):
    async def failing(scope, receive, send) -> None:
        raise ValueError("broken")

    server.application = failing
    protocol = Connection()
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "websocket"})
    await asyncio.sleep(0.01)

    server.application_checker()

    assert [str(e) for e in protocol.errors] == ["broken"]


async def test_connections_that_did_not_change_are_not_walked(server):
    running = await connect(server, asyncio.Event())
    details = server.connections[running]
    server.application_checker()  # the connection's own creation changed nothing

    server.connections[running] = Untouchable(details)
    server.application_checker()

    assert running in server.connections


class Untouchable(dict):
    def get(self, *args):
        raise AssertionError("an unchanged connection was looked at")


def opened_socket(server: GracefulServer, *, opened_ago: float, pinged_ago: float):
    protocol = BoundedWebSocketFactory(server).buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.server = server
    protocol.state = protocol.STATE_OPEN
    protocol._perMessageCompress = None
    protocol.client_addr = ["127.0.0.1", 1]
    protocol.socket_opened = time.time() - opened_ago
    protocol.last_ping = time.time() - pinged_ago
    server.protocol_connected(protocol)
    server.websocket_opened(protocol)  # as its `onOpen` tells it
    transport.clear()
    return protocol, transport


def test_an_open_socket_is_pinged_when_its_interval_has_passed(server):
    due, due_transport = opened_socket(server, opened_ago=60, pinged_ago=21)
    fresh, fresh_transport = opened_socket(server, opened_ago=60, pinged_ago=5)

    server.timeout_checker()

    assert due_transport.value()[0] == 0x89  # a ping
    assert due.last_ping == pytest.approx(time.time(), abs=1)
    assert fresh_transport.value() == b""
    for protocol in (due, fresh):
        if protocol.autoPingTimeoutCall is not None:
            protocol.autoPingTimeoutCall.cancel()


def test_a_client_that_pings_is_not_pinged_but_answered(server):
    """Its ping proves it is there, as a message does for daphne; it still gets its pong."""
    client, transport = opened_socket(server, opened_ago=60, pinged_ago=21)
    # What autobahn's handshake leaves for reading frames.
    client.websocket_version, client.inside_message, client.current_frame = 13, False, None
    mask = b"\x01\x02\x03\x04"
    payload = b"are you there"
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))

    client.dataReceived(bytes((0x89, 0x80 | len(payload))) + mask + masked)
    server.timeout_checker()

    assert transport.value() == bytes((0x8A, len(payload))) + payload  # the pong, no ping
    assert client.last_ping == pytest.approx(time.time(), abs=1)


def test_a_client_that_stops_pinging_is_pinged_an_interval_later(server):
    client, transport = opened_socket(server, opened_ago=60, pinged_ago=21)
    client.onPing(b"")
    transport.clear()
    client.last_ping -= 21  # the interval has passed since

    server.timeout_checker()

    assert transport.value()[0] == 0x89
    if client.autoPingTimeoutCall is not None:
        client.autoPingTimeoutCall.cancel()


def test_an_open_socket_is_looked_at_only_when_its_ping_is_due(server, monkeypatch):
    fresh, transport = opened_socket(server, opened_ago=60, pinged_ago=5)
    request = Connection()
    request.checked = 0

    def check_timeouts() -> None:
        request.checked += 1

    request.check_timeouts = check_timeouts
    server.protocol_connected(request)

    server.timeout_checker()
    assert (request.checked, transport.value()) == (1, b"")  # the request, every pass
    assert list(server._watched) == [request]  # the open socket waits in the schedule

    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 16)  # 21 s since its last ping
    server.timeout_checker()

    assert transport.value()[0] == 0x89
    assert request.checked == 2
    assert [entry[2] for entry in server._pings] == [fresh]  # due again an interval on
    if fresh.autoPingTimeoutCall is not None:
        fresh.autoPingTimeoutCall.cancel()


def test_a_closed_socket_leaves_the_schedule_when_it_comes_due(server):
    gone, transport = opened_socket(server, opened_ago=60, pinged_ago=21)
    gone.state = gone.STATE_CLOSED

    server.timeout_checker()

    assert (server._pings, transport.value()) == ([], b"")


def test_closed_sockets_leave_the_schedule_before_they_come_due(server):
    sockets = [opened_socket(server, opened_ago=60, pinged_ago=5)[0] for _ in range(10)]
    for protocol in sockets[:6]:  # a storm: most of them close at once
        protocol.state = protocol.STATE_CLOSED
        server.protocol_disconnected(protocol)

    assert sorted(id(entry[2]) for entry in server._pings) == sorted(map(id, sockets[6:]))


def test_a_socket_past_its_lifetime_is_closed(server):
    old, transport = opened_socket(server, opened_ago=3601, pinged_ago=1)

    server.timeout_checker()

    assert old.state == old.STATE_CLOSING
    assert transport.value()[0] == 0x88  # a close frame


def test_the_server_pings_at_the_configured_interval(settings):
    from server.serve import ServeCommand

    settings.WEBSOCKET_PING_INTERVAL = 7

    arguments = ServeCommand().parser.parse_args(["server.asgi:application"])

    assert arguments.ping_interval == 7


async def test_a_socket_gets_a_mailbox_and_a_request_daphnes_queue(server):
    from schema.fanout import Mailbox

    received = []

    async def application(scope, receive, send) -> None:
        received.append((scope["type"], await receive()))

    server.application = application
    queues = {}
    for kind in ("websocket", "http"):
        protocol = Connection()
        server.protocol_connected(protocol)
        queues[kind] = server.create_application(protocol, {"type": kind})
        queues[kind].put_nowait({"type": f"{kind}.first"})
    await asyncio.sleep(0.01)

    assert type(queues["websocket"]) is Mailbox
    assert type(queues["http"]) is asyncio.Queue
    assert sorted(received) == [
        ("http", {"type": "http.first"}),
        ("websocket", {"type": "websocket.first"}),
    ]


async def test_an_upgraded_socket_keeps_no_copy_of_its_handshake(server):
    """Twisted's HTTP channel stays the transport's producer after the upgrade, and kept
    the request (headers, body buffer); autobahn kept its parsed headers and the raw
    handshake. The scope has what the application needs."""
    from twisted.internet.address import IPv4Address

    from server.serve import BoundedHTTPFactory

    scopes = []

    async def application(scope, receive, send) -> None:
        scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
        await asyncio.Event().wait()

    server.application = application
    server.ws_factory = BoundedWebSocketFactory(server, server="daphne")
    # No handshake timer: this fixture schedules nothing.
    server.ws_factory.setProtocolOptions(allowNullOrigin=True, openHandshakeTimeout=0)
    server.http_factory = BoundedHTTPFactory(server)
    channel = server.http_factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8000),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    channel.makeConnection(transport)

    channel.dataReceived(
        b"GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
    for _ in range(20):
        await asyncio.sleep(0.01)
        if b"101 Switching Protocols" in transport.value():
            break
    socket = transport.protocol

    assert transport.value().startswith(b"HTTP/1.1 101 Switching Protocols")
    assert socket.state == socket.STATE_OPEN
    assert (b"sec-websocket-protocol", b"graphql-transport-ws") in scopes[0]["headers"]
    assert channel._channel.requests == []  # the HTTP/1.1 channel inside Twisted's wrapper
    assert (socket.http_headers, socket.http_request_data, socket.request.headers) == (
        {},
        b"",
        {},
    )
    assert socket._send_queue is None  # no deque until a frame is queued
    socket.sendData(b"paced", sync=True)  # autobahn's queue, made when first needed
    assert socket._send_queue is not None
    assert transport.value().endswith(b"paced")
    for instance in server.connections:
        server.connections[instance].get("application_instance", asyncio.Future()).cancel()


async def test_a_socket_scope_gets_its_cookies_and_session_as_channels_gave_them():
    from server.sessions import websocket_endpoint

    scopes = []

    class Consumer:
        def __init__(self, **initkwargs) -> None:
            assert initkwargs == {"option": 1}

        async def __call__(self, scope, receive, send) -> None:
            scopes.append(scope)

    app = websocket_endpoint(r"^graphql/?$", Consumer, option=1)
    cookie = [(b"cookie", b"sessionid=abcdefgh12345678; theme=dark")]
    await app({"type": "websocket", "path": "/graphql/", "headers": cookie}, 0, 0)
    origin = [(b"origin", b"https://app.example")]
    await app({"type": "websocket", "path": "/graphql", "headers": origin}, 0, 0)
    prefixed = {"type": "websocket", "path": "/api/graphql", "root_path": "/api", "headers": []}
    await app(prefixed, 0, 0)
    for path in ("/other/", "/graphql/x", "/", "/graphql/../x"):
        sent = []

        async def receive():
            return {"type": "websocket.connect"}

        async def send(message, sent=sent):
            sent.append(message)

        await app({"type": "websocket", "path": path, "headers": []}, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1000}], path  # refused: HTTP 403

    with_cookie, without, _prefixed = scopes
    assert with_cookie["cookies"] == {"sessionid": "abcdefgh12345678", "theme": "dark"}
    assert with_cookie["session"].session_key == "abcdefgh12345678"
    assert (without["cookies"], without["session"]) == ({}, None)
    assert (app.consumer_class, app.consumer_initkwargs) == (Consumer, {"option": 1})


class Request(WebRequest):
    """What daphne keeps an HTTP request by (Twisted's setup skipped: never written to)."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def handle_exception(self, error: BaseException) -> None:
        self.errors.append(error)


async def request_answered(server: GracefulServer, application) -> Request:
    """An HTTP request whose response went out (daphne's `finish`) while `application` runs."""
    server.application = application
    protocol = Request()
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "http"})
    server.protocol_disconnected(protocol)
    return protocol


async def test_an_answered_request_is_dropped_as_soon_as_its_application_returns(server):
    """daphne's checker held each request (scope, task, Twisted's request) up to a second,
    long enough to reach the collector's oldest generation."""

    async def application(scope, receive, send) -> None:
        await asyncio.sleep(0)

    protocol = await request_answered(server, application)
    assert protocol in server.connections  # its application still runs
    await asyncio.sleep(0.01)

    assert protocol not in server.connections
    assert protocol not in server._watched


async def test_a_request_whose_application_failed_is_left_for_the_checker(server, caplog):
    async def failing(scope, receive, send) -> None:
        raise ValueError("broken")

    protocol = await request_answered(server, failing)
    await asyncio.sleep(0.01)
    assert protocol in server.connections

    server.application_checker()

    assert protocol not in server.connections
    assert "broken" in caplog.text  # logged, as daphne logs it


async def test_a_request_still_being_answered_is_kept_when_its_application_returns(server):
    """Without daphne's `finish`, the checker decides, as daphne would."""

    async def application(scope, receive, send) -> None:
        pass

    server.application = application
    protocol = Request()
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "http"})
    await asyncio.sleep(0.01)

    assert protocol in server.connections
