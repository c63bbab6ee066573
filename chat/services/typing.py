"""Typing indicators: ephemeral, never history, expiring on their own."""

import logging

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from redis.exceptions import RedisError

from chat import events
from chat.error_codes import ChatErrorCode
from chat.models import Membership, User
from chat.selectors import parse_id

logger = logging.getLogger(__name__)


async def set_typing(*, user: User, chat_id: object, typing: bool) -> bool:
    """Tell the chat's other members that `user` is (or stopped) typing.

    Clients may call this on every keystroke: a "typing" is passed on at most once per
    `TYPING_THROTTLE` seconds per user and chat, and lasts `TYPING_TTL` seconds unless
    renewed (subscriptions then announce that it stopped). A "stopped" always goes
    through. Returns whether an event was published: with Redis down, typing is lost
    (it is ephemeral) and the call still succeeds.
    """
    pk = parse_id(chat_id)
    if pk is None or not await Membership.objects.filter(chat_id=pk, user=user).aexists():
        raise ValidationError(
            {"chat_id": ValidationError("Chat not found.", code=ChatErrorCode.NOT_FOUND)}
        )
    throttle_key = f"typing:{pk.hex}:{user.pk.hex}"
    try:
        if typing:
            if not await cache.aadd(throttle_key, 1, timeout=settings.TYPING_THROTTLE):
                return False
        else:
            await cache.adelete(throttle_key)
        await events.typing_changed(pk, user, typing=typing, expires_in=settings.TYPING_TTL)
    except (RedisError, OSError) as error:
        logger.warning("Typing not passed on: Redis is unavailable (%s)", error)
        return False
    return True
