"""Subscriptions: check access, listen to channel-layer groups, then yield typed events.

Channel layers deliver at most once and only to listeners already in the group, so
`chatEvents` joins the chat's group first, then replays from the database every change
after `after` (a revision: every message added, edited or deleted is one, numbered without
gaps in `chat.models.Change`), then streams live events, dropping any revision it already
sent and backfilling from the database when a live revision skips ahead. A client that
resubscribes with the last revision it saw misses nothing and sees nothing twice. When the
process may have missed events (the layer failed, a queue overflowed) the fan-out hub
sends a `resync` and the subscription catches up from the database the same way.

They listen through the process's fan-out hub (`schema.fanout`), which joins each group
once per process and writes events that render the same for everyone (new messages in
order, typing, receipts...) to idle live subscriptions directly.
"""

import copy
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async

from chat import events, metrics, models, selectors
from chat.connections import checked
from chat.exceptions import NotFound
from schema import fanout, replays
from schema.context import Context, require_viewer
from schema.errors import bad_user_input
from schema.events import (
    CHANGE_EVENTS,
    MEMBERSHIP_EVENTS,
    AddedToChat,
    ChatEvent,
    InboxEvent,
    MemberLeft,
    Mentioned,
    MessageAdded,
    RemovedFromChat,
    change_events,
    chat_event,
    chat_from,
    message_event,
    message_from,
)
from schema.types import User

REPLAY_BATCH = 500

# A chat subscription's first database work, on the thread sockets share.
_member_revision = checked(selectors.member_revision)


class _Log:
    """One chat's order as one subscriber has sent it: `last` is the last revision
    (chatEvents) or seq (inbox, which sends new messages only) it sent."""

    def __init__(
        self,
        chat_id: Any,
        last: int,
        read: replays.SharedReads,
        render: Callable[[models.Change], list[Any]],
        position: Callable[[models.Change], int],
        listener: fanout.Listener,
        shared: Callable[[models.Change], bool],
    ) -> None:
        self.chat_id, self.last = chat_id, last
        self._read, self._render, self._position = read, render, position
        # Changes that render the same for every subscriber (`shared`) are written
        # through the listener, executed once for all who replay them.
        self._listener, self._shared = listener, shared

    async def catch_up(self, before: int | None = None) -> AsyncIterator[Any]:
        """Everything after what was sent, up to `before`, from the database."""
        while True:
            batch = await self._read.read(self.chat_id, self.last, before, REPLAY_BATCH)
            for change in batch:
                written = self._shared(change) and await self._write(change)
                self.last = self._position(change)
                if written:
                    continue
                for event in self._render(change):
                    yield event
            if len(batch) < REPLAY_BATCH:
                return

    async def _write(self, change: models.Change) -> bool:
        # The rendered payloads live on the row, which every subscription that waited for
        # the same read shares (`schema.replays`), and go with it.
        rendered = change.__dict__.setdefault("_rendered_for", {})
        return await self._listener.write_replayed(rendered, lambda: self._render(change)[0])

    def sent(self, place: int) -> bool:
        """Whether the change at `place` has been sent: by a replay that ran while it
        waited in the queue, after a reconnect most often. Asked before building it, as
        building it only to drop it was 13 % of a reconnect storm's CPU."""
        return place <= self.last

    async def live(self, place: int, events_: list[Any]) -> AsyncIterator[Any]:
        """A live change at `place`, in order: nothing if already sent, the gap first."""
        if self.sent(place):
            return
        if place > self.last + 1:
            async for missing in self.catch_up(before=place):
                yield missing
        self.last = place
        for event in events_:
            yield event


def _changes(chat_id: Any, after: int, before: int | None, limit: int) -> Any:
    return selectors.changes_after(chat_id=chat_id, revision=after, before=before, limit=limit)


def _additions(chat_id: Any, after: int, before: int | None, limit: int) -> Any:
    return selectors.additions_after(chat_id=chat_id, seq=after, before=before, limit=limit)


def _added(change: models.Change) -> list[Any]:
    return [message_event(MessageAdded, change.message, change.revision)]


def _is_change(message: dict[str, Any]) -> bool:
    return message["event"] in CHANGE_EVENTS


def _revision(message: dict[str, Any]) -> int | None:
    return message["data"]["revision"] if message["event"] in CHANGE_EVENTS else None


