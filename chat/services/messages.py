"""Sending, editing, deleting and reading messages."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import events, ratelimit
from chat.error_codes import ChatErrorCode, MessageErrorCode
from chat.exceptions import Forbidden
from chat.models import Change, Membership, Message, User
from chat.selectors import find_membership, parse_id
from chat.services.chats import append_message, lock_chat, record_change

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _error(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _clean_body(body: str) -> str:
    body = body.strip()
    if not body:
        raise _error("body", "A message cannot be empty.", MessageErrorCode.MESSAGE_EMPTY)
    limit = settings.MESSAGE_MAX_LENGTH
    if len(body) > limit:
        raise _error(
            "body",
            f"A message can be at most {limit} characters.",
            MessageErrorCode.MESSAGE_TOO_LONG,
        )
    return body


def _retried(author: User, client_id: str | None, chat_id: object) -> Message | None:
    """The message an earlier attempt with this `client_id` wrote, if any."""
    if client_id is None:
        return None
    message = (
        Message.objects.select_related("author", "subject")
        .filter(author=author, client_id=client_id)
        .first()
    )
    if message is not None and message.chat_id != parse_id(chat_id):
        raise _error(
            "client_id",
            "This clientId was already used for another chat.",
            MessageErrorCode.CLIENT_ID_REUSED,
        )
    return message


def send_message(
    *, author: User, chat_id: object, body: str, client_id: str | None = None
) -> Message:
    """Append a text message to a chat the author is in and publish it on commit.

    Idempotent on `(author, client_id)`: a retry returns the original message and writes
    and publishes nothing. Raises `ValidationError` (chatId, body, clientId) and
    `RateLimited` (a burst, then a steady rate per user).
    """
    if client_id is not None and not CLIENT_ID.match(client_id):
        raise _error(
            "client_id",
            "clientId must be 1 to 64 letters, digits or . _ : -",
            MessageErrorCode.INVALID_CLIENT_ID,
        )
    body = _clean_body(body)
    if (earlier := _retried(author, client_id, chat_id)) is not None:
        return earlier
    if not Membership.objects.filter(chat_id=parse_id(chat_id), user=author).exists():
        raise _error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
    ratelimit.hit("send", author)
    try:
        with transaction.atomic():
            chat = lock_chat(chat_id, memberships__user=author)
            # Checked again under the lock: a concurrent retry may have just committed.
            if (earlier := _retried(author, client_id, chat_id)) is not None:
                return earlier
            message = append_message(
                chat, author=author, kind=Message.Kind.TEXT, body=body, client_id=client_id
            )
    except IntegrityError:  # the same clientId, sent to another chat at the same moment
        if (earlier := _retried(author, client_id, chat_id)) is not None:
            return earlier
        raise
    return message


def _own_message(*, user: User, message_id: object) -> Message:
    """A message in a chat the user is in, written by them. `not_found` when the user
    cannot see it; `not_author` (PERMISSION) when they can but did not write it."""
    pk = parse_id(message_id)
    message = (
        Message.objects.select_related("author", "subject")
        .filter(pk=pk, chat__memberships__user=user)
        .first()
        if pk
        else None
    )
    if message is None:
        raise _error("message_id", "Message not found.", ChatErrorCode.NOT_FOUND)
    if message.author_id != user.pk:
        raise Forbidden("Only the author can change a message.", code=MessageErrorCode.NOT_AUTHOR)
    return message


@transaction.atomic
def edit_message(*, user: User, message_id: object, body: str) -> Message:
    message = _own_message(user=user, message_id=message_id)
    if message.is_deleted:
        raise _error(
            "message_id", "A deleted message cannot be edited.", MessageErrorCode.MESSAGE_DELETED
        )
    if message.kind != Message.Kind.TEXT:
        raise _error(
            "message_id", "Only text messages can be edited.", MessageErrorCode.NOT_EDITABLE
        )
    message.body = _clean_body(body)
    ratelimit.hit("edit", user)
    chat = lock_chat(message.chat_id)
    message.edited_at = timezone.now()
    message.save(update_fields=["body", "edited_at"])
    revision = record_change(chat, message, Change.Kind.EDITED)
    events.message_changed(message, "message_edited", revision=revision)
    return message


@transaction.atomic
def delete_message(*, user: User, message_id: object) -> Message:
    """Soft delete: the message keeps its place in the timeline, its body is gone.
    Deleting a deleted message changes nothing."""
    message = _own_message(user=user, message_id=message_id)
    ratelimit.hit("edit", user)
    return _soft_delete(message)


@transaction.atomic
def mark_read(*, user: User, chat_id: object, seq: int) -> Membership:
    """Move the user's read marker forward to `seq` (capped at the newest message); it
    never moves back. Publishes `read_up_to` when it moved."""
    if seq < 0:
        raise _error("seq", "seq cannot be negative.", MessageErrorCode.INVALID_SEQ)
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise _error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
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


def _soft_delete(message: Message) -> Message:
    """Precondition: in a transaction (it takes the chat's row lock)."""
    chat = lock_chat(message.chat_id)
    message.refresh_from_db(fields=["deleted_at"])  # a concurrent delete may have won
    if not message.is_deleted:
        message.body = ""
        message.deleted_at = timezone.now()
        message.save(update_fields=["body", "deleted_at"])
        revision = record_change(chat, message, Change.Kind.DELETED)
        events.message_changed(message, "message_deleted", revision=revision)
    return message
