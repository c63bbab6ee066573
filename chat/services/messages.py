"""Sending, editing, deleting and reading messages."""

import functools
import math
import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import events, media, metrics, ratelimit, rows, storage
from chat.error_codes import ChatErrorCode, MessageErrorCode
from chat.exceptions import Forbidden, field_error
from chat.models import (
    Attachment,
    Change,
    Chat,
    Membership,
    Mention,
    Message,
    MessageEdit,
    Reaction,
    User,
)
from chat.selectors import MESSAGE_RELATED, blocked_in_chat, find_membership, parse_id
from chat.services.chats import (
    append_message,
    check_writable,
    lock_chat,
    lock_chat_of,
    record_change,
)

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LOCATION_LABEL_MAX = 200
# Kinds whose text (the body, or an attachment's caption) the author may edit.
EDITABLE = frozenset({Message.Kind.TEXT, Message.Kind.IMAGE, Message.Kind.FILE})


def _clean_text(text: str) -> str:
    return text.strip()


def _clean_caption(caption: str | None) -> str:
    """An attachment's caption: optional, otherwise a message body's rules."""
    caption = _clean_text(caption or "")
    limit = settings.MESSAGE_MAX_LENGTH
    if len(caption) > limit:
        raise field_error(
            "caption",
            f"A caption can be at most {limit} characters.",
            MessageErrorCode.CAPTION_TOO_LONG,
        )
    return caption


def _clean_body(body: str) -> str:
    body = _clean_text(body)
    if not body:
        raise field_error("body", "A message cannot be empty.", MessageErrorCode.MESSAGE_EMPTY)
    limit = settings.MESSAGE_MAX_LENGTH
    if len(body) > limit:
        raise field_error(
            "body",
            f"A message can be at most {limit} characters.",
            MessageErrorCode.MESSAGE_TOO_LONG,
        )
    return body


@functools.cache
def _retry_lookup() -> str:
    # The chat is compared in SQL, where both sides are the column's type: read back, a
    # UUID is text on SQLite and would need the ORM's converters to compare in Python.
    return rows.sql(
        "SELECT {Message.id}, {Message.chat} = %s FROM {Message} "
        "WHERE {Message.author} = %s AND {Message.client_id} = %s",
        Message=Message,
    )


def _retried(author: User, client_id: str | None, chat_id: object) -> Message | None:
    """The message an earlier attempt with this `client_id` wrote, if any. Asked twice per
    send with a `clientId` (before the send limit, and under the lock) and almost always
    answered "none", so that answer is plain SQL; a retry loads its message."""
    if client_id is None:
        return None
    chat_pk = parse_id(chat_id)
    params = [
        rows.param(Message, "chat", chat_pk) if chat_pk else None,
        rows.param(Message, "author", author.pk),
        client_id,
    ]
    row = rows.fetch_one(_retry_lookup(), params)
    if row is None:
        return None
    pk, same_chat = row
    if not same_chat:
        raise field_error(
            "client_id",
            "This clientId was already used for another chat.",
            MessageErrorCode.CLIENT_ID_REUSED,
        )
    return Message.objects.select_related(*MESSAGE_RELATED).get(pk=pk)


def _check_client_id(client_id: str | None) -> None:
    if client_id is not None and not CLIENT_ID.match(client_id):
        raise field_error(
            "client_id",
            "clientId must be 1 to 64 letters, digits or . _ : -",
            MessageErrorCode.INVALID_CLIENT_ID,
        )


def _check_member(author: User, chat_id: object) -> None:
    """The author is in the chat and it takes messages: early, before a file is decoded
    (checked again under the chat's lock)."""
    membership = (
        Membership.objects.filter(chat_id=parse_id(chat_id), user=author)
        .select_related("chat")
        .only("chat__archived_at", "chat__kind")
        .first()
    )
    if membership is None:
        raise field_error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
    check_writable(membership.chat)
    if membership.chat.kind == Chat.Kind.DIRECT:
        _check_not_blocked(author, membership.chat)