@strawberry.type(
    description=(
        "Live events: over WebSocket (`graphql-transport-ws` or `graphql-ws`), or over HTTP "
        'with `Accept: multipart/mixed;subscriptionSpec="1.0"` (Apollo Client, urql).'
    )
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
        listener = fanout.Listener(
            render=lambda message: None,
            direct=lambda message: False,
            wants=lambda message: message["event"] == "profile_updated",
        )
        async with fanout.hub().listening(listener, [events.user_group(user.id)]):
            yield user
            while True:
                message = await listener.next()
                if message["event"] == "profile_updated":
                    user = copy.copy(user)
                    user.display_name = message["data"]["display_name"]
                    yield user

    @strawberry.subscription(
        description=(
            "Everything that happens in one chat. With `after` (a `revision`), first replays "
            "every change after it (messages added, edited, deleted; joins and leaves), then "
            "goes live; changes arrive in revision order, none twice. Members only "
            "(`NOT_FOUND` otherwise); ends when the viewer leaves the chat."
        )
    )
    async def chat_events(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[strawberry.ID, strawberry.argument(description="The chat.")],
        after: Annotated[
            int | None,
            strawberry.argument(
                description=(
                    "The last `revision` you have (of an event, or `Chat.revision` with the "
                    "history you loaded): replay every change after it. Omit to start now."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        viewer = require_viewer(info)
        if after is not None and after < 0:
            raise bad_user_input("`after` cannot be negative.", argument="after")
        if after is not None:
            metrics.RESUMES.inc()
        chat_pk = selectors.parse_id(chat_id)
        if chat_pk is None:
            raise NotFound(selectors.CHAT_NOT_FOUND)
        # Asked of every listener for every event of the chat: formatting the UUID each
        # time was a third of handing presence changes out in a reconnect storm.
        me = str(viewer.id)
        listener = fanout.Listener(
            render=lambda message: _rendered_directly(message, viewer),
            direct=_writes_directly,
            order=_revision,
            # Typists are not told about their own typing, nor anyone that they came
            # online (announced a moment after their socket opened: chat.presence).
            wants=lambda message: (
                not (
                    message["event"] in ("typing_changed", "presence_changed")
                    and message["data"]["user"]["id"] == me
                )
            ),
        )
        async with fanout.hub().listening(listener, [events.chat_group(chat_pk)]):
            # In the group before reading the database: nothing committed from here on
            # can fall between the replay and the live stream. The membership check reads
            # the chat's newest revision too: one query for both.
            newest, members = await sync_to_async(_member_revision)(user=viewer, chat_id=chat_pk)
            # Without `after`, from now. Past the newest change (a stale or foreign
            # cursor) also from now: otherwise every live change up to it would be
            # dropped as already seen.
            if after is None or after > newest:
                after = newest

            def replayed(change: models.Change) -> list[Any]:
                return change_events(change.kind, change.message, change.revision, members)

            log = _Log(
                chat_pk,
                after,
                replays.shared(_changes),
                replayed,
                lambda change: change.revision,
                listener,
                _replays_alike,
            )
            listener.positions[str(chat_pk)] = log
            # A socket that is up to date (most of a reconnect storm) reads nothing more.
            changes = log.catch_up() if after < newest else None
            while True:
                if changes is not None:
                    async for event in changes:
                        yield event
                        if _viewer_left(event, viewer):
                            return
                    # Not kept while the socket waits: an async generator, even a spent
                    # one, is also kept in the event loop's set of them.
                    changes = None
                listener.go_live()
                message = await listener.next()
                event, data = message["event"], message["data"]
                if event == fanout.RESYNC:
                    # One query when nothing changed (a resync while Redis is down polls).
                    newest, members = (
                        await models.Chat.objects.filter(pk=chat_pk)
                        .values_list("revision", "member_count")
                        .aget()
                    )
                    if newest > log.last:
                        changes = log.catch_up()
                elif event in CHANGE_EVENTS:
                    if log.sent(data["revision"]):
                        continue
                    if await listener.write_through(message):
                        continue
                    happened = change_events(
                        CHANGE_EVENTS[event],
                        message_from(data, viewer),
                        data["revision"],
                        data["member_count"] or 0,
                    )
                    changes = log.live(data["revision"], happened)
                # Typing, receipts, presence... queued while the generator was busy (a
                # replay, most often): written as the hub writes them to idle sockets.
                elif await listener.write_through(message):
                    continue
                elif (typed := chat_event(event, data, viewer)) is not None:
                    yield typed

    @strawberry.subscription(
        description=(
            "Events across all the viewer's chats: every new message (with its `chatId`, to "
            "move a chat up and count it unread), and chats gained or lost."
        )
    )
    async def inbox(self, info: strawberry.Info[Context]) -> AsyncGenerator[InboxEvent, None]:
        viewer = require_viewer(info)
        own = events.user_group(viewer.id)
        listener = fanout.Listener(
            render=lambda message: _inbox_added(message["data"], viewer),
            # From chat groups, only new messages; the rest of a chat's events are for
            # chat screens.
            wants=lambda message: message["group"] == own or message["event"] == "message_added",
        )
        hub = fanout.hub()
        async with hub.listening(listener, [own]):
            # Messages go to chat groups only (one send per message, whatever the number
            # of members), so the inbox listens to every chat of the viewer's.
            logs = listener.positions
            async for chat_id, last_seq in models.Chat.objects.filter(
                memberships__user=viewer
            ).values_list("id", "last_seq"):
                await hub.add(listener, events.chat_group(chat_id))
                logs[str(chat_id)] = _inbox_log(chat_id, last_seq, listener)
            listener.go_live()
            while True:
                message = await listener.next()
                event, data = message["event"], message["data"]
                if event == fanout.RESYNC:
                    async for typed in _inbox_resync(hub, listener, viewer):
                        yield typed
                    continue
                if message["group"] != own:
                    log = logs.get(data.get("chat_id", ""))
                    if event == "message_added" and isinstance(log, _Log):
                        if log.sent(data["seq"]):
                            continue
                        if await listener.write_through(message):
                            continue
                        added = [_inbox_added(data, viewer)]
                        async for typed in log.live(data["seq"], added):
                            yield typed
                    continue
                gained = event == "chat_created" or (
                    event == "member_joined" and data["user"]["id"] == str(viewer.id)
                )
                if gained:
                    chat = data if event == "chat_created" else data["chat"]
                    # Join, then replay what the chat got before the join landed (from the
                    # message that added the viewer): nothing falls between the two.
                    since = data["seq"] - 1 if event == "member_joined" else 0
                    log = _inbox_log(chat["id"], since, listener)
                    await hub.add(listener, events.chat_group(chat["id"]))
                    logs[chat["id"]] = log
                    yield AddedToChat(chat=chat_from(chat))
                    async for missed in log.catch_up():
                        yield missed
                elif event == "member_left" and data["user"]["id"] == str(viewer.id):
                    logs.pop(data["chat"]["id"], None)
                    hub.remove(listener, events.chat_group(data["chat"]["id"]))
                    yield RemovedFromChat(chat_id=data["chat"]["id"])
                elif event == "mentioned":
                    yield Mentioned(message=message_from(data, viewer))


# Chat events rendered the same way for every subscriber whatever it has seen before (new
# messages, edits and deletes too, when they come in revision order): the fan-out may
# write them directly.
STATELESS_CHAT_EVENTS = frozenset(
    {
        "message_added",
        "message_edited",
        "message_deleted",
        "typing_changed",
        "read_up_to",
        "presence_changed",
        "chat_updated",
        "reaction_changed",
    }
)


def _replays_alike(change: models.Change) -> bool:
    """A replayed change renders the same for everyone, as `_writes_directly` says of a
    live one: all but joins and leaves."""
    return (
        change.kind != models.Change.Kind.ADDED
        or change.message.system_event not in MEMBERSHIP_EVENTS
    )


def _writes_directly(message: dict[str, Any]) -> bool:
    """A join or leave is two events (the SYSTEM message, then the membership), and may end
    the subscription: it goes through the generator."""
    return message["event"] in STATELESS_CHAT_EVENTS and not (
        message["event"] == "message_added"
        and message["data"]["system_event"] in MEMBERSHIP_EVENTS
    )


def _rendered_directly(message: dict[str, Any], viewer: models.User) -> Any:
    event, data = message["event"], message["data"]
    if event in CHANGE_EVENTS:
        [typed] = change_events(
            CHANGE_EVENTS[event], message_from(data, viewer), data["revision"], 0
        )
        return typed
    return chat_event(event, data, viewer)


def _viewer_left(event: Any, viewer: models.User) -> bool:
    return isinstance(event, MemberLeft) and event.user.pk == viewer.pk


def _inbox_log(chat_id: Any, last_seq: int, listener: fanout.Listener) -> _Log:
    return _Log(
        chat_id,
        last_seq,
        replays.shared(_additions),
        _added,
        lambda change: change.message.seq,
        listener,
        lambda change: True,
    )


def _inbox_added(data: dict[str, Any], viewer: models.User) -> MessageAdded:
    return message_event(MessageAdded, message_from(data, viewer), data["revision"])


async def _inbox_resync(
    hub: fanout.Hub, listener: fanout.Listener, viewer: models.User
) -> AsyncIterator[Any]:
    """Catch the inbox up with the database: chats gained and lost meanwhile, and new
    messages in the chats that have some (one query, plus one per such chat)."""
    logs = listener.positions
    memberships = {
        str(m.chat_id): m
        async for m in models.Membership.objects.filter(user=viewer)
        .select_related("chat")
        .order_by("joined_at", "pk")
    }
    for chat_id in [c for c in logs if c not in memberships]:
        logs.pop(chat_id)
        hub.remove(listener, events.chat_group(chat_id))
        yield RemovedFromChat(chat_id=chat_id)
    for chat_id, membership in memberships.items():
        log = logs.get(chat_id)
        if log is None:
            # Gained meanwhile: from the viewer's read marker, which a join sets to the
            # SYSTEM message that records it.
            log = _inbox_log(membership.chat_id, membership.last_read_seq, listener)
            await hub.add(listener, events.chat_group(chat_id))
            logs[chat_id] = log
            yield AddedToChat(chat=membership.chat)
        if membership.chat.last_seq > log.last:
            async for missed in log.catch_up():
                yield missed
