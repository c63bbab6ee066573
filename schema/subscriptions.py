"""Subscriptions: check access, join channel-layer groups, then yield typed events."""

import copy
from collections.abc import AsyncGenerator

import strawberry

from chat import events
from schema.context import Context, require_viewer
from schema.errors import graphql_error
from schema.types import User


@strawberry.type(
    description="Live events over WebSocket (`graphql-transport-ws` or `graphql-ws`)."
)
class Subscription:
    @strawberry.subscription(
        description=(
            "The signed-in user: sent on subscribing, then again whenever their profile "
            "changes (from any of their sessions)."
        )
    )
    async def me(self, info: strawberry.Info[Context]) -> AsyncGenerator[User, None]:
        user = require_viewer(info)
        if not info.context.is_websocket:
            raise graphql_error("Subscriptions need a WebSocket.", "BAD_REQUEST")
        consumer = info.context.request
        group = events.user_group(user.id)
        async with consumer.listen_to_channel(
            events.EVENT_MESSAGE_TYPE, groups=[group]
        ) as messages:
            yield user
            async for message in messages:
                data = message["data"]
                # Groups belong to the socket, not the subscription: filter by event.
                if message["event"] == "profile_updated" and data["id"] == str(user.id):
                    user = copy.copy(user)
                    user.display_name = data["display_name"]
                    yield user
