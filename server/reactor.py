"""Twisted's socket reads and writes, called by the event loop without its legacy log
context.

Twisted's asyncio reactor registers every readable or writable socket with the loop as
`callWithLogger(selectable, reactor._readOrWrite, selectable, read)`. Per call that asks
the connection for its log prefix, copies a dictionary, and pushes and pops a context on
Twisted's context stack, so that lines logged through the legacy `twisted.python.log`
during the read carry a "system" prefix: nothing in this server logs that way (daphne,
Django and this project log through `logging`). At 5,000 idle sockets, where the work is
reading the clients' pings, that wrapper was a seventh of the process's CPU
(bench/RESULTS.md, issue 14).

`_readOrWrite` itself catches and logs what a read or write raises and disconnects the
connection, as before; anything it lets through is reported by the event loop's exception
handler instead of Twisted's `log.err`.
"""

from collections.abc import Callable
from typing import Any

from twisted.python.log import callWithLogger


def _direct(register: Callable[..., Any]) -> Callable[..., Any]:
    def add(fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        if callback is callWithLogger:
            _selectable, callback, *args = args
        return register(fd, callback, *args)

    return add


def call_io_directly(reactor: Any) -> None:
    """Have `reactor` (Twisted's asyncio reactor) register its sockets' reads and writes
    with its event loop without the `callWithLogger` wrapper."""
    loop = reactor._asyncioEventloop
    loop.add_reader = _direct(loop.add_reader)
    loop.add_writer = _direct(loop.add_writer)
