"""Managing a room: its name, topic, visibility and slug, and archiving it."""

from django.db import transaction
from django.utils import timezone

from chat import events, ratelimit
from chat.error_codes import ChatErrorCode
from chat.exceptions import Forbidden, field_error, not_found
from chat.models import Chat, Membership, User
from chat.selectors import parse_id
from chat.services.chats import check_writable, clean_room, lock_chat
from chat.services.slugs import check_slug_free, clean_slug, save_claiming_slug

MANAGERS = frozenset({Membership.Role.OWNER, Membership.Role.ADMIN})


def managed_room(*, user: User, chat_id: object, roles: frozenset[str]) -> Chat:
    """The room, locked, when `user` holds one of `roles` in it. `not_found` when they are
    not in it (or it does not exist), `not_a_room` for a direct chat, `owner_only` or
    `admin_only` (PERMISSION) for a member without the role."""
    pk = parse_id(chat_id)
    membership = Membership.objects.filter(chat_id=pk, user=user).first() if pk else None
    if membership is None:
        raise not_found()
    chat = lock_chat(pk)
    if chat.kind != Chat.Kind.GROUP:
        raise field_error("chat_id", "Direct chats have no settings.", ChatErrorCode.NOT_A_ROOM)
    if membership.role not in roles:
        if roles == {Membership.Role.OWNER}:
            raise Forbidden("Only the room's owner can do this.", code=ChatErrorCode.OWNER_ONLY)
        raise Forbidden(
            "Only the room's owner and admins can do this.", code=ChatErrorCode.ADMIN_ONLY
        )
    return chat


@transaction.atomic
def update_room(
    *,
    chat_id: object,
    actor: User | None,
    name: str | None = None,
    topic: str | None = None,
    is_public: bool | None = None,
    slug: str | None = None,
) -> Chat:
    """Change a room's settings (only those given; an empty `slug` removes it) and tell
    its subscribers (`chat_updated`). `actor` must be its owner or an admin; None is
    staff in the admin. Raises `ValidationError` (name, topic, slug), `Forbidden` and
    `RateLimited`."""
    if name is None and topic is None and is_public is None and slug is None:
        raise field_error(
            None, "Give at least one setting to change.", ChatErrorCode.NOTHING_TO_UPDATE
        )
    if actor is None:
        chat = lock_chat(chat_id, kind=Chat.Kind.GROUP)
    else:
        chat = managed_room(user=actor, chat_id=chat_id, roles=MANAGERS)
        check_writable(chat)
        ratelimit.hit("room", actor)
    chat.name, chat.topic = clean_room(
        chat.name if name is None else name, chat.topic if topic is None else topic
    )
    if is_public is not None:
        chat.is_public = is_public
    if slug is not None:
        chat.slug = clean_slug(slug)
        check_slug_free(chat.slug, chat=chat)
    save_claiming_slug(chat, update_fields=["name", "topic", "is_public", "slug"])
    events.chat_updated(chat)
    return chat


@transaction.atomic
def archive_room(*, owner: User, chat_id: object) -> Chat:
    """Make a room read-only for everyone: its history stays, nothing new is written, it
    leaves `rooms`. Archiving it again changes nothing. Owner only."""
    chat = managed_room(user=owner, chat_id=chat_id, roles=frozenset({Membership.Role.OWNER}))
    if chat.archived_at is None:
        chat.archived_at = timezone.now()
        chat.save(update_fields=["archived_at"])
        events.chat_updated(chat)
    return chat
