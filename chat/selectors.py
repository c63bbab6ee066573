"""Reads and access checks. Queries, subscriptions, services and the admin share these, so
"who may see what" is decided in one place."""

import functools
import uuid
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Min,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.fields.tuple_lookups import Tuple, TupleIn
from django.db.models.functions import Coalesce, Lower, RowNumber
from django.utils import timezone

from chat import ratelimit, rows
from chat.exceptions import NotFound
from chat.models import (
    Ban,
    Block,
    Change,
    Chat,
    Device,
    Membership,
    Mention,
    Message,
    MessageEdit,
    Reaction,
    User,
    normalize_email,
)
from chat.prepared import Shaped, prepared

CHAT_NOT_FOUND = "Chat not found."
# What rendering a message reads beside its row: loaded with it, never one query each.
MESSAGE_RELATED = ("author", "subject", "attachment", "reply_to", "reply_to__author")
CHANGE_RELATED = tuple(f"message__{name}" for name in MESSAGE_RELATED)
# Kept by a PostgreSQL trigger and read only inside the search query's SQL, so reads leave
# it in the database: fetching and parsing it cost a history page more than its text.
SEARCH_VECTOR = "search_vector"
# A joined user's columns that no type, resolver or service reads from a message's author,
# subject or quoted author: a history page sent and parsed each author's password hash,
# flags and last sign-in with every row, a third of the page's columns (bench/RESULTS.md,
# session 24). Read from such a user, one would cost a query each, so they stay out of the
# GraphQL `User` type (tests/api/test_selection.py).
UNREAD_USER_COLUMNS = ("password", "last_login", "is_superuser", "is_staff", "is_active")
# The joins of `MESSAGE_RELATED` that are users.
USER_JOINS = ("author", "subject", "reply_to__author")


def _unread(joins: tuple[str, ...], prefix: str = "") -> list[str]:
    """What a message query with `joins` leaves in the database."""
    unread = [f"{prefix}{SEARCH_VECTOR}"]
    if "reply_to" in joins:
        unread.append(f"{prefix}reply_to__{SEARCH_VECTOR}")
    for join in USER_JOINS:
        if join in joins:
            unread += (f"{prefix}{join}__{column}" for column in UNREAD_USER_COLUMNS)
    return unread


def with_related(
    messages: QuerySet[Message], joins: tuple[str, ...] | None = None
) -> QuerySet[Message]:
    """Messages with what one renders (author, subject, attachment, quote) in the same
    query, or only the `joins` a caller knows it reads."""
    joins = MESSAGE_RELATED if joins is None else joins
    # `select_related()` with no names would follow every foreign key.
    return (messages.select_related(*joins) if joins else messages).defer(*_unread(joins))


def _with_messages(changes: QuerySet[Change]) -> QuerySet[Change]:
    """Changes with their messages as `with_related` loads them, oldest first."""
    unread = _unread(MESSAGE_RELATED, prefix="message__")
    return changes.select_related(*CHANGE_RELATED).defer(*unread).order_by("revision")


