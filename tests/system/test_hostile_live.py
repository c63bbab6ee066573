"""Against a live daphne process (`python -m server.serve`): no request or socket can stall
it or grow its memory without bound, and SIGTERM drains it."""

import socket
import threading
import time

import httpx
import pytest

from tests.api.test_hostile_http import fragment_chain
from tests.system.rawws import RawWebSocket

pytestmark = pytest.mark.system

MB = 1024 * 1024
CREATE_ROOM = 'mutation { createRoom(name: "Busy") { ... on Chat { id } } }'
SEND = """
mutation($c: ID!, $b: String!) { sendMessage(input: {chatId: $c, body: $b}) { __typename } }
"""
EVENTS = """
subscription($c: ID!) { chatEvents(chatId: $c) { ... on MessageAdded { message { body } } } }
"""


class HealthWatch:
    """Polls /healthz in the background; the slowest answer tells whether the process
    stalled."""

    def __init__(self, server) -> None:
        self.url, self.slowest, self.failures = f"{server.url}/healthz", 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                httpx.get(self.url, timeout=10).raise_for_status()
            except httpx.HTTPError:
                self.failures += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
            time.sleep(0.05)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


def http_request(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head.encode())
    return sock


def read_response(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def post_declared(port: int, content_type: str, declared: int, send: int) -> bytes:
    """POST promising `declared` bytes, sending up to `send` of them in 1 MB writes until
    the server closes; its answer."""
    sock = http_request(
        port,
        f"POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n",
    )
    try:
        for _ in range(send // MB):
            sock.sendall(b" " * MB)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused early, as it should be
    answer = read_response(sock)
    sock.close()
    return answer


def post_chunked(port: int, content_type: str, send: int) -> bytes:
    """POST a chunked body of up to `send` bytes, 64 KB a chunk, until the server closes;
    its answer."""
    sock = http_request(
        port,
        f"POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
    )
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    try:
        for _ in range(send // (64 * 1024)):
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_response(sock)
    sock.close()
    return answer


def test_a_handshake_to_another_path_is_refused_403_not_a_500(daphne_server):
    """A client pointed at the wrong path (or probing) is refused like a bad origin,
    without the server error and logged traceback a routing exception made."""
    for path in ("/nope", "/graphql/../admin", "/graphqlx"):
        sock = http_request(
            daphne_server.port,
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
        )
        answer = read_response(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 403"), (path, answer[:80])

    assert "Traceback" not in daphne_server.log.read_text()
    assert daphne_server.graphql("{ __typename }") == {"data": {"__typename": "Query"}}


def test_a_fragment_bomb_does_not_stall_the_process(daphne_server):
    with HealthWatch(daphne_server) as health:
        started = time.monotonic()
        answer = daphne_server.graphql(fragment_chain(30))
        elapsed = time.monotonic() - started
        time.sleep(0.3)

    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert elapsed < 2
    assert health.failures == 0
    assert health.slowest < 2


def test_an_oversized_body_is_refused_from_its_length_without_being_held(daphne_server):
    before = daphne_server.rss()
    with HealthWatch(daphne_server) as health:
        # 64 MB of the promised 1 GiB each, then we stop.
        answers = [
            post_declared(daphne_server.port, "application/json", 1024 * MB, 64 * MB)
            for _ in range(4)
        ]
    growth = daphne_server.rss() - before

    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # any reason phrase
        assert b'"code": "PAYLOAD_TOO_LARGE"' in answer
    assert growth < 30 * MB, f"grew {growth / MB:.0f} MB"
    assert health.failures == 0


def test_a_chunked_body_is_cut_off_as_it_streams(daphne_server):
    before = daphne_server.rss()
    answer = post_chunked(daphne_server.port, "application/json", 32 * MB)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # any reason phrase
    assert daphne_server.rss() - before < 30 * MB


def test_a_body_within_the_limit_still_works(daphne_server):
    response = httpx.post(
        f"{daphne_server.url}/graphql/",
        json={"query": "{ __typename }", "pad": "x" * 900_000},
        timeout=10,
    )

    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=x", b"not multipart at all"),
        ("multipart/form-data", b"--x\r\nno boundary declared"),
    ],
)
def test_a_broken_multipart_body_gets_the_applications_json_answer(
    daphne_server, content_type, body
):
    # Twisted parsed every POSTed form into `request.args` (which daphne never reads) and
    # answered a body it could not parse with an empty 400 of its own.
    response = httpx.post(
        f"{daphne_server.url}/graphql/",
        content=body,
        headers={"Content-Type": content_type},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_a_multipart_body_of_many_tiny_fields_does_not_stall_the_process(daphne_server):
    # 10 MB of two-byte fields, within the multipart limit. Twisted used to parse all of
    # them on the event loop (half a second a megabyte) before Django refused the 1,001st.
    part = b'--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'
    body = part * (10 * MB // len(part)) + b"--x--\r\n"
    with HealthWatch(daphne_server) as health:
        response = httpx.post(
            f"{daphne_server.url}/graphql/",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            timeout=30,
        )
        time.sleep(0.3)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert health.failures == 0
    assert health.slowest < 1.5, f"the process stalled for {health.slowest:.1f} s"


def signed_in(port: int, token: str, **options: int) -> RawWebSocket:
    """A raw socket past `connection_init`, acknowledged."""
    ws = RawWebSocket(port, **options)
    ws.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    assert ws.message() == {"type": "connection_ack"}
    return ws


def test_sockets_that_never_read_are_closed_and_memory_stays_bounded(daphne_server):
    token = daphne_server.register()
    room = daphne_server.graphql(CREATE_ROOM, token=token)["data"]["createRoom"]["id"]
    sockets = []
    for _ in range(4):
        ws = signed_in(daphne_server.port, token, rcvbuf=4096)
        for n in range(50):
            ws.send(
                {
                    "type": "subscribe",
                    "id": str(n),
                    "payload": {"query": EVENTS, "variables": {"c": room}},
                }
            )
        sockets.append(ws)
    time.sleep(0.5)
    before = daphne_server.rss()

    # 200 messages of 4,000 characters to 200 subscriptions: about 170 MB of frames that
    # nobody reads. Unbounded, the process would hold all of it.
    with HealthWatch(daphne_server) as health:
        body = "x" * 4000
        for _ in range(200):
            result = daphne_server.graphql(SEND, {"c": room, "b": body}, token=token)
            assert result == {"data": {"sendMessage": {"__typename": "Message"}}}
        time.sleep(2)
        growth = daphne_server.rss() - before

    codes = [ws.close_code() for ws in sockets]
    for ws in sockets:
        ws.close()
    assert growth < 60 * MB, f"grew {growth / MB:.0f} MB"
    # Each socket was closed by the server: with 1013 where the close frame got through
    # before the connection was dropped.
    assert set(codes) <= {1013, None}, codes
    assert health.failures == 0
    assert health.slowest < 3


def next_control_frame(ws: RawWebSocket, opcode: int, timeout: float = 10) -> bytes:
    """The payload of the next frame with `opcode`, skipping any other."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, payload = ws.frame()
        if got == opcode:
            return payload
    raise AssertionError(f"no frame with opcode {opcode} in {timeout} s")


def answer_the_servers_ping(ws: RawWebSocket) -> None:
    """Wait for the server's keep-alive ping (a couple of 1 s intervals), answer it, and
    check the socket still speaks graphql-transport-ws."""
    ping = next_control_frame(ws, 0x9, timeout=5)
    ws.send_frame(0xA, ping)
    ws.send({"type": "ping"})
    assert ws.message() == {"type": "pong"}


def test_client_frames_of_every_small_length_are_unmasked_on_the_wire(daphne_server):
    """server.masking unmasks frames under 128 bytes itself, autobahn's masker the rest:
    every control-frame length, and text around the threshold, read back intact."""
    ws = signed_in(daphne_server.port, daphne_server.register())
    for size in range(126):
        payload = bytes(range(size))
        ws.send_frame(0x9, payload)
        assert next_control_frame(ws, 0xA) == payload
    for size in range(110, 150):
        envelope = b'{"type": "ping", "payload": {"p": ""}}'
        padded = envelope.replace(b'""', b'"' + b"x" * (size - len(envelope)) + b'"')
        assert len(padded) == size
        ws.send_frame(0x1, padded)
        assert ws.message()["type"] == "pong", size
    ws.close()


def test_pings_both_ways_on_the_wire_and_a_malformed_one_closes_only_its_socket(live_stack):
    server = live_stack.start(WEBSOCKET_PING_INTERVAL="1")
    token = server.register()
    ws = signed_in(server.port, token)

    # The client's ping is answered with its own payload, the longest a control frame takes.
    ws.send_frame(0x9, b"p" * 125)
    assert next_control_frame(ws, 0xA) == b"p" * 125
    # The server's own keep-alive, answered.
    answer_the_servers_ping(ws)

    # Hostile: a ping longer than a control frame may be is a protocol error (1002) for
    # its own socket only.
    bad = signed_in(server.port, token)
    bad.send_frame(0x9, b"x" * 126)
    assert bad.close_code() in {1002, None}
    bad.close()

    ws.send_frame(0x9, b"still here")
    assert next_control_frame(ws, 0xA) == b"still here"
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    ws.close()


def test_a_client_that_keeps_pinging_is_not_pinged_until_it_stops(live_stack):
    """Its pings prove it is there: only its own are answered, until it stops pinging."""
    server = live_stack.start(WEBSOCKET_PING_INTERVAL="1")
    ws = signed_in(server.port, server.register())

    # Every 0.3 s for 4 s: four of the server's intervals, two of its 2-second checks.
    deadline, sent = time.monotonic() + 4, 0
    while time.monotonic() < deadline:
        ws.send_frame(0x9, b"%d" % sent)
        assert ws.frame() == (0xA, b"%d" % sent)  # its pong, and no ping of the server's
        sent += 1
        time.sleep(0.3)

    answer_the_servers_ping(ws)
    ws.close()


def test_sigterm_closes_sockets_1012_finishes_requests_and_exits(live_stack):
    server = live_stack.start(SHUTDOWN_TIMEOUT="10")
    token = server.register()
    ws = signed_in(server.port, token)
    # A request in flight: its headers and half its body are in when the signal comes.
    body = b'{"query": "{ __typename }"}'
    in_flight = http_request(
        server.port,
        "POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n",
    )
    in_flight.sendall(body[:10])
    time.sleep(0.3)

    started = time.monotonic()
    server.terminate()
    code = ws.close_code()
    closed_after = time.monotonic() - started
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    in_flight.sendall(body[10:])
    answer = read_response(in_flight)
    exit_code = server.process.wait(15)
    exited_after = time.monotonic() - started
    ws.close()

    assert code == 1012
    assert closed_after < 2
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert answer.endswith(b'{"data":{"__typename":"Query"}}')
    assert exit_code == 0
    assert exited_after < 10


def _post(body: bytes) -> bytes:
    return (
        b"POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def test_pipelined_requests_and_clients_gone_early_are_each_answered_or_dropped(daphne_server):
    """An answered request leaves daphne's connections as soon as its application returns
    (server/serve.py); requests pipelined on one connection, in one write, are each still
    answered in order, and clients that hang up before their answer leave the process
    serving."""
    typename = _post(b'{"query": "{ __typename }"}')
    malformed = _post(b'{"query": "{ nope"}')
    with socket.create_connection(("127.0.0.1", daphne_server.port), timeout=10) as sock:
        sock.sendall(typename + malformed + typename)
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b"HTTP/1.1 ") < 3 or not received.endswith(b"}"):
            assert time.monotonic() < deadline, received
            received += sock.recv(65536)
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [answer[:3] for answer in answers] == [b"200", b"200", b"200"]
    assert b'"__typename":"Query"' in answers[0]
    assert b'"__typename":"Query"' in answers[2]
    assert b"GRAPHQL_PARSE_FAILED" in answers[1]

    for _ in range(20):  # each hangs up before its answer
        with socket.create_connection(("127.0.0.1", daphne_server.port), timeout=10) as sock:
            sock.sendall(typename)
    reply = httpx.post(f"{daphne_server.url}/graphql/", json={"query": "{ __typename }"})
    assert reply.json() == {"data": {"__typename": "Query"}}