def _check_not_blocked(author: User, chat: Chat) -> None:
    if blocked_in_chat(user=author, chat_id=chat.pk):
        raise field_error(
            "chat_id", "You cannot message this user.", ChatErrorCode.CANNOT_MESSAGE_USER
        )


def _reply_target(chat_id: object, reply_to_id: object | None) -> Message | None:
    """The message a new one answers: in the same chat, not deleted, not SYSTEM."""
    if reply_to_id is None:
        return None
    pk, chat_pk = parse_id(reply_to_id), parse_id(chat_id)
    target = (
        Message.objects.select_related("author").filter(pk=pk, chat_id=chat_pk).first()
        if pk and chat_pk
        else None
    )
    if target is None:
        raise field_error(
            "reply_to_id", "No such message in this chat.", MessageErrorCode.REPLY_NOT_FOUND
        )
    if target.is_deleted or target.kind == Message.Kind.SYSTEM:
        raise field_error(
            "reply_to_id",
            "Deleted and system messages cannot be replied to.",
            MessageErrorCode.CANNOT_REPLY,
        )
    return target


def _mentioned(author: User, chat_id: object, mentions: list[object] | None) -> list[User]:
    """The members a message mentions: each must be in the chat (`mention_not_member`);
    the author and repeats are dropped, at most `MENTION_MAX`."""
    if not mentions:
        return []
    pks = list(dict.fromkeys(parse_id(value) for value in mentions))
    if len(pks) > settings.MENTION_MAX:
        raise field_error(
            "mentions",
            f"A message can mention at most {settings.MENTION_MAX} members.",
            MessageErrorCode.TOO_MANY_MENTIONS,
        )
    members = {
        m.user_id: m.user
        for m in Membership.objects.filter(
            chat_id=parse_id(chat_id), user_id__in=[pk for pk in pks if pk]
        ).select_related("user")
    }
    if None in pks or len(members) != len(pks):
        raise field_error(
            "mentions",
            "Only members of this chat can be mentioned.",
            MessageErrorCode.MENTION_NOT_MEMBER,
        )
    return [members[pk] for pk in pks if pk != author.pk]


def append_once(
    *,
    author: User,
    chat_id: object,
    client_id: str | None,
    kind: str,
    reply_to_id: object | None = None,
    mentions: list[object] | None = None,
    **content: object,
) -> tuple[Message, bool]:
    """The author's message with `client_id` if one was already written, else a new one
    appended under the chat's lock (and published on commit); True when new. `content`
    is the message's fields (`body`, `attachment`, `latitude`...); an unsaved
    `attachment` is saved with it, in the same transaction.

    Under the lock, before anything about the chat is revealed: the author is a member,
    the chat takes messages and no block stands between a direct chat's two members.
    Then the reply (`reply_to_id`) and the mentions are resolved in the chat.
    """
    try:
        with transaction.atomic():
            chat = lock_chat_of(author, chat_id)
            check_writable(chat)
            if chat.kind == Chat.Kind.DIRECT:
                _check_not_blocked(author, chat)
            # Checked again under the lock: a concurrent retry may have just committed.
            if (earlier := _retried(author, client_id, chat_id)) is not None:
                return earlier, False
            if reply_to_id is not None:
                content["reply_to"] = _reply_target(chat.pk, reply_to_id)
            attachment = content.get("attachment")
            if isinstance(attachment, Attachment):
                attachment.save()
            message = append_message(
                chat,
                author=author,
                kind=kind,
                client_id=client_id,
                mentions=_mentioned(author, chat.pk, mentions),
                **content,
            )
            return message, True
    except IntegrityError:  # the same clientId, sent to another chat at the same moment
        if (earlier := _retried(author, client_id, chat_id)) is not None:
            return earlier, False
        raise