def parse_id(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def find_membership(*, user: User, chat_id: object) -> Membership | None:
    """The user's membership of the chat, with the chat and user loaded; None for a chat
    that does not exist, a malformed id, or a chat the user is not in (alike on purpose)."""
    pk = parse_id(chat_id)
    if pk is None:
        return None
    # One row at most (unique together): `[:1]` spares compiling `first()`'s ORDER BY.
    # Its SQL is compiled once (chat.prepared): nearly every operation on a chat asks.
    shaped = Shaped(
        ("membership",),
        lambda: Membership.objects.select_related("chat").filter(chat_id=pk, user=user)[:1],
        [rows.param(Membership, "chat", pk), rows.param(Membership, "user", user.pk)],
    )
    membership = next(iter(prepared.fetch(shaped)), None)
    if membership is not None:
        membership.user = user
    return membership


def membership_for(*, user: User, chat_id: object) -> Membership:
    """`find_membership`, raising `NotFound` for queries and subscriptions."""
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise NotFound(CHAT_NOT_FOUND)
    return membership


def chat_for_member(*, user: User, chat_id: object) -> Chat:
    """The chat, carrying the viewer's read marker and role like the chat list's rows."""
    return viewer_chat(membership_for(user=user, chat_id=chat_id))


def member_revision(*, user: User, chat_id: uuid.UUID) -> tuple[int, int]:
    """The chat's newest revision and member count, for a member only (`NotFound`
    otherwise): what a `chatEvents` subscription checks and reads first, as SQL
    (chat.rows: a reconnect storm runs it once per socket)."""
    row = rows.fetch_one(
        _member_revision_sql(),
        [rows.param(Chat, "id", chat_id), rows.param(Membership, "user", user.pk)],
    )
    if row is None:
        raise NotFound(CHAT_NOT_FOUND)
    return row[0], row[1]


@functools.cache
def _member_revision_sql() -> str:
    return rows.sql(
        "SELECT c.{Chat.revision}, c.{Chat.member_count} FROM {Chat} c "
        "INNER JOIN {Membership} m ON m.{Membership.chat} = c.{Chat.id} "
        "WHERE c.{Chat.id} = %s AND m.{Membership.user} = %s",
        Chat=Chat,
        Membership=Membership,
    )


def viewer_chat(membership: Membership) -> Chat:
    """The membership's chat, with `my_last_read_seq`, `my_role` and `my_muted_until` set
    from it, so the viewer's fields resolve without querying the membership again."""
    return remember_viewer(membership.chat, membership)


def remember_viewer(chat: Chat, membership: Membership | None) -> Chat:
    """Keep the viewer's read marker, role and mute on the chat (`my_*`, as the chat
    list annotates them); None, for a chat the viewer has just left, reads as all read."""
    if membership is None:
        chat.my_last_read_seq, chat.my_role, chat.my_muted_until = chat.last_seq, "", None
    else:
        chat.my_last_read_seq, chat.my_role = membership.last_read_seq, membership.role
        chat.my_muted_until = membership.muted_until
    return chat


def user_chats(user: User) -> Shaped:
    """`chats_for_user`, built only when its SQL is not kept yet (chat.prepared)."""
    user_id = rows.param(Membership, "user", user.pk)
    return Shaped(("user_chats",), lambda: chats_for_user(user), [user_id])


def chats_for_user(user: User) -> QuerySet[Chat]:
    """The user's chats, most recent activity first, each with `my_last_read_seq`."""
    return (
        Chat.objects.filter(memberships__user=user)
        .annotate(
            activity_at=Coalesce("last_message_at", "created_at"),
            # The filter above constrains this join to the user's own membership.
            my_last_read_seq=F("memberships__last_read_seq"),
            my_role=F("memberships__role"),
            my_muted_until=F("memberships__muted_until"),
            my_hidden_at=F("memberships__hidden_at"),
        )
        # A hidden direct chat stays off the list until a message newer than hiding it.
        .filter(Q(my_hidden_at__isnull=True) | Q(last_message_at__gt=F("my_hidden_at")))
        .order_by("-activity_at", "-id")
    )


def public_rooms(*, search: str = "") -> QuerySet[Chat]:
    rooms = Chat.objects.filter(kind=Chat.Kind.GROUP, is_public=True, archived_at__isnull=True)
    search = search.strip()
    if search:
        rooms = rooms.filter(Q(name__icontains=search) | Q(topic__icontains=search))
    return rooms.order_by("-member_count", "-id")


def search_users(*, viewer: User, search: str) -> QuerySet[User]:
    """Active users whose display name starts a word with `search`, or whose email is
    `search` exactly: an address is never matched in part, so nobody can spell out another
    user's private address a character at a time. Searches are rate limited per viewer."""
    search = search.strip()
    users = User.objects.filter(is_active=True)
    if search:
        ratelimit.hit("search", viewer)
        users = users.filter(
            Q(display_name__istartswith=search)
            | Q(display_name__icontains=f" {search}")
            | Q(email=normalize_email(search))
        )
    return users.order_by("display_name", "id")


def changes_after(
    *, chat_id: object, revision: int, before: int | None = None, limit: int = 500
) -> QuerySet[Change]:
    """The chat's changes after `revision` (and before `before`), oldest first, with their
    messages loaded: what `chatEvents(after:)` replays."""
    changes = Change.objects.filter(chat_id=chat_id, revision__gt=revision)
    if before is not None:
        changes = changes.filter(revision__lt=before)
    return _with_messages(changes)[:limit]


def additions_after(
    *, chat_id: object, seq: int, before: int | None = None, limit: int = 500
) -> QuerySet[Change]:
    """The changes that added the chat's messages after `seq` (and before `before`), in
    `seq` order. A message's revision is at least its seq, which bounds the index scan."""
    changes = Change.objects.filter(
        chat_id=chat_id, revision__gt=seq, kind=Change.Kind.ADDED, message__seq__gt=seq
    )
    if before is not None:
        changes = changes.filter(message__seq__lt=before)
    return _with_messages(changes)[:limit]


def messages_of(chat: Chat, joins: tuple[str, ...] | None = None) -> QuerySet[Message]:
    return with_related(Message.objects.filter(chat=chat), joins)


def member_messages(
    *, user: User, chat_id: object, joins: tuple[str, ...] | None = None
) -> Shaped:
    """A chat's messages, or none when `user` is not its member (or the id is malformed):
    the membership is checked by the page's own statement, `EXISTS` on the chat's and the
    user's ids, which PostgreSQL answers once per statement. A history page was two round
    trips, the membership (with its chat's row built) and then the page; it is one. A
    page that comes back empty is an empty chat or a refusal: `membership_for` tells.

    Built only when its SQL is not kept yet (chat.prepared): history pages differ only in
    the chat, the viewer, the cursor and the page size."""
    pk = parse_id(chat_id) or uuid.UUID(int=0)  # no chat has the nil id

    def build() -> QuerySet[Message]:
        member = Membership.objects.filter(chat_id=pk, user_id=user.pk)
        return with_related(Message.objects.filter(Exists(member), chat_id=pk), joins)

    params = [
        1,  # Django's `EXISTS(SELECT %s AS "a" ...)`
        rows.param(Membership, "chat", pk),
        rows.param(Membership, "user", user.pk),
        rows.param(Message, "chat", pk),
    ]
    return Shaped(("member_messages", joins), build, params)


class RowValuesIn(TupleIn):
    """`(a, b) IN ((%s, %s), ...)`, each value prepared by its column's field; on
    PostgreSQL `(a, b) IN (SELECT * FROM unnest(%s::uuid[], %s::bigint[]))`, one array
    per column.

    Django's `TupleIn` wraps every value in a `Value` expression and compiles each: 100 of
    them for a chat list's 50 pairs, a third of the list's database work in the worker
    thread (issue 14). PostgreSQL then planned 50 OR'd index conditions, about 0.9 ms of
    a 1.8 ms round trip; two arrays are planned as one join whatever their length (0.2
    ms, bench/RESULTS.md), and the statement's text no longer depends on it. Backends
    without row values (SQLite) keep Django's own fallback."""

    def process_rhs(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        fields = [column.output_field for column in self.lhs]
        if (
            not self.rhs_is_direct_value()
            or not connection.features.supports_tuple_lookups
            or any(hasattr(field, "get_placeholder") for field in fields)
        ):
            return super().process_rhs(compiler, connection)
        wanted = [values for values in self.rhs if None not in values]  # NULL equals nothing
        if not wanted:
            raise EmptyResultSet
        columns = [
            [field.get_db_prep_value(value, connection) for value in values]
            for field, values in zip(fields, zip(*wanted, strict=True), strict=True)
        ]
        return self.rhs_sql(fields, len(wanted), connection), self.rhs_params(columns, connection)

    @staticmethod
    def rhs_sql(fields: list[Any], count: int, connection: Any) -> str:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{field.cast_db_type(connection)}[]" for field in fields)
            return f"(SELECT * FROM unnest({arrays}))"  # noqa: S608 - column types, not input
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        return "(" + ", ".join([row] * count) + ")"

    @staticmethod
    def rhs_params(columns: list[list[Any]], connection: Any) -> list[Any]:
        """The statement's parameters for the prepared values of each column: one list
        per column on PostgreSQL, each row's values in turn elsewhere."""
        if connection.vendor == "postgresql":
            return columns
        return [value for row in zip(*columns, strict=True) for value in row]


def last_messages(
    chats: list[Chat], joins: tuple[str, ...] | None = None
) -> dict[uuid.UUID, Message]:
    """The newest message of each chat, in one query (by the known `last_seq`).

    One row-value `IN` (`(chat_id, seq) IN (...)`): fifty `Q(chat_id=…, seq=…)` joined
    by OR cost Django 8 ms of filter building per page, and PostgreSQL more planning."""
    wanted = [(chat.id, chat.last_seq) for chat in chats if chat.last_seq]
    if not wanted:
        return {}

    def build() -> QuerySet[Message]:
        newest = Message.objects.filter(RowValuesIn(Tuple(F("chat_id"), F("seq")), wanted))
        return with_related(newest, joins)

    # Compiled once per page size and joins (chat.prepared); the parameters are the pairs.
    columns = [
        rows.params(Message, "chat", [chat_id for chat_id, _ in wanted]),
        rows.params(Message, "seq", [last_seq for _, last_seq in wanted]),
    ]
    params = RowValuesIn.rhs_params(columns, connection)
    newest = prepared.fetch(Shaped(("last_messages", joins, len(wanted)), build, params))
    return {message.chat_id: message for message in newest}


def direct_peers(chats: list[Chat], *, viewer: User) -> dict[uuid.UUID, User]:
    """For each direct chat, the other member, in one query."""
    direct_ids = [chat.id for chat in chats if chat.kind == Chat.Kind.DIRECT]
    if not direct_ids:
        return {}

    def build() -> QuerySet[Membership]:
        others = Membership.objects.filter(chat_id__in=direct_ids).exclude(user=viewer)
        return others.select_related("user")

    params = [rows.param(Membership, "chat", chat_id) for chat_id in direct_ids]
    params.append(rows.param(Membership, "user", viewer.pk))
    memberships = prepared.fetch(Shaped(("direct_peers", len(direct_ids)), build, params))
    return {m.chat_id: m.user for m in memberships}


def prepare_chat_page(
    chats: list[Chat],
    *,
    viewer: User,
    last_message: bool = True,
    message_joins: tuple[str, ...] | None = None,
    peer: bool = True,
) -> None:
    """Attach what a chat list shows (newest message with its `message_joins`, direct-chat
    peer) to a page of chats, in a query for each whatever the page size. A caller that
    knows a list does not show one passes False and saves its query."""
    if last_message:
        latest = last_messages(chats, message_joins)
        for chat in chats:
            chat.prefetched_last_message = latest.get(chat.id)
    if peer:
        peers = direct_peers(chats, viewer=viewer)
        for chat in chats:
            chat.prefetched_peer = peers.get(chat.id)


def active_user(user_id: object) -> User:
    pk = parse_id(user_id)
    user = User.objects.filter(pk=pk, is_active=True).first() if pk else None
    if user is None:
        raise NotFound("User not found.")
    return user


def devices_of(user: User) -> list[Device]:
    """The user's devices that receive notifications, most recently registered first."""
    return list(Device.objects.filter(user=user, is_active=True).order_by("-updated_at"))


# Members are listed owners first, then admins, then everyone else, each by name.
ROLE_RANK = Case(
    When(role=Membership.Role.OWNER, then=Value(0)),
    When(role=Membership.Role.ADMIN, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def chat_members(*, chat: Chat, search: str = "") -> QuerySet[Membership]:
    """The chat's memberships with their users, annotated `rank` (by role) and `name`
    (lowercased display name) for ordering; `search` matches the start of a word in a
    name."""
    members = (
        Membership.objects.filter(chat=chat)
        .select_related("user")
        .annotate(rank=ROLE_RANK, name=Lower("user__display_name"))
    )
    search = " ".join(search.split())
    if search:
        members = members.filter(
            Q(user__display_name__istartswith=search)
            | Q(user__display_name__icontains=f" {search}")
        )
    return members


def online_counts(chat_ids: list[object]) -> dict[object, int]:
    """How many members of each chat are online (`User.last_seen_at` is null while they
    are), in one query."""
    rows = (
        Membership.objects.filter(chat_id__in=chat_ids, user__last_seen_at__isnull=True)
        .values("chat_id")
        .annotate(online=Count("id"))
    )
    return {row["chat_id"]: row["online"] for row in rows}


def sharing_a_chat(*, viewer: User, user_ids: list[object]) -> set[object]:
    """Those of `user_ids` who are in at least one chat with `viewer` (the viewer counts),
    in one query."""
    mine = Membership.objects.filter(user=viewer).values("chat_id")
    shared = set(
        Membership.objects.filter(user_id__in=user_ids, chat_id__in=mine)
        .values_list("user_id", flat=True)
        .distinct()
    )
    return shared | ({viewer.pk} & set(user_ids))


def members_visible(*, viewer: User, chat: Chat) -> None:
    """Raise `NotFound` unless the viewer may list the chat's members: its members, and
    anyone for a public room (they could join it)."""
    if chat.kind == Chat.Kind.GROUP and chat.is_public:
        return
    if not Membership.objects.filter(chat=chat, user=viewer).exists():
        raise NotFound(CHAT_NOT_FOUND)


# The user fields a reader is rendered from (`readers`), fetched in the same query.
READER_FIELDS = ("id", "email", "display_name", "date_joined", "avatar", "avatar_thumbnail")


def readers(message_ids: list[object], *, limit: int) -> dict[object, tuple[int, list[User]]]:
    """For each message: how many members other than its author have read up to it, and
    the first `limit` of them by name. One query for a whole page of messages, whatever
    its size: a window over (message, member) pairs, counted and numbered per message."""
    per_message = {"partition_by": [F("id")]}
    by_author = Q(chat__memberships__user_id=F("author_id"))
    rows = (
        Message.objects.filter(pk__in=message_ids, chat__memberships__last_read_seq__gte=F("seq"))
        .annotate(
            **{f"reader_{name}": F(f"chat__memberships__user__{name}") for name in READER_FIELDS},
            position=Window(
                RowNumber(),
                **per_message,
                order_by=[
                    F("chat__memberships__user__display_name").asc(),
                    F("chat__memberships__user_id").asc(),
                ],
            ),
            total=Window(Count("chat__memberships__id"), **per_message),
            author_read=Window(Count("chat__memberships__id", filter=by_author), **per_message),
        )
        # One more than asked: the author, if among them, is dropped below.
        .filter(position__lte=limit + 1)
        .values("id", "author_id", "total", "author_read", *(f"reader_{n}" for n in READER_FIELDS))
    )
    found: dict[object, tuple[int, list[User]]] = {}
    for row in rows:
        count, users = found.get(row["id"], (row["total"] - row["author_read"], []))
        if row["reader_id"] != row["author_id"]:
            users.append(User(**{name: row[f"reader_{name}"] for name in READER_FIELDS}))
        found[row["id"]] = (count, users)
    return {pk: (count, users[:limit]) for pk, (count, users) in found.items()}


def room_by_slug(*, viewer: User, slug: str) -> Chat:
    """The room with this slug: a public one, or one the viewer is in (with the viewer's
    fields, like `chat_for_member`); `NotFound` otherwise."""
    room = Chat.objects.filter(slug=slug.strip().lower(), kind=Chat.Kind.GROUP).first()
    if room is None:
        raise NotFound(CHAT_NOT_FOUND)
    membership = Membership.objects.filter(chat=room, user=viewer).select_related("chat").first()
    if membership is not None:
        return viewer_chat(membership)
    if not room.is_public:
        raise NotFound(CHAT_NOT_FOUND)
    return room


def is_banned(*, chat: Chat, user: User) -> bool:
    """The user is banned from the chat now (a ban with no end, or one not yet over)."""
    return (
        Ban.objects.filter(chat=chat, user=user)
        .filter(Q(until__isnull=True) | Q(until__gt=timezone.now()))
        .exists()
    )


def blocked_between(a: object, b: object) -> bool:
    """Either of the two users blocks the other."""
    return Block.objects.filter(
        Q(blocker_id=a, blocked_id=b) | Q(blocker_id=b, blocked_id=a)
    ).exists()


def blocked_in_chat(*, user: User, chat_id: object) -> bool:
    """A block either way between `user` and another member of the chat, in one query
    (for a direct chat: between its two members)."""
    others = Membership.objects.filter(chat_id=chat_id).exclude(user=user).values("user_id")
    return Block.objects.filter(
        Q(blocker=user, blocked__in=others) | Q(blocked=user, blocker__in=others)
    ).exists()


def blocked_by(viewer: User, user_ids: list[object]) -> set[object]:
    """Those of `user_ids` the viewer blocks, in one query."""
    return set(
        Block.objects.filter(blocker=viewer, blocked_id__in=user_ids).values_list(
            "blocked_id", flat=True
        )
    )


def blocked_users(viewer: User) -> list[User]:
    """The users the viewer blocks, by name."""
    return list(User.objects.filter(blocked_by__blocker=viewer).order_by("display_name", "id"))


def room_bans(chat: Chat) -> list[Ban]:
    """The room's bans in force, newest first."""
    return list(
        Ban.objects.filter(chat=chat)
        .exclude(until__lte=timezone.now())
        .select_related("user", "banned_by")
        .order_by("-created_at")
    )


def reactions_of(message_ids: list[object], *, viewer: User | None) -> dict[object, list[dict]]:
    """Each message's reactions, one entry per emoji in the order first given: its count
    and whether the viewer gave it. One query for a whole page."""
    rows = (
        Reaction.objects.filter(message_id__in=message_ids)
        .values("message_id", "emoji")
        .annotate(
            count=Count("id"),
            mine=Count("id", filter=Q(user=viewer)) if viewer else Value(0),
            first=Min("created_at"),
        )
        .order_by("message_id", "first", "emoji")
    )
    found: dict[object, list[dict]] = {}
    for row in rows:
        found.setdefault(row["message_id"], []).append(
            {"emoji": row["emoji"], "count": row["count"], "mine": bool(row["mine"])}
        )
    return found


def edit_histories(message_ids: list[object]) -> dict[object, list[MessageEdit]]:
    """Each message's earlier bodies, oldest first, in one query."""
    found: dict[object, list[MessageEdit]] = {}
    for edit in MessageEdit.objects.filter(message_id__in=message_ids).order_by("edited_at", "id"):
        found.setdefault(edit.message_id, []).append(edit)
    return found


def pinned_messages(chat_ids: list[object]) -> dict[object, list[Message]]:
    """Each chat's pinned messages, the most recently pinned first, in one query."""
    found: dict[object, list[Message]] = {}
    pinned = with_related(
        Message.objects.filter(chat_id__in=chat_ids, pinned_at__isnull=False)
    ).order_by("-pinned_at", "-seq")
    for message in pinned:
        found.setdefault(message.chat_id, []).append(message)
    return found


def mentions_of(message_ids: list[object]) -> dict[object, list[User]]:
    """Each message's mentioned members, by name, in one query."""
    found: dict[object, list[User]] = {}
    rows = (
        Mention.objects.filter(message_id__in=message_ids)
        .select_related("user")
        .order_by("user__display_name", "user_id")
    )
    for mention in rows:
        found.setdefault(mention.message_id, []).append(mention.user)
    return found


def unread_mention_counts(viewer: User, chat_ids: list[object]) -> dict[object, int]:
    """Per chat, the messages past the viewer's read marker that mention them (deleted
    ones aside), in one query."""
    rows = (
        Mention.objects.filter(
            user=viewer,
            message__chat_id__in=chat_ids,
            message__deleted_at__isnull=True,
            message__chat__memberships__user=viewer,
            message__seq__gt=F("message__chat__memberships__last_read_seq"),
        )
        .values("message__chat_id")
        .annotate(count=Count("id"))
    )
    return {row["message__chat_id"]: row["count"] for row in rows}
