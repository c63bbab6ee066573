"""server.serve.BoundedWebSocketProtocol writes a plain text frame itself: the same bytes
and traffic figures as autobahn's `sendMessage`, which it falls back to otherwise."""

import json
import random

import pytest
from twisted.internet.testing import StringTransport

from server.serve import BoundedWebSocketFactory, BoundedWebSocketProtocol


def opened() -> tuple[BoundedWebSocketProtocol, StringTransport]:
    protocol = BoundedWebSocketFactory(None).buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN  # as after the handshake, with no extension
    protocol.inside_message, protocol.current_frame = False, None
    protocol.websocket_version = 13
    protocol._perMessageCompress = None
    protocol.client_addr = ["127.0.0.1", 1]  # daphne's, set in its onConnect
    transport.clear()
    return protocol, transport


# Each length encoding: 7 bits, 16 bits and 64 bits, at and past the boundaries.
@pytest.mark.parametrize("size", [0, 1, 125, 126, 200, 65535, 65536, 70001])
def test_a_text_frame_is_the_one_autobahn_writes(size):
    text = "é" * (size // 2) + "x" * (size % 2)  # non-ASCII: lengths are in bytes
    theirs, their_transport = opened()
    theirs.sendMessage(text.encode())
    ours, our_transport = opened()

    ours.serverSend(text)

    assert our_transport.value() == their_transport.value()
    assert vars(ours.trafficStats) == vars(theirs.trafficStats)


def test_a_frame_that_must_be_fragmented_goes_autobahns_way():
    ours, transport = opened()
    ours.autoFragmentSize = 4
    ours.serverSend("fragmented")

    theirs, their_transport = opened()
    theirs.autoFragmentSize = 4
    theirs.sendMessage(b"fragmented")

    assert transport.value() == their_transport.value()
    assert transport.value()[0] == 0x01  # a first fragment, not a whole frame (0x81)


def test_an_oversized_message_is_refused_as_before():
    from autobahn.exception import PayloadExceededError

    ours, transport = opened()
    ours.maxMessagePayloadSize = 10

    with pytest.raises(PayloadExceededError):
        ours.serverSend("x" * 11)
    assert transport.value() == b""


def test_a_closed_socket_is_not_written_to():
    from autobahn.exception import Disconnected

    ours, transport = opened()
    ours.state = ours.STATE_CLOSED

    with pytest.raises(Disconnected):
        ours.serverSend("late")
    assert transport.value() == b""


@pytest.mark.parametrize("payload", [None, b"", b"keep-alive", b"x" * 125])
@pytest.mark.parametrize("kind", ["sendPing", "sendPong"])
def test_pings_and_pongs_are_the_ones_autobahn_writes(kind, payload):
    theirs, their_transport = opened()
    getattr(super(BoundedWebSocketProtocol, theirs), kind)(payload)
    ours, our_transport = opened()

    getattr(ours, kind)(payload)

    assert our_transport.value() == their_transport.value()
    assert vars(ours.trafficStats) == vars(theirs.trafficStats)


@pytest.mark.parametrize("kind", ["sendPing", "sendPong"])
def test_a_control_frame_too_long_is_refused_as_before(kind):
    ours, transport = opened()

    with pytest.raises(Exception, match="payload length must be <= 125"):
        getattr(ours, kind)(b"x" * 126)
    assert transport.value() == b""


def test_an_automatic_ping_still_expects_its_pong():
    ours, transport = opened()
    ours.autoPingTimeout = 30

    ours._sendAutoPing()

    assert transport.value()[:2] == bytes((0x89, len(ours.autoPingPending)))
    assert transport.value()[2:] == ours.autoPingPending
    assert ours.autoPingTimeoutCall is not None  # dropped if no pong comes
    ours.autoPingTimeoutCall.cancel()


# --- frames received ------------------------------------------------------------------


def masked(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """A client's frame (FIN set, masked, as RFC 6455 requires of clients)."""
    size = len(payload)
    head = bytes((0x80 | opcode,))
    if size < 126:
        head += bytes((0x80 | size,))
    else:
        head += bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    body = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return head + mask + body


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 64, 127, 128, 129, 1000])
def test_a_frame_is_unmasked_as_autobahns_masker_does_whatever_the_reads(size):
    from autobahn.websocket.xormasker import create_xor_masker as autobahn_masker

    from server.masking import create_xor_masker

    rng = random.Random(size)
    for _ in range(20):
        mask = rng.randbytes(4)
        payload = rng.randbytes(size)
        cuts = sorted(rng.sample(range(size + 1), min(size + 1, 3)))
        ours, theirs = create_xor_masker(mask, size), autobahn_masker(mask, size)
        for start, end in zip([0, *cuts], [*cuts, size], strict=True):
            assert ours.process(payload[start:end]) == theirs.process(payload[start:end])
            assert ours.pointer() == theirs.pointer() == end
        ours.reset()
        theirs.reset()
        assert ours.process(payload) == theirs.process(payload)


