"""Pinning messages to the top of a chat."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import ratelimit
from chat.error_codes import ChatErrorCode, MessageErrorCode
from chat.exceptions import Forbidden, field_error
from chat.models import Chat, Membership, Message, User
from chat.services.chats import check_writable, lock_chat, system_message
from chat.services.messages import visible_message
from chat.services.rooms import MANAGERS


def _pinnable(user: User, message_id: object) -> tuple[Message, Chat]:
    """The message and its locked chat, when the user may pin in it: any member of a
    direct chat, the owner and admins of a room (`admin_only`)."""
    message = visible_message(user=user, message_id=message_id)
    if message.is_deleted or message.kind == Message.Kind.SYSTEM:
        raise field_error(
            "message_id",
            "Deleted and system messages cannot be pinned.",
            MessageErrorCode.CANNOT_PIN,
        )
    chat = lock_chat(message.chat_id)
    check_writable(chat)
    if chat.kind == Chat.Kind.GROUP:
        role = Membership.objects.filter(chat=chat, user=user).values_list("role", flat=True)
        if role.first() not in MANAGERS:
            raise Forbidden(
                "Only the room's owner and admins can pin.", code=ChatErrorCode.ADMIN_ONLY
            )
    return message, chat


@transaction.atomic
def pin_message(*, user: User, message_id: object) -> Message:
    """Pin a message to its chat, recorded by a SYSTEM message quoting it (which members
    hear live). Pinning a pinned message changes nothing; a chat holds at most `PIN_MAX`."""
    message, chat = _pinnable(user, message_id)
    ratelimit.hit("edit", user)
    if message.pinned_at is None:
        pinned = Message.objects.filter(chat=chat, pinned_at__isnull=False).count()
        if pinned >= settings.PIN_MAX:
            raise field_error(
                "message_id",
                f"A chat can have at most {settings.PIN_MAX} pinned messages.",
                MessageErrorCode.TOO_MANY_PINS,
            )
        message.pinned_at, message.pinned_by = timezone.now(), user
        message.save(update_fields=["pinned_at", "pinned_by"])
        system_message(chat, Message.SystemEvent.MESSAGE_PINNED, user, reply_to=message)
    return message


@transaction.atomic
def unpin_message(*, user: User, message_id: object) -> Message:
    """Unpin a message, recorded like a pin. Harmless when it is not pinned."""
    message, chat = _pinnable(user, message_id)
    ratelimit.hit("edit", user)
    if message.pinned_at is not None:
        message.pinned_at = message.pinned_by = None
        message.save(update_fields=["pinned_at", "pinned_by"])
        system_message(chat, Message.SystemEvent.MESSAGE_UNPINNED, user, reply_to=message)
    return message