def send_message(
    *,
    author: User,
    chat_id: object,
    body: str,
    client_id: str | None = None,
    reply_to_id: object | None = None,
    mentions: list[object] | None = None,
) -> Message:
    """Append a text message to a chat the author is in and publish it on commit.

    Idempotent on `(author, client_id)`: a retry returns the original message and writes
    and publishes nothing. Raises `ValidationError` (chatId, body, clientId) and
    `RateLimited` (a burst, then a steady rate per user). `reply_to_id` quotes a message
    of the same chat (`reply_not_found`, `cannot_reply`); `mentions` are members
    (`mention_not_member`).
    """
    _check_client_id(client_id)
    body = _clean_body(body)
    return _send(
        author=author,
        chat_id=chat_id,
        client_id=client_id,
        reply_to_id=reply_to_id,
        mentions=mentions,
        kind=Message.Kind.TEXT,
        body=body,
    )


def _send(
    *,
    author: User,
    chat_id: object,
    client_id: str | None,
    reply_to_id: object | None,
    mentions: list[object] | None = None,
    **content: object,
) -> Message:
    """What every synchronous send does once its own input is clean: return the original
    for a retry, spend the send limit, append (`append_once` checks membership, the reply
    and the mentions under the chat's lock)."""
    with metrics.SEND_SECONDS.time():
        return _checked_send(
            author=author,
            chat_id=chat_id,
            client_id=client_id,
            reply_to_id=reply_to_id,
            mentions=mentions,
            **content,
        )


def _checked_send(
    *,
    author: User,
    chat_id: object,
    client_id: str | None,
    reply_to_id: object | None,
    mentions: list[object] | None,
    **content: object,
) -> Message:
    if (earlier := _retried(author, client_id, chat_id)) is not None:
        return earlier
    ratelimit.hit("send", author)
    message, _ = append_once(
        author=author,
        chat_id=chat_id,
        client_id=client_id,
        reply_to_id=reply_to_id,
        mentions=mentions,
        **content,
    )
    return message


async def send_attachment(
    *,
    author: User,
    chat_id: object,
    upload: object,
    caption: str = "",
    client_id: str | None = None,
    reply_to_id: object | None = None,
) -> Message:
    """Send a file: an IMAGE when its bytes decode as one (re-encoded without metadata,
    with a thumbnail), else a FILE, stored as uploaded and served only as a download.

    Idempotent on `(author, client_id)` like `send_message`, and nothing is stored for a
    retry or a refusal. Every check and both limits come before the file is decoded, which
    runs in a worker thread (`media.in_worker`), not on the thread Django's synchronous
    code shares. Raises `ValidationError` (chatId, file, caption, clientId, replyToId)
    and `RateLimited` (the send and the upload limits).
    """
    checked = await sync_to_async(_check_attachment)(
        author, chat_id, client_id, caption, reply_to_id
    )
    if isinstance(checked, Message):
        return checked
    inspected = await media.in_worker(media.inspect_upload, upload)
    return await sync_to_async(_append_attachment)(
        author, chat_id, client_id, *checked, upload, inspected
    )


def _check_attachment(
    author: User,
    chat_id: object,
    client_id: str | None,
    caption: str,
    reply_to_id: object | None,
) -> Message | tuple[str, Message | None]:
    """The earlier message when this is a retry, else the cleaned caption and the message
    replied to, once the send and upload limits are spent."""
    _check_client_id(client_id)
    caption = _clean_caption(caption)
    if (earlier := _retried(author, client_id, chat_id)) is not None:
        return earlier
    _check_member(author, chat_id)
    reply_to = _reply_target(chat_id, reply_to_id)
    ratelimit.hit("send", author)
    ratelimit.hit("upload", author)
    return caption, reply_to


