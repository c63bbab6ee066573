"""Who a new message notifies, and what the notification says."""

import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from chat.models import Chat, Device, Membership, Message

KIND_PREVIEWS = {
    Message.Kind.IMAGE: "Photo",
    Message.Kind.FILE: "File",
    Message.Kind.LOCATION: "Location",
}
_SPACE = re.compile(r"\s+")


def recipients(
    *, chat_id: object, seq: int, author_id: object, sent_at: datetime, message_id: object
) -> QuerySet[Device]:
    """The active devices of the chat's members who should hear of message `seq`: everyone
    but its author who has been offline since before it was sent (`last_seen_at`: see
    `chat.presence`; anyone online since then had it on screen or replayed it on
    connecting), has not muted the chat (unless it mentions them), has not read this far,
    and does not block the author. One query, whatever
    the number of members; asked again before each delivery attempt, so a member who has
    since come online, read or muted is not notified."""
    now = timezone.now()
    listening = (
        Membership.objects.filter(chat_id=chat_id, last_read_seq__lt=seq)
        .filter(
            Q(muted_until__isnull=True)
            | Q(muted_until__lte=now)
            | Q(user__mentions__message_id=message_id)
        )
        .exclude(user_id=author_id)
        # Nobody is buzzed by someone they block.
        .exclude(user__blocks__blocked_id=author_id)
        .values("user_id")
    )
    return Device.objects.filter(
        is_active=True,
        user__in=listening,
        user__is_active=True,
        user__last_seen_at__lt=sent_at,
    ).order_by("pk")


def preview(message: Message) -> str:
    """The text shown under the title: the start of a text message, or only what kind of
    message it is for a photo, a file or a location."""
    if message.kind in KIND_PREVIEWS:
        return KIND_PREVIEWS[message.kind]
    text = _SPACE.sub(" ", message.body).strip()
    limit = settings.PUSH_PREVIEW_LENGTH
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def render(message: Message, chat: Chat) -> dict[str, Any]:
    """The notification, the same for every device: the title and body a service worker
    or the OS shows, and the ids an app needs to open the chat at the message."""
    sender = message.author.display_name if message.author else ""
    text = preview(message)
    is_room = chat.kind == Chat.Kind.GROUP
    return {
        "type": "MESSAGE",
        "title": chat.name if is_room else sender,
        "body": f"{sender}: {text}" if is_room else text,
        "chatId": str(chat.id),
        "chatKind": chat.kind,
        "chatName": chat.name,
        "messageId": str(message.id),
        "seq": message.seq,
        "kind": message.kind,
        "senderId": str(message.author_id),
        "senderName": sender,
        "preview": text,
        "sentAt": message.created_at.isoformat(),
        # Notifications with the same tag replace each other on the screen.
        "tag": chat.id.hex,
    }


def fan_out(message_id: str) -> dict[str, int]:
    """Queue deliveries of the message's notification to every device that should get it,
    `PUSH_BATCH_SIZE` devices per task. A message deleted before this runs notifies
    nobody."""
    from chat.tasks import deliver

    message = (
        Message.objects.select_related("author", "chat")
        .filter(pk=message_id, deleted_at__isnull=True)
        .first()
    )
    if message is None or message.kind == Message.Kind.SYSTEM:
        return {"devices": 0, "batches": 0}
    notification = render(message, message.chat)
    devices = recipients(
        chat_id=message.chat_id,
        seq=message.seq,
        author_id=message.author_id,
        sent_at=message.created_at,
        message_id=message.id,
    )
    device_ids = [str(pk) for pk in devices.values_list("pk", flat=True)]
    size = settings.PUSH_BATCH_SIZE
    batches = [device_ids[i : i + size] for i in range(0, len(device_ids), size)]
    for batch in batches:
        deliver.enqueue(notification, batch, 1)
    return {"devices": len(device_ids), "batches": len(batches)}
