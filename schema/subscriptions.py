"""Subscriptions: check access, listen to channel-layer groups, then yield typed events.

Channel layers deliver at most once and only to sockets already in the group, so
`chatEvents` joins the chat's group first, then replays from the database what came after
`after`, then streams live events, dropping any `seq` it already sent and backfilling from
the database when a live `seq` skips ahead. A client that resubscribes with the last `seq`
it saw misses nothing and sees nothing twice.

They listen through the process's fan-out hub (`schema.fanout`), which joins each group
once per process and writes events that render the same for everyone (new messages in
order, typing, receipts...) to idle live subscriptions directly.
"""

import copy
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async

from chat import events, models, selectors
from schema import fanout
from schema.context import Context, require_viewer
from schema.errors import bad_user_input, graphql_error
from schema.events import (
    AddedToChat,
    ChatEvent,
    InboxEvent,
    MessageAdded,
    RemovedFromChat,
    chat_event,
    chat_from,
    message_event,
    message_from,
)
from schema.types import User

REPLAY_BATCH = 500


def _consumer(info: strawberry.Info[Context]) -> Any:
    if not info.context.is_websocket:
        raise graphql_error("Subscriptions need a WebSocket.", "BAD_REQUEST")
    return info.context.request


async def _messages_between(chat_id: Any, after: int, before: int | None) -> list[models.Message]:
    """Messages with after < seq < before (no upper bound when None), oldest first."""
    rows = models.Message.objects.filter(chat_id=chat_id, seq__gt=after).select_related(
        "author", "subject"
    )
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return [m async for m in rows.order_by("seq")[:REPLAY_BATCH]]


