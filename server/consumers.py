from typing import Any

from strawberry.channels import GraphQLWSConsumer
from strawberry.channels.handlers.ws_handler import ChannelsWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from chat.auth import aauthenticate_token, parse_authorization
from schema.context import Context

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


class GraphQLConsumer(GraphQLWSConsumer):
    """GraphQL over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

    Authenticates once, at `connection_init`, from the token in its payload; without one
    it falls back to the cookie session the handshake carried (GraphiQL).
    """

    websocket_adapter_class = _Adapter  # type: ignore[assignment]
    refused = False

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        user = self.scope.get("user")
        return Context(request=self, user=user if user and user.is_authenticated else None)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        sent, raw = token_from_params(context.connection_params or {})
        if not sent:
            return UNSET
        token = await aauthenticate_token(raw) if raw else None
        if token is None:
            self.refused = True
            raise ConnectionRejectionError(
                {"message": "Invalid or expired token.", "code": "UNAUTHENTICATED"}
            )
        context.user, context.token = token.user, token
        return UNSET
