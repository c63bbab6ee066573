"""Subscription event types, and their construction from channel-layer payloads.

Payloads carry everything a subscriber renders, so an event becomes unsaved model
instances here and resolves with the same `Message`, `User` and `Chat` types the queries
use, without a query per subscriber.
"""

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import strawberry
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat import models
from schema.types import Chat, Message, User

REVISION = (
    "The change's position in the chat: keep the greatest you have seen and resubscribe "
    "with `after` set to it."
)


@strawberry.type(description="A message was sent to the chat (also replayed after `after`).")
class MessageAdded:
    # Equal for every subscriber of the same event: their executions are shared.
    share_key: strawberry.Private[tuple | None] = None
    message: Message = strawberry.field(description="The new message.")
    revision: int = strawberry.field(description=REVISION)


@strawberry.type(description="A message's text was edited.")
class MessageEdited:
    # Equal for every subscriber of the same event: their executions are shared.
    share_key: strawberry.Private[tuple | None] = None
    message: Message = strawberry.field(description="The message as it is now.")
    revision: int = strawberry.field(description=REVISION)


@strawberry.type(description="A message was deleted; it stays in the timeline, emptied.")
class MessageDeleted:
    # Equal for every subscriber of the same event: their executions are shared.
    share_key: strawberry.Private[tuple | None] = None
    message: Message = strawberry.field(description="The message as it is now.")
    revision: int = strawberry.field(description=REVISION)


@strawberry.type(
    description="Someone joined or was added to the chat (after its SYSTEM `MessageAdded`)."
)
class MemberJoined:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")
    user: User = strawberry.field(description="Who joined.")
    member_count: int = strawberry.field(
        description="Members after the join (when replayed: members at the replay)."
    )
    revision: int = strawberry.field(description="The revision of the SYSTEM message.")


@strawberry.type(
    description="Someone left or was removed from the chat (after its SYSTEM `MessageAdded`)."
)
class MemberLeft:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")
    user: User = strawberry.field(description="Who left.")
    member_count: int = strawberry.field(
        description="Members after the leave (when replayed: members at the replay)."
    )
    revision: int = strawberry.field(description="The revision of the SYSTEM message.")


@strawberry.type(description="Another member started or stopped typing.")
class TypingChanged:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")
    user: User = strawberry.field(description="Who is typing.")
    typing: bool = strawberry.field(description="False when they stopped or it expired.")
    expires_at: datetime | None = strawberry.field(
        description="When the indicator lapses unless renewed (then a `typing: false` follows)."
    )


@strawberry.type(description="A member read the chat up to `seq` (a read receipt).")
class ReadUpTo:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")
    user: User = strawberry.field(description="Who read.")
    seq: int = strawberry.field(description="The newest `seq` they have read.")


@strawberry.type(description="A member came online (first socket) or went offline (last).")
class PresenceChanged:
    user: User = strawberry.field(description="Whose presence changed.")
    online: bool = strawberry.field(description="Online now.")


@strawberry.type(
    description=(
        "A room's settings changed: renamed, new topic, visibility or slug, or archived. "
        "Not replayed by `after`: refetch the chat after reconnecting."
    )
)
class ChatUpdated:
    chat: Chat = strawberry.field(description="The room as it is now.")


@strawberry.type(
    description=(
        "Someone added or took back an emoji on a message. Ephemeral (not replayed): "
        "refetch `reactions` after reconnecting."
    )
)
class ReactionChanged:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")
    message_id: strawberry.ID = strawberry.field(description="The message.")
    seq: int = strawberry.field(description="The message's `seq`.")
    emoji: str = strawberry.field(description="The emoji.")
    count: int = strawberry.field(description="How many have given it now.")
    added: bool = strawberry.field(description="Given (true) or taken back (false).")
    user: User = strawberry.field(description="Who did it.")


@strawberry.type(description="A new message mentions the viewer (in any chat, of any size).")
class Mentioned:
    message: Message = strawberry.field(description="The message.")


@strawberry.type(description="The viewer was added to a chat, or a new direct chat was opened.")
class AddedToChat:
    chat: Chat = strawberry.field(description="The chat.")


@strawberry.type(description="The viewer left or was removed from a chat.")
class RemovedFromChat:
    chat_id: strawberry.ID = strawberry.field(description="The chat.")


ChatEvent = Annotated[
    MessageAdded
    | MessageEdited
    | MessageDeleted
    | MemberJoined
    | MemberLeft
    | TypingChanged
    | ReadUpTo
    | PresenceChanged
    | ChatUpdated
    | ReactionChanged,
    strawberry.union("ChatEvent", description="Something that happened in one chat."),
]
InboxEvent = Annotated[
    MessageAdded | AddedToChat | RemovedFromChat | Mentioned,
    strawberry.union("InboxEvent", description="Something that happened across my chats."),
]


def user_from(data: dict[str, Any] | None, viewer: models.User) -> models.User | None:
    """A user as the event describes them. The viewer's own email comes from the socket's
    copy of them (only they may read it); everything else from the event, which is newer
    than a socket that signed in before a rename."""
    if data is None:
        return None
    user_id = uuid.UUID(data["id"])
    return models.User(
        id=user_id,
        display_name=data["display_name"],
        email=viewer.email if user_id == viewer.pk else "",
        date_joined=parse_datetime(data["joined_at"]),
        avatar=data.get("avatar") or "",
        avatar_thumbnail=data.get("avatar_thumbnail") or "",
    )


