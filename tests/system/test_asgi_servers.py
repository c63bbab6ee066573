"""The project under the ASGI servers the benches compare with daphne (bench/fanout.py and
bench/reconnect.py `--server`): the same application answers HTTP and delivers over
graphql-transport-ws under each, so their figures measure a working server."""

import pytest

from tests.system.test_scale_out import CREATE_ROOM, JOIN, SEND, Listener, register

pytestmark = pytest.mark.system


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
async def test_a_message_reaches_a_subscriber(live_stack, server):
    live = live_stack.start(server)
    try:
        owner, member = register(live, "Owner"), register(live, "Member")
        room = live.graphql(CREATE_ROOM, token=owner)["data"]["createRoom"]["id"]
        assert live.graphql(JOIN, {"c": room}, token=member)["data"]["joinRoom"]
        async with Listener(live, member, room) as listener:
            sent = live.graphql(SEND, {"c": room, "b": f"hello {server}"}, token=owner)
            assert sent["data"]["sendMessage"]["__typename"] == "Message"
            await listener.collect(lambda events: listener.messages(), timeout=10)
        assert listener.messages() == [(3, f"hello {server}")]
    finally:
        live.stop()