class _Timeline:
    """The `seq` order of one chat as one subscriber has seen it."""

    def __init__(self, chat_id: Any, last_seq: int) -> None:
        self.chat_id = chat_id
        self.last_seq = last_seq

    async def catch_up(self, before: int | None = None) -> AsyncIterator[models.Message]:
        """Everything after what was sent, up to `before`, from the database."""
        while True:
            batch = await _messages_between(self.chat_id, self.last_seq, before)
            for message in batch:
                self.last_seq = message.seq
                yield message
            if len(batch) < REPLAY_BATCH:
                return

    async def added(self, message: models.Message) -> AsyncIterator[models.Message]:
        """A live message, in order: nothing if already sent, the gap first if it skips."""
        if message.seq <= self.last_seq:
            return
        if message.seq > self.last_seq + 1:
            async for missing in self.catch_up(before=message.seq):
                yield missing
        self.last_seq = message.seq
        yield message


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
        group = events.user_group(user.id)
        async with _consumer(info).listen_to_channel(
            events.EVENT_MESSAGE_TYPE, groups=[group]
        ) as messages:
            yield user
            async for message in messages:
                if message["group"] == group and message["event"] == "profile_updated":
                    user = copy.copy(user)
                    user.display_name = message["data"]["display_name"]
                    yield user

    @strawberry.subscription(
        description=(
            "Everything that happens in one chat. With `after`, first replays every message "
            "with a greater `seq`, then goes live; messages arrive in `seq` order, none twice. "
            "Members only (`NOT_FOUND` otherwise); ends when the viewer leaves the chat."
        )
    )
    async def chat_events(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[strawberry.ID, strawberry.argument(description="The chat.")],
        after: Annotated[
            int | None,
            strawberry.argument(description="The last `seq` you have; replay from there."),
        ] = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        viewer = require_viewer(info)
        _consumer(info)
        if after is not None and after < 0:
            raise bad_user_input("`after` cannot be negative.", argument="after")
        chat = await sync_to_async(selectors.chat_for_member)(user=viewer, chat_id=chat_id)
        listener = fanout.Listener(
            render=lambda message: _chat_event(message, viewer),
            direct_events=STATELESS_CHAT_EVENTS,
            # Typists are not told about their own typing.
            wants=lambda message: (
                not (
                    message["event"] == "typing_changed"
                    and message["data"]["user"]["id"] == str(viewer.id)
                )
            ),
        )
        async with fanout.hub().listening(listener, [events.chat_group(chat.id)]):
            # In the group before reading the database: nothing committed from here on
            # can fall between the replay and the live stream.
            newest = (
                await models.Chat.objects.filter(pk=chat.pk)
                .values_list("last_seq", flat=True)
                .aget()
            )
            # Without `after`, from now. Past the newest message (a stale or foreign
            # cursor) also from now: otherwise every live message up to it would be
            # dropped as already seen.
            if after is None or after > newest:
                after = newest
            timeline = listener.positions[str(chat.id)] = _Timeline(chat.id, after)
            async for message in timeline.catch_up():
                yield message_event(MessageAdded, message)

            listener.go_live()
            while True:
                message = await listener.next()
                event, data = message["event"], message["data"]
                if event == "message_added":
                    async for added in timeline.added(message_from(data, viewer)):
                        yield message_event(MessageAdded, added)
                    continue
                typed = chat_event(event, data, viewer)
                if typed is not None:
                    yield typed
                if event == "member_left" and data["user"]["id"] == str(viewer.id):
                    return

    @strawberry.subscription(
        description=(
            "Events across all the viewer's chats: every new message (with its `chatId`, to "
            "move a chat up and count it unread), and chats gained or lost."
        )
    )
    async def inbox(self, info: strawberry.Info[Context]) -> AsyncGenerator[InboxEvent, None]:
        viewer = require_viewer(info)
        _consumer(info)
        own = events.user_group(viewer.id)
        listener = fanout.Listener(
            render=lambda message: _added(message["data"], viewer),
            # From chat groups, only new messages; the rest of a chat's events are for
            # chat screens.
            wants=lambda message: message["group"] == own or message["event"] == "message_added",
        )
        hub = fanout.hub()
        async with hub.listening(listener, [own]):
            # Messages go to chat groups only (one send per message, whatever the number
            # of members), so the inbox listens to every chat of the viewer's.
            timelines = listener.positions
            async for chat_id, last_seq in models.Chat.objects.filter(
                memberships__user=viewer
            ).values_list("id", "last_seq"):
                await hub.add(listener, events.chat_group(chat_id))
                timelines[str(chat_id)] = _Timeline(chat_id, last_seq)
            listener.go_live()
            while True:
                message = await listener.next()
                event, data = message["event"], message["data"]
                if message["group"] != own:
                    timeline = timelines.get(data.get("chat_id", ""))
                    if event == "message_added" and isinstance(timeline, _Timeline):
                        async for added in timeline.added(message_from(data, viewer)):
                            yield message_event(MessageAdded, added)
                    continue
                gained = event == "chat_created" or (
                    event == "member_joined" and data["user"]["id"] == str(viewer.id)
                )
                if gained:
                    chat = data if event == "chat_created" else data["chat"]
                    # Join, then replay what the chat got before the join landed (from the
                    # message that added the viewer): nothing falls between the two.
                    since = data["seq"] - 1 if event == "member_joined" else 0
                    timeline = _Timeline(chat["id"], since)
                    await hub.add(listener, events.chat_group(chat["id"]))
                    timelines[chat["id"]] = timeline
                    yield AddedToChat(chat=chat_from(chat))
                    async for missed in timeline.catch_up():
                        yield message_event(MessageAdded, missed)
                elif event == "member_left" and data["user"]["id"] == str(viewer.id):
                    timelines.pop(data["chat"]["id"], None)
                    hub.remove(listener, events.chat_group(data["chat"]["id"]))
                    yield RemovedFromChat(chat_id=data["chat"]["id"])


# Chat events rendered the same way for every subscriber whatever it has seen before (new
# messages are too, when they come in order): the fan-out may write them directly.
STATELESS_CHAT_EVENTS = frozenset(
    {
        "message_added",
        "message_edited",
        "message_deleted",
        "typing_changed",
        "read_up_to",
        "presence_changed",
    }
)


def _added(data: dict[str, Any], viewer: models.User) -> MessageAdded:
    return message_event(MessageAdded, message_from(data, viewer))


def _chat_event(message: dict[str, Any], viewer: models.User) -> Any:
    if message["event"] == "message_added":
        return _added(message["data"], viewer)
    return chat_event(message["event"], message["data"], viewer)
