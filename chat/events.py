"""The one place that talks to the channel layer.

Services call `publish_on_commit` while their transaction is open; the event is sent only
once it commits, so a subscriber never hears of a row it cannot read, and a rolled-back
write broadcasts nothing. Payloads are plain msgpack-safe dicts (strings, numbers, lists)
carrying everything a subscriber renders, so delivering one runs no query.
"""

import asyncio
import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

from chat import metrics, tokencache
from chat.models import Attachment, Chat, Message, User

logger = logging.getLogger(__name__)

# The channel-layer message type every event travels as; subscriptions listen for it.
EVENT_MESSAGE_TYPE = "chat.event"


def _hex(value: uuid.UUID | str) -> str:
    return value.hex if isinstance(value, uuid.UUID) else uuid.UUID(value).hex


def user_group(user_id: uuid.UUID | str) -> str:
    """A user's own events: chats gained and lost, profile changes."""
    return f"user.{_hex(user_id)}"


def session_group(user_id: uuid.UUID) -> str:
    """Every authenticated socket of a user, whatever it subscribes to: told when the
    user's tokens are revoked."""
    return f"session.{user_id.hex}"


def chat_group(chat_id: uuid.UUID | str) -> str:
    return f"chat.{_hex(chat_id)}"


def user_payload(user: User | None) -> dict[str, Any] | None:
    """The public fields of a user, as events carry them."""
    if user is None:
        return None
    return {
        "id": str(user.id),
        "display_name": user.display_name,
        "joined_at": user.date_joined.isoformat(),
        # Storage names: each subscriber's rendering turns them into signed URLs.
        "avatar": user.avatar.name or None,
        "avatar_thumbnail": user.avatar_thumbnail.name or None,
    }


def attachment_payload(attachment: Attachment | None) -> dict[str, Any] | None:
    if attachment is None:
        return None
    return {
        "id": str(attachment.id),
        "file": attachment.file.name,
        "thumbnail": attachment.thumbnail.name or None,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
    }


QUOTE_LENGTH = 200


