"""WebSocket helpers for tests: the project's ASGI app over Channels' communicator, speaking
`graphql-transport-ws` or the legacy `graphql-ws` as a client library would."""

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from chat import presence

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


class GraphQLSocket:
    def __init__(
        self,
        app: Any,
        protocol: str = TRANSPORT_WS,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.protocol = protocol
        self.communicator = WebsocketCommunicator(
            app, "/graphql/", subprotocols=[protocol], headers=headers or []
        )

    async def connect(self) -> tuple[bool, Any]:
        return await self.communicator.connect()

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def receive(self, timeout: float = 3) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def receive_close(self, timeout: float = 3) -> int:
        """Skip any text frames until the server closes; return the close code."""
        while True:
            output = await self.communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        reply = await self.receive()
        # Presence changes are announced in batches (chat.presence): announce this one
        # now, so that it reaches no subscription the test opens next.
        await presence.flush()
        return reply

    async def subscribe(self, op_id: str, query: str, variables: dict | None = None) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": kind, "id": op_id, "payload": payload})

    async def next_payload(self, op_id: str) -> dict[str, Any]:
        """The next result of operation `op_id` (`next` or legacy `data`), skipping pings."""
        while True:
            message = await self.receive()
            if message["type"] in {"ka", "ping", "pong"}:
                continue
            assert message["type"] in {"next", "data"}, message
            assert message["id"] == op_id, message
            return message["payload"]

    async def expect_complete(self, op_id: str) -> None:
        message = await self.receive()
        assert message == {"type": "complete", "id": op_id}, message

    async def close(self) -> None:
        await self.communicator.disconnect()