def _append_attachment(
    author: User,
    chat_id: object,
    client_id: str | None,
    caption: str,
    reply_to: Message | None,
    upload: object,
    inspected: media.Inspected,
) -> Message:
    with storage.saving() as saved:
        if inspected.image is not None:
            name = saved.rendition(storage.ATTACHMENTS, inspected.image)
            width, height = inspected.image.width, inspected.image.height
        else:
            name = saved.upload(storage.ATTACHMENTS, upload, inspected.extension)
            width = height = None
        thumbnail = inspected.thumbnail
        attachment = Attachment(
            file=name,
            thumbnail=saved.rendition(storage.ATTACHMENTS, thumbnail, thumbnail=True)
            if thumbnail
            else "",
            name=inspected.name,
            content_type=inspected.content_type,
            size=inspected.size,
            width=width,
            height=height,
            uploaded_by=author,
        )
        message, created = append_once(
            author=author,
            chat_id=chat_id,
            client_id=client_id,
            kind=Message.Kind.IMAGE if inspected.is_image else Message.Kind.FILE,
            body=caption,
            attachment=attachment,
            reply_to=reply_to,
        )
        if not created:  # a retry that raced its original: keep the original's files
            storage.delete(saved.names)
    return message


def send_location(
    *,
    author: User,
    chat_id: object,
    latitude: float,
    longitude: float,
    label: str = "",
    client_id: str | None = None,
    reply_to_id: object | None = None,
) -> Message:
    """Send a point on the map (WGS 84 degrees) with an optional label, like a message:
    idempotent on `(author, client_id)`, limited as sends are. Raises `ValidationError`
    (chatId, latitude, longitude, label, clientId) and `RateLimited`."""
    _check_client_id(client_id)
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise field_error(
            "latitude", "latitude must be between -90 and 90.", MessageErrorCode.INVALID_LATITUDE
        )
    if not (math.isfinite(longitude) and -180 <= longitude <= 180):
        raise field_error(
            "longitude",
            "longitude must be between -180 and 180.",
            MessageErrorCode.INVALID_LONGITUDE,
        )
    label = _clean_text(label)
    if len(label) > LOCATION_LABEL_MAX:
        raise field_error(
            "label",
            f"A label can be at most {LOCATION_LABEL_MAX} characters.",
            MessageErrorCode.LABEL_TOO_LONG,
        )
    return _send(
        author=author,
        chat_id=chat_id,
        client_id=client_id,
        reply_to_id=reply_to_id,
        kind=Message.Kind.LOCATION,
        latitude=latitude,
        longitude=longitude,
        location_label=label,
    )


def visible_message(*, user: User, message_id: object) -> Message:
    """A message in a chat the user is in; `not_found` otherwise."""
    pk = parse_id(message_id)
    message = (
        Message.objects.select_related(*MESSAGE_RELATED)
        .filter(pk=pk, chat__memberships__user=user)
        .first()
        if pk
        else None
    )
    if message is None:
        raise field_error("message_id", "Message not found.", ChatErrorCode.NOT_FOUND)
    return message


def _own_message(*, user: User, message_id: object) -> Message:
    """A message in a chat the user is in, written by them. `not_found` when the user
    cannot see it; `not_author` (PERMISSION) when they can but did not write it."""
    message = visible_message(user=user, message_id=message_id)
    if message.author_id != user.pk:
        raise Forbidden("Only the author can change a message.", code=MessageErrorCode.NOT_AUTHOR)
    return message


