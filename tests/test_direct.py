"""server.direct.text_writer: under daphne a text frame goes to the socket's protocol in
one call, doing what Channels' session middleware and daphne's `handle_reply` would."""

from functools import partial

import daphne.server
import pytest
from channels.sessions import InstanceSessionWrapper
from daphne.ws_protocol import WebSocketProtocol

from server.direct import text_writer


class Protocol:
    """daphne's WebSocketProtocol as its `handle_reply` sees it, recording frames."""

    STATE_CONNECTING, STATE_OPEN = 0, 1
    handle_reply = WebSocketProtocol.handle_reply

    def __init__(self) -> None:
        self.state = self.STATE_OPEN
        self.sent: list[tuple[str, bool]] = []

    def serverSend(self, content: str, binary: bool = False) -> None:
        self.sent.append((content, binary))


@pytest.fixture
def served():
    server = daphne.server.Server(application=None, endpoints=["tcp:port=0"])
    protocol = Protocol()
    server.connections = {protocol: {}}
    return server, protocol, partial(server.handle_reply, protocol)


@pytest.mark.parametrize("behind_sessions", [False, True])
def test_text_goes_straight_to_the_protocol(served, behind_sessions):
    _server, protocol, send = served
    if behind_sessions:
        send = InstanceSessionWrapper({"type": "websocket", "cookies": {}}, send).send
    write = text_writer(send)

    write('{"type":"next"}')

    assert protocol.sent == [('{"type":"next"}', False)]


async def test_it_writes_what_daphne_would(served):
    server, protocol, send = served
    write = text_writer(send)
    for text in ["a", ""]:
        await send({"type": "websocket.send", "text": text})
        write(text)
    assert protocol.sent == [("a", False), ("a", False)]  # empty text: nothing, both ways

    server.connections[protocol]["disconnected"] = 1.0
    await send({"type": "websocket.send", "text": "late"})
    write("late")
    del server.connections[protocol]
    await send({"type": "websocket.send", "text": "gone"})
    write("gone")
    assert protocol.sent == [("a", False), ("a", False)]


async def test_a_socket_not_yet_accepted_is_refused_as_daphne_refuses_it(served):
    _server, protocol, send = served
    protocol.state = protocol.STATE_CONNECTING

    with pytest.raises(ValueError, match="not been accepted"):
        await send({"type": "websocket.send", "text": "early"})
    with pytest.raises(ValueError, match="not been accepted"):
        text_writer(send)("early")


async def test_other_servers_get_no_writer():
    async def uvicorn_send(message: dict) -> None:
        pass

    assert text_writer(uvicorn_send) is None
    assert text_writer(partial(uvicorn_send)) is None
