"""Direct chats, rooms and membership.

Every change of membership is also a SYSTEM message in the chat's timeline, written under
the chat's row lock like any message, so history shows joins and leaves in order.
"""

import functools
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from chat import events, push, ratelimit, rows
from chat.error_codes import ChatErrorCode
from chat.exceptions import field_error, not_found
from chat.models import Change, Chat, Membership, Mention, Message, User
from chat.rows import Statement
from chat.selectors import blocked_between, find_membership, is_banned, parse_id
from chat.services.slugs import check_slug_free, clean_slug, save_claiming_slug

NAME_MAX = 100
TOPIC_MAX = 300


def lock_chat(chat_id: object, **filters: object) -> Chat:
    """The chat row, locked until the transaction ends (`select_for_update`): every write
    that appends to a chat's timeline holds it, which keeps `seq` contiguous."""
    pk = parse_id(chat_id)
    chat = (
        Chat.objects.select_for_update(of=("self",)).filter(pk=pk, **filters).first()
        if pk
        else None
    )
    if chat is None:
        raise not_found()
    return chat


@functools.cache
def _member_lock() -> tuple[str, rows.Columns]:
    chat = rows.Columns(Chat, "c")
    statement = rows.sql(
        "SELECT {chat} FROM {Chat} c WHERE c.{Chat.id} = %s AND EXISTS "
        "(SELECT 1 FROM {Membership} m WHERE m.{Membership.chat} = c.{Chat.id} "
        "AND m.{Membership.user} = %s)",
        chat=chat,
        Chat=Chat,
        Membership=Membership,
    )
    if connection.features.has_select_for_update:
        statement += " FOR UPDATE"
    return statement, chat


def lock_chat_of(user: User, chat_id: object) -> Chat:
    """`lock_chat` for a chat `user` is in (`not_found` otherwise, alike on purpose), as
    SQL: every send takes it, and through the ORM it was 7.5 % of a send's CPU (py-spy,
    bench/RESULTS.md, issue 14)."""
    pk = parse_id(chat_id)
    statement, columns = _member_lock()
    params = [rows.param(Chat, "id", pk), rows.param(Membership, "user", user.pk)]
    row = rows.fetch_one(statement, params) if pk else None
    if row is None:
        raise not_found()
    return columns.build(row)


def check_writable(chat: Chat) -> None:
    """Raise `room_archived` for an archived room: its timeline is read-only."""
    if chat.archived_at is not None:
        raise field_error(
            "chat_id", "This room is archived: it is read-only.", ChatErrorCode.ROOM_ARCHIVED
        )


def record_change(chat: Chat, message: Message, kind: str, **chat_fields: object) -> int:
    """Number a change to the chat's timeline, saving `chat_fields` on the chat in the same
    UPDATE; returns its revision.

    Precondition: the caller holds the chat's row lock (`lock_chat`) in this transaction,
    which keeps revisions contiguous.
    """
    rows.run(_change(chat, message, kind, **chat_fields))
    return chat.revision


def _change(chat: Chat, message: Message, kind: str, **chat_fields: object) -> list[Statement]:
    """The writes of `record_change`: its Change row and the chat's UPDATE."""
    chat.revision += 1
    change = Change(chat=chat, revision=chat.revision, message=message, kind=kind)
    return [
        rows.insert(change),
        rows.update(Chat, {"id": chat.pk}, revision=chat.revision, **chat_fields),
    ]


def append_message(
    chat: Chat,
    *,
    author: User | None,
    kind: str,
    body: str = "",
    system_event: str = "",
    subject: User | None = None,
    client_id: str | None = None,
    mentions: Sequence[User] = (),
    **content: object,
) -> Message:
    """Write the chat's next message (and its change) and publish it on commit. `content`
    is any further field: an attachment, a location. `mentions` (members, checked by the
    caller) are stored and each told in their inbox.

    The message, its change, the chat's counters and the author's read position are one
    statement on PostgreSQL (`rows.run`). Precondition: the caller holds the chat's row
    lock (`lock_chat`) in this transaction.
    """
    message = Message(
        chat=chat,
        seq=chat.last_seq + 1,
        author=author,
        kind=kind,
        body=body,
        system_event=system_event,
        subject=subject,
        client_id=client_id,
        **content,
    )
    chat.last_seq = message.seq
    chat.last_message_at = message.created_at
    writes = [
        rows.insert(message),
        *_change(
            chat,
            message,
            Change.Kind.ADDED,
            last_seq=message.seq,
            last_message_at=message.created_at,
        ),
    ]
    if author is not None:
        # Sending a message means having read the chat up to it.
        reader = {"chat": chat.pk, "user": author.pk}
        writes.append(rows.update(Membership, reader, last_read_seq=message.seq))
    rows.run(writes)
    rows.saved(message)
    if mentions:
        Mention.objects.bulk_create(Mention(message=message, user=user) for user in mentions)
    message.mentioned = list(mentions)
    events.message_added(message, revision=chat.revision, member_count=chat.member_count)
    if mentions:
        events.mentioned(message, [user.pk for user in mentions])
    push.queue(message)
    return message


