"""The foundation through real daphne and real sockets: what a client on the network sees."""

import asyncio
import json
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.system.conftest import CONNECTION_INIT_TIMEOUT

pytestmark = pytest.mark.system

REGISTER = """
mutation($email: String!) {
  register(email: $email, password: "correct horse battery staple", displayName: "Live Ada") {
    ... on AuthPayload { token user { id } }
    ... on OperationInfo { messages { code } }
  }
}
"""
ME = "query { me { id displayName } }"
ME_SUBSCRIPTION = "subscription { me { id displayName } }"


@pytest.fixture(scope="module")
def account(daphne_server):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    payload = daphne_server.graphql(REGISTER, {"email": email})["data"]["register"]
    return payload["token"], payload["user"]["id"]


async def _send(ws, message: dict) -> None:
    await ws.send(json.dumps(message))


async def _receive(ws, timeout: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _closed_with(ws, timeout: float = 5) -> int:
    """Read until the server closes the socket; the close code. Times out otherwise."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed:
        return ws.close_code


def test_me_over_http(daphne_server, account):
    token, user_id = account

    assert daphne_server.graphql(ME, token=token) == {
        "data": {"me": {"id": user_id, "displayName": "Live Ada"}}
    }


async def test_me_over_graphql_transport_ws(daphne_server, account):
    token, user_id = account
    async with connect(daphne_server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await _send(
            ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        ack = await _receive(ws)
        await _send(ws, {"type": "subscribe", "id": "1", "payload": {"query": ME}})
        result = await _receive(ws)
        complete = await _receive(ws)

    assert ws.subprotocol == "graphql-transport-ws"
    assert ack == {"type": "connection_ack"}
    assert result == {
        "type": "next",
        "id": "1",
        "payload": {"data": {"me": {"id": user_id, "displayName": "Live Ada"}}},
    }
    assert complete == {"type": "complete", "id": "1"}


async def test_me_over_legacy_graphql_ws(daphne_server, account):
    token, user_id = account
    async with connect(daphne_server.ws_url, subprotocols=["graphql-ws"]) as ws:
        await _send(
            ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        ack = await _receive(ws)
        await _send(ws, {"type": "start", "id": "1", "payload": {"query": ME_SUBSCRIPTION}})
        result = await _receive(ws)
        await _send(ws, {"type": "stop", "id": "1"})
        stopped = await _receive(ws)

    assert ws.subprotocol == "graphql-ws"
    assert ack == {"type": "connection_ack"}
    assert result == {
        "type": "data",
        "id": "1",
        "payload": {"data": {"me": {"id": user_id, "displayName": "Live Ada"}}},
    }
    assert stopped == {"type": "complete", "id": "1"}


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_bad_token_is_closed_4403(daphne_server, protocol):
    async with connect(daphne_server.ws_url, subprotocols=[protocol]) as ws:
        await _send(
            ws, {"type": "connection_init", "payload": {"authorization": "Bearer ct_nope"}}
        )

        assert await _closed_with(ws) == 4403


async def test_a_socket_that_never_sends_connection_init_is_closed_4408(daphne_server):
    async with connect(daphne_server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        started = time.monotonic()

        code = await _closed_with(ws, timeout=CONNECTION_INIT_TIMEOUT + 5)

    assert code == 4408
    assert (
        CONNECTION_INIT_TIMEOUT - 0.5 <= time.monotonic() - started <= CONNECTION_INIT_TIMEOUT + 3
    )


async def test_a_cross_site_origin_is_refused_at_the_handshake(daphne_server):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            daphne_server.ws_url,
            subprotocols=["graphql-transport-ws"],
            origin="https://evil.example",
        ):
            pass

    assert refused.value.response.status_code == 403


async def test_the_same_origin_and_no_origin_are_accepted(daphne_server, account):
    token, _ = account
    for origin in (daphne_server.url, None):
        async with connect(
            daphne_server.ws_url, subprotocols=["graphql-transport-ws"], origin=origin
        ) as ws:
            await _send(
                ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            )
            assert await _receive(ws) == {"type": "connection_ack"}


def test_healthz_and_masked_errors_in_production_mode(daphne_server):
    health = httpx.get(f"{daphne_server.url}/healthz", timeout=5)
    typo = daphne_server.graphql("{ me { nope } }")

    assert health.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    assert typo["errors"][0]["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
