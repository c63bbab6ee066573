"""Push notifications to members who are not connected.

The path of one notification:
1. `chat.services.chats.append_message` queues `chat.tasks.notify_message` in the
   message's own transaction (`queue`): a row in the task table, committed with the
   message or not at all, and no call to any push service on the request path.
2. The worker (`python manage.py db_worker`) runs it: `notify.fan_out` finds the devices to
   notify in one query, renders the notification once and queues `chat.tasks.deliver`
   for batches of devices.
3. `delivery.deliver` sends each batch through `webpush` or `fcm`, deactivates devices the
   push service says are gone, and queues a later attempt for those that can be retried.
"""

from django.conf import settings

from chat.models import Message


def configured() -> bool:
    """True when at least one push service is configured; otherwise nothing is queued."""
    return bool(settings.VAPID_PRIVATE_KEY or settings.FCM_CREDENTIALS)


def queue(message: Message) -> None:
    """Queue the notifications for a new message. Call inside its transaction, so the task
    commits (or rolls back) with it. SYSTEM messages (joins, leaves) notify nobody."""
    if message.kind == Message.Kind.SYSTEM or not configured():
        return
    from chat.tasks import notify_message

    notify_message.enqueue(str(message.id))
