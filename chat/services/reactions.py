"""Emoji reactions on messages."""

from django.conf import settings
from django.db import IntegrityError, transaction

from chat import events, ratelimit
from chat.emoji import clean_emoji
from chat.error_codes import MessageErrorCode
from chat.exceptions import field_error
from chat.models import Message, Reaction, User
from chat.services.chats import check_writable, lock_chat
from chat.services.messages import visible_message


def _target(user: User, message_id: object, emoji: str) -> tuple[Message, str]:
    cleaned = clean_emoji(emoji)
    if cleaned is None:
        raise field_error(
            "emoji", "Give one emoji, or a :shortcode:.", MessageErrorCode.INVALID_EMOJI
        )
    message = visible_message(user=user, message_id=message_id)
    if message.is_deleted or message.kind == Message.Kind.SYSTEM:
        raise field_error(
            "message_id",
            "Deleted and system messages take no reactions.",
            MessageErrorCode.CANNOT_REACT,
        )
    return message, cleaned


@transaction.atomic
def add_reaction(*, user: User, message_id: object, emoji: str) -> Message:
    """React to a message of a chat the user is in. Reacting twice with the same emoji
    changes nothing; a message takes at most `REACTION_MAX_DISTINCT` different emoji.
    Publishes `reaction_changed` on commit."""
    message, emoji = _target(user, message_id, emoji)
    ratelimit.hit("reaction", user)
    # The chat's lock orders concurrent reactions, so the cap holds.
    check_writable(lock_chat(message.chat_id))
    present = set(Reaction.objects.filter(message=message).values_list("emoji", flat=True))
    if emoji not in present and len(present) >= settings.REACTION_MAX_DISTINCT:
        raise field_error(
            "emoji",
            f"A message can carry at most {settings.REACTION_MAX_DISTINCT} different emoji.",
            MessageErrorCode.TOO_MANY_REACTIONS,
        )
    try:
        with transaction.atomic():
            _, created = Reaction.objects.get_or_create(message=message, user=user, emoji=emoji)
    except IntegrityError:  # the same reaction, sent twice at once
        created = False
    if created:
        _publish(message, user, emoji, added=True)
    return message


@transaction.atomic
def remove_reaction(*, user: User, message_id: object, emoji: str) -> Message:
    """Take a reaction back. Harmless when there was none."""
    message, emoji = _target(user, message_id, emoji)
    ratelimit.hit("reaction", user)
    check_writable(lock_chat(message.chat_id))
    deleted, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
    if deleted:
        _publish(message, user, emoji, added=False)
    return message


def _publish(message: Message, user: User, emoji: str, *, added: bool) -> None:
    count = Reaction.objects.filter(message=message, emoji=emoji).count()
    events.reaction_changed(message, user, emoji, count=count, added=added)
