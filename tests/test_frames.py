"""server.serve.BoundedWebSocketProtocol writes a plain text frame itself: the same bytes
and traffic figures as autobahn's `sendMessage`, which it falls back to otherwise."""

import pytest
from twisted.internet.testing import StringTransport

from server.serve import BoundedWebSocketFactory, BoundedWebSocketProtocol


def opened() -> tuple[BoundedWebSocketProtocol, StringTransport]:
    protocol = BoundedWebSocketFactory(None).buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN  # as after the handshake, with no extension
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