SYSTEM_TEXTS = {
    Message.SystemEvent.ROOM_CREATED: "{subject} created the room",
    Message.SystemEvent.MEMBER_JOINED: "{subject} joined",
    Message.SystemEvent.MEMBER_LEFT: "{subject} left",
    Message.SystemEvent.MEMBER_ADDED: "{actor} added {subject}",
    Message.SystemEvent.MEMBER_REMOVED: "{actor} removed {subject}",
    Message.SystemEvent.MEMBER_BANNED: "{actor} banned {subject}",
    Message.SystemEvent.MEMBER_UNBANNED: "{actor} unbanned {subject}",
    Message.SystemEvent.ROLE_CHANGED: "{actor} made {subject} {role}",
    Message.SystemEvent.MESSAGE_PINNED: "{subject} pinned a message",
    Message.SystemEvent.MESSAGE_UNPINNED: "{subject} unpinned a message",
}


def system_message(
    chat: Chat,
    event: str,
    subject: User,
    actor: User | None = None,
    reply_to: Message | None = None,
    **words: str,
) -> Message:
    """A SYSTEM message in the timeline (a join, a ban...). Precondition: the chat's lock."""
    body = SYSTEM_TEXTS[event].format(
        subject=subject.display_name, actor=actor.display_name if actor else "Someone", **words
    )
    return append_message(
        chat,
        author=None,
        kind=Message.Kind.SYSTEM,
        body=body,
        system_event=event,
        subject=subject,
        reply_to=reply_to,
    )


def open_direct_chat(*, user: User, other_user_id: object) -> Chat:
    """The one direct chat between the two users, created on first use. Safe when both
    open it at the same moment: the database keeps one chat per pair. Refused
    (`cannot_message_user`) when either blocks the other."""
    ratelimit.hit("membership", user)
    pk = parse_id(other_user_id)
    other = User.objects.filter(pk=pk, is_active=True).first() if pk else None
    if other is None:
        raise field_error("user_id", "User not found.", ChatErrorCode.NOT_FOUND)
    if other.pk == user.pk:
        raise field_error(
            "user_id", "You cannot chat with yourself.", ChatErrorCode.CANNOT_CHAT_WITH_SELF
        )
    if blocked_between(user.pk, other.pk):
        raise field_error(
            "user_id", "You cannot message this user.", ChatErrorCode.CANNOT_MESSAGE_USER
        )
    key = Chat.direct_key_for(user.pk, other.pk)
    existing = Chat.objects.filter(direct_key=key).first()
    if existing is not None:
        # Opening a chat the user hid brings it back to their list.
        Membership.objects.filter(chat=existing, user=user, hidden_at__isnull=False).update(
            hidden_at=None
        )
        return existing
    try:
        with transaction.atomic():
            chat = Chat.objects.create(
                kind=Chat.Kind.DIRECT, direct_key=key, created_by=user, member_count=2
            )
            Membership.objects.bulk_create(
                [Membership(chat=chat, user=user), Membership(chat=chat, user=other)]
            )
            events.chat_created(chat, [user.pk, other.pk])
    except IntegrityError:  # the other side created it first
        return Chat.objects.get(direct_key=key)
    return chat


def clean_room(name: str, topic: str) -> tuple[str, str]:
    name = " ".join(name.split())
    topic = topic.strip()
    errors: dict[str, ValidationError] = {}
    if not name or len(name) > NAME_MAX:
        errors["name"] = ValidationError(
            f"Room name must be 1 to {NAME_MAX} characters.", code=ChatErrorCode.INVALID_ROOM_NAME
        )
    if len(topic) > TOPIC_MAX:
        errors["topic"] = ValidationError(
            f"Topic must be at most {TOPIC_MAX} characters.", code=ChatErrorCode.TOPIC_TOO_LONG
        )
    if errors:
        raise ValidationError(errors)
    return name, topic