def quote_payload(message: Message | None) -> dict[str, Any] | None:
    """What a reply shows of the message it answers: enough to draw the quote."""
    if message is None:
        return None
    return {
        "id": str(message.id),
        "seq": message.seq,
        "author": user_payload(message.author),
        "body": message.body[:QUOTE_LENGTH],
        "kind": message.kind,
        "deleted": message.deleted_at is not None,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def message_payload(
    message: Message, *, revision: int | None = None, member_count: int | None = None
) -> dict[str, Any]:
    """Everything a client renders for a message. Call with `author`, `subject` and
    `attachment` loaded (`selectors.MESSAGE_RELATED`).
    `revision` is the change the event reports; `member_count` the chat's, after a join or
    leave (a SYSTEM message)."""
    return {
        "revision": revision,
        "member_count": member_count,
        "id": str(message.id),
        "chat_id": str(message.chat_id),
        "seq": message.seq,
        "kind": message.kind,
        "body": message.body,
        "author": user_payload(message.author),
        "system_event": message.system_event,
        "subject": user_payload(message.subject),
        "client_id": message.client_id,
        "attachment": attachment_payload(message.attachment),
        "reply_to": quote_payload(message.reply_to),
        # Only when known without a query (sends and edits set it): readers fall back.
        **(
            {"mentions": [user_payload(u) for u in message.mentioned]}
            if hasattr(message, "mentioned")
            else {}
        ),
        "latitude": message.latitude,
        "longitude": message.longitude,
        "location_label": message.location_label,
        "created_at": _iso(message.created_at),
        "edited_at": _iso(message.edited_at),
        "deleted_at": _iso(message.deleted_at),
    }


def chat_payload(chat: Chat) -> dict[str, Any]:
    return {
        "id": str(chat.id),
        "kind": chat.kind,
        "name": chat.name,
        "topic": chat.topic,
        "is_public": chat.is_public,
        "last_seq": chat.last_seq,
        "member_count": chat.member_count,
        "slug": chat.slug,
        "archived_at": _iso(chat.archived_at),
    }


def _message(group: str, event: str, data: dict[str, Any]) -> dict[str, Any]:
    # `group` travels with the event: a socket in several groups hears every one of them
    # on one queue, and a subscription keeps only what was sent to its own group.
    return {"type": EVENT_MESSAGE_TYPE, "group": group, "event": event, "data": data}


def publish_on_commit(group: str, event: str, data: dict[str, Any]) -> None:
    """Send `event` with `data` to `group` after the current transaction commits."""
    message = _message(group, event, data)
    transaction.on_commit(lambda: _send(group, message), robust=True)


async def round_trip(layer: Any, channel: str | None = None) -> None:
    """Send to a channel and hear it back: proof that the layer works both ways. Listens
    first and sends until it hears itself: on Redis pub/sub a message sent before the
    subscription is in place is simply lost. Bound it with a timeout."""
    channel = channel or await layer.new_channel("probe.")
    nonce = uuid.uuid4().hex

    async def hear() -> None:
        # Only this probe's own message counts: an earlier probe's may still be queued.
        while (await layer.receive(channel)).get("nonce") != nonce:
            pass

    heard = asyncio.ensure_future(hear())
    try:
        await send_until_heard(layer, channel, nonce, heard)
        heard.result()
    finally:
        heard.cancel()


async def send_until_heard(layer: Any, channel: str, nonce: str, heard: asyncio.Future) -> None:
    """Send a probe with `nonce` to `channel` every 0.2 s until `heard` is done: one sent
    before the channel's subscription is in place is lost on Redis pub/sub."""
    while not heard.done():
        await layer.send(channel, {"type": "probe.ping", "nonce": nonce})
        await asyncio.wait({heard}, timeout=0.2)


async def publish_now(group: str, event: str, data: dict[str, Any]) -> None:
    """Send an ephemeral event (typing, presence) that no database write stands behind."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, _message(group, event, data))


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except (RedisError, OSError) as error:
        metrics.LAYER_ERRORS.labels("publish").inc()
        # The write has committed; subscribers replay it from the database (a revision
        # gap, or their process's resync once the layer is back). An outage, not a bug.
        logger.warning(
            "Could not publish %s to %s: %s", message.get("event", message["type"]), group, error
        )
    except Exception:
        logger.exception(
            "Could not publish %s to %s", message.get("event", message["type"]), group
        )


def profile_updated(user: User) -> None:
    publish_on_commit(user_group(user.id), "profile_updated", user_payload(user))


def message_added(message: Message, *, revision: int, member_count: int) -> None:
    """To the chat's group only: chat screens (`chatEvents`) and inboxes (`inbox`) both
    listen there, so a message costs one send whatever the number of members. A join or
    leave is a SYSTEM message: chat screens hear of it this way."""
    data = message_payload(
        message,
        revision=revision,
        member_count=member_count if message.kind == Message.Kind.SYSTEM else None,
    )
    publish_on_commit(chat_group(message.chat_id), "message_added", data)


def message_changed(message: Message, event: str, *, revision: int) -> None:
    """`message_edited` or `message_deleted`, to the chat's subscribers."""
    data = message_payload(message, revision=revision)
    publish_on_commit(chat_group(message.chat_id), event, data)


def membership_changed(chat: Chat, user: User, event: str, *, seq: int) -> None:
    """`member_joined` or `member_left`, to the user's inbox: their chat list gains or
    loses the chat. `seq` is the SYSTEM message that records it, which the chat's own
    subscribers hear as a new message."""
    data = {"chat": chat_payload(chat), "user": user_payload(user), "seq": seq}
    publish_on_commit(user_group(user.id), event, data)


def chat_created(chat: Chat, member_ids: list) -> None:
    for member_id in member_ids:
        publish_on_commit(user_group(member_id), "chat_created", chat_payload(chat))


def chat_updated(chat: Chat) -> None:
    """A room's settings changed (renamed, archived...): to the chat's subscribers."""
    publish_on_commit(chat_group(chat.id), "chat_updated", chat_payload(chat))


def reaction_changed(message: Message, user: User, emoji: str, *, count: int, added: bool) -> None:
    """Someone added or took back an emoji on a message; `count` is how many now have it."""
    data = {
        "chat_id": str(message.chat_id),
        "message_id": str(message.id),
        "seq": message.seq,
        "emoji": emoji,
        "count": count,
        "added": added,
        "user": user_payload(user),
    }
    publish_on_commit(chat_group(message.chat_id), "reaction_changed", data)


def mentioned(message: Message, user_ids: list) -> None:
    """To each mentioned member's own group: their inbox hears `Mentioned`, in a room of
    any size."""
    data = message_payload(message)
    for user_id in user_ids:
        publish_on_commit(user_group(user_id), "mentioned", data)


def read_up_to(chat: Chat, user: User, seq: int) -> None:
    data = {"chat_id": str(chat.id), "user": user_payload(user), "seq": seq}
    publish_on_commit(chat_group(chat.id), "read_up_to", data)


# The channel-layer type a consumer handles itself (closing sockets), not a subscription.
SESSION_MESSAGE_TYPE = "chat.session"


def tokens_revoked(user: User, *, token_ids: list | None, keep: object | None = None) -> None:
    """Close the user's sockets signed in with `token_ids` (all of them when None, except
    `keep`'s), after commit."""
    message = {
        "type": SESSION_MESSAGE_TYPE,
        "token_ids": None if token_ids is None else [str(t) for t in token_ids],
        "keep": str(keep) if keep is not None else None,
    }
    transaction.on_commit(lambda: _send(session_group(user.id), message), robust=True)
    sessions_changed(user.id)


# Every process listens here, whatever sockets it has: a user's sign-ins may have changed,
# so their tokens are checked against the database again (`chat.tokencache`).
SESSIONS_CHANGED_GROUP = "sessions.changed"


def sessions_changed(user_id: uuid.UUID) -> None:
    """After commit: this process and every other one forget the user's cached tokens.
    Once per transaction and user: a password change both saves the user and revokes
    their tokens, and each would tell every process."""
    pending = transaction.get_connection().run_on_commit
    if any(getattr(callback, "forgets", None) == user_id for _, callback, _ in pending):
        return

    def send() -> None:
        tokencache.forget_user(user_id)
        _send(SESSIONS_CHANGED_GROUP, {"type": SESSION_MESSAGE_TYPE, "user_id": str(user_id)})

    send.forgets = user_id  # type: ignore[attr-defined]
    transaction.on_commit(send, robust=True)


async def presence_changed(user: User, *, online: bool, chat_ids: list) -> None:
    """To every chat the user is in (one group each): only on the first connection and
    after the last, not per tab."""
    data = {"user": user_payload(user), "online": online}
    for chat_id in chat_ids:
        await publish_now(chat_group(chat_id), "presence_changed", data)


async def typing_changed(
    chat_id: uuid.UUID, user: User, *, typing: bool, expires_in: float
) -> None:
    data = {
        "chat_id": str(chat_id),
        "user": user_payload(user),
        "typing": typing,
        "expires_in": expires_in,
    }
    await publish_now(chat_group(chat_id), "typing_changed", data)
