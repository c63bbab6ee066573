import asyncio
import contextlib
import json
import logging
import random
from typing import Any

from django.conf import settings
from django.utils import timezone
from strawberry.channels import GraphQLWSConsumer
from strawberry.channels.handlers.ws_handler import ChannelsWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType

from chat import events, presence
from chat.auth import aauthenticate_token, parse_authorization
from chat.models import AuthToken, User
from schema.context import Context
from schema.fanout import Sink, current_sink

logger = logging.getLogger(__name__)

# Keys a client may put its token under in the `connection_init` payload: ours, what
# GraphiQL sends from its headers editor, and what several client libraries use.
TOKEN_KEYS = ("authorization", "Authorization", "authToken")


def token_from_params(params: dict[str, Any]) -> tuple[bool, str | None]:
    """(whether credentials were sent, the raw token or None when malformed)."""
    for key in TOKEN_KEYS:
        value = params.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            return True, None
        if key == "authToken" and " " not in value.strip():
            return True, value.strip()
        return True, parse_authorization(value)
    return False, None


class _Adapter(ChannelsWebSocketAdapter):
    async def close(self, code: int, reason: str) -> None:
        # The legacy `graphql-ws` handler closes a refused connection_init with 1011 (an
        # internal error, which clients retry). A refusal is final: close 4403, as
        # `graphql-transport-ws` does, so both protocols tell clients the same thing.
        if code == 1011 and self.ws_consumer.refused:
            code, reason = 4403, "Forbidden"
        await super().close(code, reason)

    async def send_text(self, text: str) -> None:
        """Write an already encoded frame."""
        await self.ws_consumer.send(text)


class _TransportWSHandler(BaseGraphQLTransportWSHandler):
    async def run_operation(self, operation: Operation) -> None:
        # The operation's task carries its sink, so the subscription can hand it to the
        # fan-out hub (schema.fanout) for frames written without the generator.
        current_sink.set(
            Sink(
                operation_id=operation.id,
                query=operation.query,
                operation_name=operation.operation_name,
                variables=operation.variables,
                context=self.context,
                schema=self.schema,
                prefix=f'{{"id":{json.dumps(operation.id)},"type":"next","payload":',
                send_text=self.websocket.send_text,
                is_open=lambda: (
                    self.operations.get(operation.id) is operation and not operation.completed
                ),
                encode_json=self.view.encode_json,
            )
        )
        await super().run_operation(operation)


class _LegacyWSHandler(BaseGraphQLWSHandler):
    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        task = asyncio.current_task()
        current_sink.set(
            Sink(
                operation_id=operation_id,
                query=query,
                operation_name=operation_name,
                variables=variables,
                context=self.context,
                schema=self.schema,
                prefix=f'{{"type":"data","id":{json.dumps(operation_id)},"payload":',
                send_text=self.websocket.send_text,
                is_open=lambda: self.tasks.get(operation_id) is task,
                encode_json=self.view.encode_json,
            )
        )
        await super().handle_async_results(operation_id, query, operation_name, variables)


class GraphQLConsumer(GraphQLWSConsumer):
    """GraphQL over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

    Authenticates once, at `connection_init`, from the token in its payload; without one
    it falls back to the cookie session the handshake carried (GraphiQL). An authenticated
    socket then holds a presence lease, and is closed (4403) when its token is revoked.
    """

    websocket_adapter_class = _Adapter  # type: ignore[assignment]
    graphql_transport_ws_handler_class = _TransportWSHandler
    graphql_ws_handler_class = _LegacyWSHandler
    refused = False
    viewer: User | None = None
    token: AuthToken | None = None
    _heartbeat: asyncio.Task | None = None
    _expiry: asyncio.TimerHandle | None = None
    _expiring: asyncio.Task | None = None

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        user = self.scope.get("user")
        return Context(request=self, user=user if user and user.is_authenticated else None)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        sent, raw = token_from_params(context.connection_params or {})
        if sent:
            token = await aauthenticate_token(raw) if raw else None
            if token is None:
                self.refused = True
                raise ConnectionRejectionError(
                    {"message": "Invalid or expired token.", "code": "UNAUTHENTICATED"}
                )
            context.user, context.token = token.user, token
        if context.user is not None:
            await self._signed_in(context.user, context.token)
        return UNSET

    async def _signed_in(self, user: User, token: AuthToken | None) -> None:
        self.viewer, self.token = user, token
        if token is not None:
            # A token is checked once, at connection_init: close the socket when it expires,
            # as a request with it would be refused from then on.
            left = (token.expires_at - timezone.now()).total_seconds()
            self._expiry = asyncio.get_running_loop().call_later(max(0.0, left), self._expired)
        await self.channel_layer.group_add(events.session_group(user.id), self.channel_name)
        try:
            await presence.socket_opened(user, self.channel_name)
        except Exception:
            # Presence is best effort: the heartbeat retries; the socket works regardless.
            logger.exception("Could not take a presence lease")
        self._heartbeat = asyncio.create_task(self._keep_lease())
        _ensure_sweeper()

    async def _keep_lease(self) -> None:
        while True:
            # Jittered, so thousands of sockets opened together do not renew in lockstep.
            await asyncio.sleep(settings.PRESENCE_HEARTBEAT * random.uniform(0.8, 1.0))  # noqa: S311
            try:
                await presence.socket_alive(self.viewer, self.channel_name)
                # On layers whose groups expire (channels-redis lists, in-memory), renew
                # them so a socket open for days keeps hearing its session and chats.
                # Pub/sub groups do not expire (and refuse a second add).
                if getattr(self.channel_layer, "group_expiry", None):
                    for group in {events.session_group(self.viewer.id), *self._group_refs}:
                        await self.channel_layer.group_add(group, self.channel_name)
            except Exception:
                logger.exception("Presence heartbeat failed")

    def _expired(self) -> None:
        self._expiring = asyncio.create_task(self.close(code=4403, reason="Session expired"))

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == events.SESSION_MESSAGE_TYPE:
            await self._session_event(message)
            return
        await super().dispatch(message)

    async def _session_event(self, message: dict[str, Any]) -> None:
        """Close this socket if the token it signed in with was revoked."""
        mine = str(self.token.pk) if self.token else None
        revoked = message["token_ids"]
        if revoked is None:
            hit = mine is None or mine != message["keep"]
        else:
            hit = mine is not None and mine in revoked
        if hit:
            await self.close(code=4403, reason="Session revoked")

    async def disconnect(self, code: int) -> None:
        try:
            await super().disconnect(code)
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            if self.viewer is not None:
                if self._heartbeat is not None:
                    self._heartbeat.cancel()
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_discard(
                        events.session_group(self.viewer.id), self.channel_name
                    )
                try:
                    await presence.socket_closed(self.viewer, self.channel_name)
                except Exception:
                    logger.exception("Could not release the presence lease")


_sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def _ensure_sweeper() -> None:
    """One task per process (per event loop) that reports dead processes' users offline."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is None or task.done():
        _sweepers.clear()  # a loop that is gone (tests run one per test) keeps no task
        _sweepers[loop] = loop.create_task(_sweep_forever())


async def _sweep_forever() -> None:
    while True:
        await asyncio.sleep(settings.PRESENCE_SWEEP_INTERVAL)
        try:
            await presence.sweep()
        except Exception:
            logger.exception("Presence sweep failed")