@transaction.atomic
def edit_message(*, user: User, message_id: object, body: str) -> Message:
    message = _own_message(user=user, message_id=message_id)
    if message.is_deleted:
        raise field_error(
            "message_id", "A deleted message cannot be edited.", MessageErrorCode.MESSAGE_DELETED
        )
    if message.kind not in EDITABLE:
        raise field_error(
            "message_id",
            "Only text and the captions of photos and files can be edited.",
            MessageErrorCode.NOT_EDITABLE,
        )
    previous = message.body
    message.body = _clean_body(body) if message.kind == Message.Kind.TEXT else _clean_caption(body)
    ratelimit.hit("edit", user)
    chat = lock_chat(message.chat_id)
    check_writable(chat)
    message.edited_at = timezone.now()
    # What it said before, for `editHistory` (gone with the message if it is deleted).
    MessageEdit.objects.create(message=message, body=previous, edited_at=message.edited_at)
    message.save(update_fields=["body", "edited_at"])
    revision = record_change(chat, message, Change.Kind.EDITED)
    message.mentioned = list(User.objects.filter(mentions__message=message))
    events.message_changed(message, "message_edited", revision=revision)
    return message


@transaction.atomic
def delete_message(*, user: User, message_id: object) -> Message:
    """Soft delete: the message keeps its place in the timeline, its body is gone.
    Deleting a deleted message changes nothing. The author, or a room's owner and
    admins for anyone's message (`not_author` otherwise)."""
    message = visible_message(user=user, message_id=message_id)
    if message.author_id != user.pk and not _moderates(user, message):
        raise Forbidden(
            "Only the author, or a room's owner or admins, can delete a message.",
            code=MessageErrorCode.NOT_AUTHOR,
        )
    check_writable(lock_chat(message.chat_id))
    ratelimit.hit("edit", user)
    return _soft_delete(message)


@transaction.atomic
def mark_read(*, user: User, chat_id: object, seq: int) -> Membership:
    """Move the user's read marker forward to `seq` (capped at the newest message); it
    never moves back. Publishes `read_up_to` when it moved."""
    if seq < 0:
        raise field_error("seq", "seq cannot be negative.", MessageErrorCode.INVALID_SEQ)
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise field_error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
    ratelimit.hit("read", user)
    seq = min(seq, membership.chat.last_seq)
    moved = Membership.objects.filter(pk=membership.pk, last_read_seq__lt=seq).update(
        last_read_seq=seq
    )
    if moved:
        membership.last_read_seq = seq
        events.read_up_to(membership.chat, user, seq)
    else:
        membership.refresh_from_db(fields=["last_read_seq"])
    return membership


@transaction.atomic
def remove_message(*, message: Message) -> Message:
    """A moderator's delete: the same soft delete as the author's, published alike. Rows
    are never hard-deleted, which would leave a gap in the chat's seqs."""
    return _soft_delete(message)


def _moderates(user: User, message: Message) -> bool:
    return Membership.objects.filter(
        chat_id=message.chat_id,
        chat__kind=Chat.Kind.GROUP,
        user=user,
        role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
    ).exists()


def _soft_delete(message: Message) -> Message:
    """Precondition: in a transaction (it takes the chat's row lock)."""
    chat = lock_chat(message.chat_id)
    message.refresh_from_db(fields=["deleted_at"])  # a concurrent delete may have won
    if not message.is_deleted:
        attachment = message.attachment
        message.body = ""
        message.deleted_at = timezone.now()
        message.attachment = None
        message.latitude = message.longitude = None
        message.location_label = ""
        message.pinned_at = message.pinned_by = None  # a deleted message is unpinned
        message.save(
            update_fields=[
                "body",
                "deleted_at",
                "attachment",
                "latitude",
                "longitude",
                "location_label",
                "pinned_at",
                "pinned_by",
            ]
        )
        # A deleted message takes what it said before, its reactions and whom it
        # mentioned with it.
        MessageEdit.objects.filter(message=message).delete()
        Reaction.objects.filter(message=message).delete()
        Mention.objects.filter(message=message).delete()
        message.mentioned = []
        if attachment is not None:
            # A deleted photo must not stay downloadable, nor its name readable.
            attachment.delete()
            storage.delete_on_commit(attachment.file.name, attachment.thumbnail.name)
        revision = record_change(chat, message, Change.Kind.DELETED)
        events.message_changed(message, "message_deleted", revision=revision)
    return message
