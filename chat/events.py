"""The one place that talks to the channel layer.

Services call `publish_on_commit` while their transaction is open; the event is sent only
once it commits, so a subscriber never hears of a row it cannot read, and a rolled-back
write broadcasts nothing. Payloads are plain msgpack-safe dicts (strings, numbers, lists)
carrying everything a subscriber renders, so delivering one runs no query.
"""

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.models import User

logger = logging.getLogger(__name__)

# The channel-layer message type every event travels as; subscriptions listen for it.
EVENT_MESSAGE_TYPE = "chat.event"


def user_group(user_id: uuid.UUID) -> str:
    return f"user.{user_id.hex}"


def chat_group(chat_id: uuid.UUID) -> str:
    return f"chat.{chat_id.hex}"


def user_payload(user: User) -> dict[str, Any]:
    """The public fields of a user, as events carry them."""
    return {"id": str(user.id), "display_name": user.display_name}


def publish_on_commit(group: str, event: str, data: dict[str, Any]) -> None:
    """Send `event` with `data` to `group` after the current transaction commits."""
    message = {"type": EVENT_MESSAGE_TYPE, "event": event, "data": data}
    transaction.on_commit(lambda: _send(group, message), robust=True)


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # The write has committed; a lost broadcast is recovered by clients replaying
        # from the database, so log it rather than fail the request.
        logger.exception("Could not publish %s to %s", message["event"], group)


def profile_updated(user: User) -> None:
    publish_on_commit(user_group(user.id), "profile_updated", user_payload(user))