def _when(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


# Ids become UUIDs, as a row read from the database has them: batched lookups (reactions,
# readers, a chat's newest message) are keyed by UUID and missed a string.


def message_from(data: dict[str, Any], viewer: models.User) -> models.Message:
    message = models.Message(
        id=uuid.UUID(data["id"]),
        chat_id=uuid.UUID(data["chat_id"]),
        seq=data["seq"],
        kind=data["kind"],
        body=data["body"],
        system_event=data["system_event"],
        client_id=data["client_id"],
        # `.get`: a process not yet upgraded (a rolling deploy) publishes without them.
        latitude=data.get("latitude"),
        longitude=data.get("longitude"),
        location_label=data.get("location_label") or "",
        created_at=_when(data["created_at"]),
        edited_at=_when(data["edited_at"]),
        deleted_at=_when(data["deleted_at"]),
    )
    message.author = user_from(data["author"], viewer)
    message.subject = user_from(data["subject"], viewer)
    message.attachment = attachment_from(data.get("attachment"))
    message.reply_to = quote_from(data.get("reply_to"), viewer)
    if "mentions" in data:
        message.mentioned = [user_from(u, viewer) for u in data["mentions"]]
    return message


def quote_from(data: dict[str, Any] | None, viewer: models.User) -> models.Message | None:
    if data is None:
        return None
    quoted = models.Message(
        id=uuid.UUID(data["id"]),
        seq=data["seq"],
        body=data["body"],
        kind=data.get("kind", "TEXT"),
    )
    quoted.author = user_from(data["author"], viewer)
    quoted.deleted_at = timezone.now() if data["deleted"] else None
    return quoted


def attachment_from(data: dict[str, Any] | None) -> models.Attachment | None:
    if data is None:
        return None
    return models.Attachment(
        id=uuid.UUID(data["id"]),
        file=data["file"],
        thumbnail=data["thumbnail"] or "",
        name=data["name"],
        content_type=data["content_type"],
        size=data["size"],
        width=data["width"],
        height=data["height"],
    )


def chat_from(data: dict[str, Any]) -> models.Chat:
    return models.Chat(
        id=uuid.UUID(data["id"]),
        kind=data["kind"],
        name=data["name"],
        topic=data["topic"],
        is_public=data["is_public"],
        last_seq=data["last_seq"],
        member_count=data["member_count"],
        # Read with .get: a process not yet upgraded sends payloads without them.
        slug=data.get("slug"),
        archived_at=_when(data.get("archived_at")),
    )


def message_event(kind: type, message: models.Message, revision: int) -> Any:
    """A `MessageAdded`, `MessageEdited` or `MessageDeleted` whose execution subscribers
    share (see `schema.execution`)."""
    key = (kind.__name__, str(message.pk), revision, message.edited_at, message.deleted_at)
    return kind(message=message, revision=revision, share_key=key)


# A change's kind (`models.Change.Kind`), by the event that publishes it.
CHANGE_EVENTS = {
    "message_added": models.Change.Kind.ADDED,
    "message_edited": models.Change.Kind.EDITED,
    "message_deleted": models.Change.Kind.DELETED,
}
_JOINS = {models.Message.SystemEvent.MEMBER_JOINED, models.Message.SystemEvent.MEMBER_ADDED}
_LEAVES = {
    models.Message.SystemEvent.MEMBER_LEFT,
    models.Message.SystemEvent.MEMBER_REMOVED,
    models.Message.SystemEvent.MEMBER_BANNED,
}
MEMBERSHIP_EVENTS = frozenset(_JOINS | _LEAVES)


def change_events(
    kind: str, message: models.Message, revision: int, member_count: int
) -> list[Any]:
    """What `chatEvents` sends for one change, live or replayed: the message event, and
    for a join or leave (a SYSTEM message) the membership event after it."""
    if kind == models.Change.Kind.EDITED:
        return [message_event(MessageEdited, message, revision)]
    if kind == models.Change.Kind.DELETED:
        return [message_event(MessageDeleted, message, revision)]
    sent = [message_event(MessageAdded, message, revision)]
    if message.system_event in MEMBERSHIP_EVENTS:
        membership = MemberJoined if message.system_event in _JOINS else MemberLeft
        sent.append(
            membership(
                chat_id=str(message.chat_id),
                user=message.subject,
                member_count=member_count,
                revision=revision,
            )
        )
    return sent


def chat_event(event: str, data: dict[str, Any], viewer: models.User) -> Any:
    """The typed event for an ephemeral chat-group payload (typing, receipts, presence);
    changes to the timeline go through `change_events`, in revision order."""
    if event == "typing_changed":
        expires = (
            timezone.now() + timedelta(seconds=data["expires_in"]) if data["typing"] else None
        )
        return TypingChanged(
            chat_id=data["chat_id"],
            user=user_from(data["user"], viewer),
            typing=data["typing"],
            expires_at=expires,
        )
    if event == "read_up_to":
        return ReadUpTo(
            chat_id=data["chat_id"], user=user_from(data["user"], viewer), seq=data["seq"]
        )
    if event == "presence_changed":
        return PresenceChanged(user=user_from(data["user"], viewer), online=data["online"])
    if event == "chat_updated":
        return ChatUpdated(chat=chat_from(data))
    if event == "reaction_changed":
        return ReactionChanged(
            chat_id=data["chat_id"],
            message_id=data["message_id"],
            seq=data["seq"],
            emoji=data["emoji"],
            count=data["count"],
            added=data["added"],
            user=user_from(data["user"], viewer),
        )
    return None
