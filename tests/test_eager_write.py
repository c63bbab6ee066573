"""server.serve.write_eagerly: a WebSocket frame goes to the kernel at once when nothing is
queued before it, and through Twisted's queue, in order, otherwise."""

import socket

import pytest

from server.serve import write_eagerly


class Transport:
    """The part of Twisted's TCP transport `write_eagerly` reads."""

    TLS = False
    connected = True
    _writeDisconnected = False

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self._tempDataBuffer: list[bytes] = []
        self.dataBuffer, self.offset = b"", 0
        self.queued: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.queued.append(bytes(data))
        self._tempDataBuffer.append(bytes(data))


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_frame_with_nothing_queued_goes_to_the_kernel_at_once(pair):
    ours, theirs = pair
    transport = Transport(ours)
    write_eagerly(transport, b"frame")

    assert theirs.recv(100) == b"frame"
    assert transport.queued == []


def test_a_frame_behind_queued_data_queues_behind_it(pair):
    ours, _ = pair
    transport = Transport(ours)
    transport._tempDataBuffer.append(b"earlier")

    write_eagerly(transport, b"later")

    assert transport.queued == [b"later"]


def test_what_the_kernel_does_not_take_is_queued(pair):
    ours, _ = pair
    transport = Transport(ours)
    big = b"x" * (64 * 1024 * 1024)  # more than any socket buffer

    write_eagerly(transport, big)

    assert len(transport.queued) == 1
    assert 0 < len(big) - len(transport.queued[0]) < len(big)
    assert big.endswith(transport.queued[0])


def test_a_broken_connection_is_left_to_twisted(pair):
    ours, theirs = pair
    transport = Transport(ours)
    theirs.close()

    write_eagerly(transport, b"frame")

    assert transport.queued == [b"frame"]


def test_tls_transports_keep_twisteds_write(pair):
    ours, _ = pair
    transport = Transport(ours)
    transport.TLS = True

    write_eagerly(transport, b"frame")

    assert transport.queued == [b"frame"]
