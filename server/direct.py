"""Text frames written straight to daphne's WebSocket protocol.

Between a consumer's `send` and the frame reaching autobahn lie five pass-through
layers: Channels' `send` twice, its session middleware's (which saves the session on
`http.response.start` only, reading it on every message to decide), daphne's
`handle_reply` coroutine and the protocol's own dispatch on the message's type. Per
delivery that was a third of the hub's cost (bench/fanout.py, issue 14). Under daphne
`text_writer` does what they do for a text frame in one call; under any other server it
returns None and frames take the ASGI way.

Nothing here imports daphne: importing it installs Twisted's reactor, which a process
served by uvicorn or granian must not get.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any

from channels.sessions import InstanceSessionWrapper


def text_writer(send: Callable[..., Any]) -> Callable[[str], None] | None:
    """A function writing a text frame as `await send({"type": "websocket.send",
    "text": text})` would, when `send` is daphne's (maybe behind Channels' session
    middleware); None otherwise."""
    wrapper = getattr(send, "__self__", None)
    if isinstance(wrapper, InstanceSessionWrapper):
        send = wrapper.real_send
    daphne_server = sys.modules.get("daphne.server")
    if (
        daphne_server is None
        or not isinstance(send, functools.partial)
        or getattr(send.func, "__func__", None) is not daphne_server.Server.handle_reply
        or len(send.args) != 1
        or send.keywords
    ):
        return None
    (protocol,) = send.args
    # A partial, not a closure: every open socket keeps its writer.
    return functools.partial(_write, send.func.__self__.connections, protocol)


def _write(connections: dict[Any, dict], protocol: Any, text: str) -> None:
    # daphne's Server.handle_reply, then WebSocketProtocol.handle_reply.
    details = connections.get(protocol)
    if details is None or details.get("disconnected") or not text:
        return
    if protocol.state == protocol.STATE_CONNECTING:
        raise ValueError("Socket has not been accepted, so cannot send over it")
    protocol.serverSend(text, False)
