"""server.reactor: Twisted's reads and writes go to the event loop without the legacy log
context, and still reach the connection."""

import asyncio
import socket

from twisted.python.log import callWithLogger

from server.reactor import call_io_directly


class Loop:
    def __init__(self) -> None:
        self.registered: list[tuple] = []

    def add_reader(self, fd, callback, *args):
        self.registered.append(("read", fd, callback, *args))

    def add_writer(self, fd, callback, *args):
        self.registered.append(("write", fd, callback, *args))


class Reactor:
    def __init__(self) -> None:
        self._asyncioEventloop = Loop()

    def _readOrWrite(self, selectable, read):
        pass


def test_twisteds_registrations_lose_only_the_log_wrapper():
    reactor = Reactor()
    call_io_directly(reactor)
    loop = reactor._asyncioEventloop
    selectable = object()

    loop.add_reader(7, callWithLogger, selectable, reactor._readOrWrite, selectable, True)
    loop.add_writer(7, callWithLogger, selectable, reactor._readOrWrite, selectable, False)
    other = print
    loop.add_reader(8, other, "kept")

    assert loop.registered == [
        ("read", 7, reactor._readOrWrite, selectable, True),
        ("write", 7, reactor._readOrWrite, selectable, False),
        ("read", 8, other, "kept"),
    ]


def test_a_real_loop_calls_the_read_directly():
    loop = asyncio.new_event_loop()
    reactor = Reactor()
    reactor._asyncioEventloop = loop
    call_io_directly(reactor)
    ours, theirs = socket.socketpair()
    calls = []

    def read(selectable, is_read):
        calls.append((selectable, is_read, ours.recv(10)))
        loop.stop()

    try:
        loop.add_reader(ours.fileno(), callWithLogger, "conn", read, "conn", True)
        theirs.send(b"ping")
        loop.run_forever()
    finally:
        loop.remove_reader(ours.fileno())
        loop.close()
        ours.close()
        theirs.close()

    assert calls == [("conn", True, b"ping")]