@transaction.atomic
def create_room(
    *, owner: User, name: str, topic: str = "", is_public: bool = False, slug: str | None = None
) -> Chat:
    """A group room with `owner` as its first member; its timeline opens with a SYSTEM
    message. Raises `ValidationError` (name, topic, slug: `slug_taken`) and
    `RateLimited`."""
    name, topic = clean_room(name, topic)
    slug = clean_slug(slug or "")
    check_slug_free(slug)
    ratelimit.hit("room", owner)
    chat = Chat(
        kind=Chat.Kind.GROUP,
        name=name,
        topic=topic,
        is_public=is_public,
        created_by=owner,
        member_count=1,
        slug=slug,
    )
    save_claiming_slug(chat, force_insert=True)
    membership = Membership.objects.create(chat=chat, user=owner, role=Membership.Role.OWNER)
    chat = Chat.objects.select_for_update().get(pk=chat.pk)
    message = system_message(chat, Message.SystemEvent.ROOM_CREATED, owner)
    # The creator has nothing unread in a room they just made.
    Membership.objects.filter(pk=membership.pk).update(last_read_seq=message.seq)
    events.chat_created(chat, [owner.pk])
    return chat


def add_member(chat: Chat, user: User, event: str, actor: User | None = None) -> None:
    """Make `user` a member, recorded by a SYSTEM message. Precondition: the chat's lock."""
    if chat.member_count >= settings.ROOM_MAX_MEMBERS:
        raise field_error(None, "This room is full.", ChatErrorCode.TOO_MANY_MEMBERS)
    membership = Membership.objects.create(chat=chat, user=user)
    chat.member_count += 1
    Chat.objects.filter(pk=chat.pk).update(member_count=F("member_count") + 1)
    message = system_message(chat, event, user, actor)
    # A new member starts with nothing unread, their own arrival included.
    Membership.objects.filter(pk=membership.pk).update(last_read_seq=message.seq)
    events.membership_changed(chat, user, "member_joined", seq=message.seq)


def drop_member(chat: Chat, membership: Membership, event: str, actor: User | None) -> None:
    """End a membership, recorded by a SYSTEM message; the user's subscriptions to the
    chat end. Precondition: the chat's lock."""
    membership.delete()
    chat.member_count -= 1
    Chat.objects.filter(pk=chat.pk).update(member_count=F("member_count") - 1)
    message = system_message(chat, event, membership.user, actor)
    events.membership_changed(chat, membership.user, "member_left", seq=message.seq)


@transaction.atomic
def join_room(*, user: User, chat_id: object = None, slug: str | None = None) -> Chat:
    """Join a public room, named by its id or its slug. Joining a room one is already in
    changes nothing; an archived room cannot be joined."""
    if (chat_id is None) == (slug is None):
        raise field_error("chat_id", "Give chatId or slug.", ChatErrorCode.ONE_WAY_TO_NAME_A_ROOM)
    ratelimit.hit("membership", user)
    if slug is not None:
        found = Chat.objects.filter(slug=slug.strip().lower()).values_list("pk", flat=True)
        chat_id = found.first()
    chat = lock_chat(chat_id, kind=Chat.Kind.GROUP, is_public=True)
    if not Membership.objects.filter(chat=chat, user=user).exists():
        check_writable(chat)
        if is_banned(chat=chat, user=user):
            raise field_error("chat_id", "You are banned from this room.", ChatErrorCode.BANNED)
        add_member(chat, user, Message.SystemEvent.MEMBER_JOINED)
    return chat


@transaction.atomic
def leave_room(*, user: User, chat_id: object) -> Chat:
    """Leave a room. An owner who leaves hands the room to its longest-standing member."""
    ratelimit.hit("membership", user)
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise not_found()
    if membership.chat.kind != Chat.Kind.GROUP:
        raise field_error("chat_id", "Direct chats cannot be left.", ChatErrorCode.NOT_A_ROOM)
    chat = lock_chat(membership.chat_id)
    if membership.role == Membership.Role.OWNER:
        heir = (
            Membership.objects.filter(chat=chat)
            .exclude(pk=membership.pk)
            .order_by("joined_at", "pk")
            .first()
        )
        if heir is not None:
            Membership.objects.filter(pk=heir.pk).update(role=Membership.Role.OWNER)
    drop_member(chat, membership, Message.SystemEvent.MEMBER_LEFT, actor=None)
    return chat