def test_received_frames_are_parsed_with_the_servers_masker_and_without_debug_lines(
    monkeypatch,
):
    from autobahn.twisted import websocket as autobahn_twisted
    from autobahn.websocket import protocol as autobahn_protocol

    from server import masking

    def built(*_: object) -> str:
        raise AssertionError("a debug line's arguments were built")

    monkeypatch.setattr(autobahn_protocol, "create_xor_masker", masking.create_xor_masker)
    ours, _ = opened()
    # From here on, per frame: a connection's own debug lines are built once, at its start.
    monkeypatch.setattr(autobahn_twisted, "hltype", built)
    monkeypatch.setattr(autobahn_twisted, "hlval", built)
    received: list[tuple[str, bytes]] = []
    ours.onPing = lambda payload: received.append(("ping", payload))
    ours.onMessage = lambda payload, binary: received.append(("text", payload))
    text = json.dumps({"type": "subscribe", "payload": {"query": "x" * 200}}).encode()
    stream = (
        masked(0x9, b"ping", b"\x01\x02\x03\x04")
        + masked(0x1, b'{"type":"pong"}', b"\xff\x00\xaa\x55")
        + masked(0x1, text, b"\x10\x20\x30\x40")
    )

    for start in range(0, len(stream), 7):  # frames split across reads, headers too
        ours.dataReceived(stream[start : start + 7])

    assert received == [("ping", b"ping"), ("text", b'{"type":"pong"}'), ("text", text)]


def test_a_connection_takes_the_factorys_options_without_formatting_them(monkeypatch):
    from autobahn.websocket import protocol as autobahn_protocol

    def pformat(options: list) -> str:
        assert not options, "the options were formatted for a debug line"
        return ""

    monkeypatch.setattr(autobahn_protocol, "pformat", pformat)
    factory = BoundedWebSocketFactory(None)
    factory.autoPingInterval, factory.maxMessagePayloadSize = 7, 1234
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    protocol.openHandshakeTimeout = 3  # set on the connection: kept, as autobahn keeps it

    protocol.makeConnection(StringTransport())

    options = BoundedWebSocketProtocol.OPTIONS
    assert len(options) > 20
    assert protocol.autoPingInterval == 7
    assert protocol.maxMessagePayloadSize == 1234
    assert protocol.openHandshakeTimeout == 3
    assert all(
        getattr(protocol, name) == getattr(factory, name)
        for name in options
        if name != "openHandshakeTimeout"
    )


def test_connections_hold_no_copy_of_the_options_and_see_a_changed_one_from_then_on():
    factory = BoundedWebSocketFactory(None)
    factory.autoPingInterval = 7
    first = factory.buildProtocol(("127.0.0.1", 1))
    first.makeConnection(StringTransport())
    factory.autoPingInterval = 9
    second = factory.buildProtocol(("127.0.0.1", 2))
    second.makeConnection(StringTransport())

    assert not set(BoundedWebSocketProtocol.OPTIONS) & set(vars(first))
    assert (first.autoPingInterval, second.autoPingInterval) == (7, 9)
    # A function among the options is called as the factory's, not bound to the connection.
    offers = ["an offer"]
    assert second.perMessageCompressionAccept(offers) == factory.perMessageCompressionAccept(
        offers
    )
