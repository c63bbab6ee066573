"""What a user keeps away: people they block, direct chats they hide."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import ratelimit
from chat.error_codes import ChatErrorCode
from chat.exceptions import field_error
from chat.models import Block, Chat, Membership, User
from chat.selectors import find_membership, parse_id


def _other(user: User, user_id: object) -> User:
    pk = parse_id(user_id)
    other = User.objects.filter(pk=pk, is_active=True).first() if pk else None
    if other is None:
        raise field_error("user_id", "User not found.", ChatErrorCode.NOT_FOUND)
    if other.pk == user.pk:
        raise field_error("user_id", "You cannot block yourself.", ChatErrorCode.CANNOT_BLOCK_SELF)
    return other


def block_user(*, user: User, user_id: object) -> User:
    """Block someone: no direct messages between the two either way (`cannot_message_user`,
    which does not say who blocked whom), and their messages in shared rooms come flagged
    (`User.isBlockedByMe`). Blocking twice is harmless. Returns the blocked user."""
    other = _other(user, user_id)
    ratelimit.hit("block", user)
    try:
        with transaction.atomic():
            Block.objects.get_or_create(blocker=user, blocked=other)
    except IntegrityError:  # the same block, made at the same moment
        pass
    return other


def unblock_user(*, user: User, user_id: object) -> User:
    """Lift a block. Harmless when there was none."""
    other = _other(user, user_id)
    ratelimit.hit("block", user)
    Block.objects.filter(blocker=user, blocked=other).delete()
    return other


def hide_chat(*, user: User, chat_id: object) -> Membership:
    """Take a direct chat off the user's chat list until a new message arrives in it (or
    they open it again with `openDirectChat`). Nothing is deleted."""
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise field_error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
    if membership.chat.kind != Chat.Kind.DIRECT:
        raise field_error("chat_id", "Only direct chats can be hidden.", ChatErrorCode.NOT_DIRECT)
    ratelimit.hit("block", user)
    membership.hidden_at = timezone.now()
    Membership.objects.filter(pk=membership.pk).update(hidden_at=membership.hidden_at)
    return membership
