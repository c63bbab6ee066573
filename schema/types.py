"""GraphQL object types. Python names mirror the SDL names."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, NamedTuple

import strawberry
import strawberry_django
from django.conf import settings
from django.utils import timezone

from chat import models, selectors, storage
from schema.context import require_viewer
from schema.errors import bad_user_input
from schema.hops import fields_loaded, unless_loaded
from schema.pagination import INTEGER, TEXT, UUID, Connection, Keyset, paginate


def _files_loaded(*names: str) -> Callable[[Any], bool]:
    """The file columns are loaded and signing their URLs is local (S3 presigning may look
    up credentials over the network, so it keeps its thread)."""
    loaded = fields_loaded(*names)
    return lambda row: loaded(row) and not storage.is_s3()


def _quote_loaded(message: models.Message) -> bool:
    """No reply, or the quoted message and its author came with it (select_related)."""
    if "reply_to_id" not in message.__dict__:
        return False
    if message.reply_to_id is None:
        return True
    field = models.Message.reply_to.field
    if not field.is_cached(message):
        return False
    quoted = field.get_cached_value(message)
    if not fields_loaded("seq", "kind", "body", "deleted_at", "author_id")(quoted):
        return False
    return quoted.author_id is None or models.Message.author.field.is_cached(quoted)


def _member_user_loaded(membership: models.Membership) -> bool:
    field = models.Membership.user.field
    return (
        field.is_cached(membership)
        and "last_seen_at" in field.get_cached_value(membership).__dict__
    )


@strawberry_django.type(models.User, name="User", description="A person using the chat.")
class User:
    id: strawberry.ID = strawberry_django.field(description="The user's UUID.")
    display_name: str = strawberry_django.field(description="The name shown to other users.")
    joined_at: datetime = strawberry_django.field(
        field_name="date_joined", description="When the account was created."
    )

    @strawberry_django.field(
        only=["email"],
        description="Sign-in address. Only the user themself can read it; null for others.",
    )
    @unless_loaded(fields_loaded("email"))
    def email(self: models.User, info: strawberry.Info) -> str | None:
        viewer = info.context.user
        return self.email if viewer is not None and viewer.pk == self.pk else None

    @strawberry_django.field(
        only=["avatar"],
        description=(
            "The profile photo (square, at most 512 px), or null. A signed URL an `<img "
            "src>` can use without credentials; it expires (see `Attachment.url`)."
        ),
    )
    @unless_loaded(_files_loaded("avatar"))
    def avatar_url(self: models.User, info: strawberry.Info) -> str | None:
        return media_url(info, self.avatar.name)

    @strawberry_django.field(
        only=["avatar_thumbnail"],
        description="The profile photo at 96 px, for lists, or null. Signed like `avatarUrl`.",
    )
    @unless_loaded(_files_loaded("avatar_thumbnail"))
    def avatar_thumbnail_url(self: models.User, info: strawberry.Info) -> str | None:
        return media_url(info, self.avatar_thumbnail.name)

    @strawberry_django.field(
        only=["last_seen_at"],
        description=(
            "When the user's last open socket closed; null while they are online, and for "
            "anyone who shares no chat with the viewer."
        ),
    )
    async def last_seen_at(self: models.User, info: strawberry.Info) -> datetime | None:
        if self.last_seen_at is None:
            return None
        viewer = info.context.user
        if viewer is not None and viewer.pk == self.pk:
            return self.last_seen_at
        shared = await info.context.loaders.shares_chat.load(self.pk)
        return self.last_seen_at if shared else None

    @strawberry_django.field(
        description=(
            "Where the user's push notifications go (`registerDevice`), newest first. Only "
            "the user themself can read it; null for others."
        )
    )
    def devices(self: models.User, info: strawberry.Info) -> list["Device"] | None:
        viewer = info.context.user
        if viewer is None or viewer.pk != self.pk:
            return None
        return selectors.devices_of(self)

    @strawberry_django.field(
        description=(
            "The viewer blocks this user (`blockUser`): hide or fold their messages in "
            "shared rooms. Always false for oneself and when signed out."
        )
    )
    async def is_blocked_by_me(self: models.User, info: strawberry.Info) -> bool:
        viewer = info.context.user
        if viewer is None or viewer.pk == self.pk:
            return False
        return await info.context.loaders.blocked.load(self.pk)

    @strawberry_django.field(
        description="The users the viewer blocks, by name. Only for oneself; null for others."
    )
    def blocked_users(self: models.User, info: strawberry.Info) -> list["User"] | None:
        viewer = info.context.user
        if viewer is None or viewer.pk != self.pk:
            return None
        return selectors.blocked_users(self)


DeviceKind = strawberry.enum(
    models.Device.Kind,
    name="DeviceKind",
    description="WEB_PUSH: a browser's Web Push subscription. FCM: a mobile app's token.",
)


@strawberry_django.type(
    models.Device,
    name="Device",
    description="A browser or app that receives the user's push notifications.",
)
class Device:
    id: strawberry.ID = strawberry_django.field(description="Give it to `unregisterDevice`.")
    kind: DeviceKind = strawberry_django.field(description="WEB_PUSH or FCM.")
    name: str = strawberry_django.field(description="The label given when it was registered.")
    created_at: datetime = strawberry_django.field(description="When it was first registered.")
    updated_at: datetime = strawberry_django.field(description="When it was last registered.")
    last_success_at: datetime | None = strawberry_django.field(
        description="When a notification last reached its push service; null if none yet."
    )


def media_url(info: strawberry.Info, name: str, *, label: str | None = None) -> str | None:
    """A signed, expiring URL for a stored file, or None when there is none."""
    return storage.url(name, label=label, base=info.context.media_base) if name else None


@strawberry_django.type(
    models.Attachment,
    name="Attachment",
    description="A photo or file sent in a message (`IMAGE` or `FILE`).",
)
class Attachment:
    name: str = strawberry_django.field(
        description="The sender's file name: a label for the download, never a path."
    )
    content_type: str = strawberry_django.field(
        description=(
            "The type decided from the file's bytes: image/png, image/jpeg, image/gif or "
            "image/webp for IMAGE; for FILE application/pdf, application/zip, "
            "application/gzip or application/octet-stream."
        )
    )
    size: int = strawberry_django.field(description="Bytes, as stored.")
    width: int | None = strawberry_django.field(description="Pixels, for images; else null.")
    height: int | None = strawberry_django.field(description="Pixels, for images; else null.")

    @strawberry_django.field(
        only=["file", "name"],
        description=(
            "Where to fetch it: a signed URL that works without credentials (an `<img src>` "
            "or a download link) and expires after about `MEDIA_URL_TTL` seconds, an hour "
            "by default. Ask the API again for a fresh one. Images are served inline; "
            "everything else as a download (`Content-Disposition: attachment`)."
        ),
    )
    @unless_loaded(_files_loaded("file", "name"))
    def url(self: models.Attachment, info: strawberry.Info) -> str:
        return storage.url(self.file.name, label=self.name, base=info.context.media_base)

    @strawberry_django.field(
        only=["thumbnail"],
        description="For images, a copy at most 320 px on the long side; null for files.",
    )
    @unless_loaded(_files_loaded("thumbnail"))
    def thumbnail_url(self: models.Attachment, info: strawberry.Info) -> str | None:
        return media_url(info, self.thumbnail.name)


@strawberry.type(description="A point on the map, sent as a `LOCATION` message.")
class Location:
    latitude: float = strawberry.field(description="Degrees north, -90 to 90 (WGS 84).")
    longitude: float = strawberry.field(description="Degrees east, -180 to 180 (WGS 84).")
    label: str = strawberry.field(description="A place name or address; may be empty.")


@strawberry.type(description="A new session: the bearer token and who it belongs to.")
class AuthPayload:
    token: str = strawberry.field(
        description=(
            "Send as `Authorization: Bearer <token>` over HTTP, or in the WebSocket "
            '`connection_init` payload as `{"authorization": "Bearer <token>"}`. '
            "Shown only once."
        )
    )
    user: User = strawberry.field(description="The signed-in user.")


@strawberry.type(description="The operation succeeded; `message` says what happened.")
class Done:
    message: str = strawberry.field(description="A sentence to show the user.")


ChatKind = strawberry.enum(
    models.Chat.Kind, name="ChatKind", description="A direct chat between two users, or a room."
)
MemberRole = strawberry.enum(
    models.Membership.Role, name="MemberRole", description="What a member may do in a room."
)
MessageKind = strawberry.enum(
    models.Message.Kind, name="MessageKind", description="What a message carries."
)
SystemEvent = strawberry.enum(
    models.Message.SystemEvent,
    name="SystemEvent",
    description="What a SYSTEM message records.",
)


@strawberry.type(description="One emoji on a message, with how many gave it.")
class ReactionCount:
    emoji: str = strawberry.field(description="The emoji, or a `:shortcode:`.")
    count: int = strawberry.field(description="How many members gave it.")
    reacted_by_me: bool = strawberry.field(description="The viewer is one of them.")


@strawberry.type(description="What an edited message said before one of its edits.")
class MessageRevision:
    body: str = strawberry.field(description="The text before the edit.")
    edited_at: datetime = strawberry.field(description="When it was replaced.")


@strawberry.type(
    name="QuotedMessage",
    description="The message a reply answers, as the reply shows it (no extra query).",
)
class QuotedMessage:
    id: strawberry.ID = strawberry.field(description="The quoted message's id.")
    seq: int = strawberry.field(description="Its `seq`: scroll history there.")
    author: User | None = strawberry.field(description="Who wrote it.")
    kind: "MessageKind" = strawberry.field(description="What it carries.")
    body: str = strawberry.field(
        description="Its first 200 characters (a caption for a photo); empty once deleted."
    )
    is_deleted: bool = strawberry.field(description="Deleted since: draw an empty quote.")

    @classmethod
    def of(cls, message: models.Message) -> "QuotedMessage":
        deleted = message.deleted_at is not None
        return cls(
            id=strawberry.ID(str(message.id)),
            seq=message.seq,
            author=message.author,
            kind=models.Message.Kind(message.kind),
            body="" if deleted else message.body[:200],
            is_deleted=deleted,
        )


@strawberry_django.type(
    models.Message, name="Message", description="A message in a chat's timeline."
)
class Message:
    id: strawberry.ID = strawberry_django.field(description="The message's UUID.")
    chat_id: strawberry.ID = strawberry_django.field(description="The chat it belongs to.")
    seq: int = strawberry_django.field(
        description="Its position in the chat: 1, 2, 3… without gaps. Replay with `after`."
    )
    kind: MessageKind = strawberry_django.field(
        description=(
            "TEXT; IMAGE or FILE (see `attachment`); LOCATION (see `location`); SYSTEM for "
            "joins and leaves."
        )
    )
    body: str = strawberry_django.field(
        description=(
            "The text (trimmed); for IMAGE and FILE the caption, maybe empty. Empty for a "
            "deleted message."
        )
    )
    attachment: Attachment | None = strawberry_django.field(
        description="The photo or file of an IMAGE or FILE message; null otherwise or deleted."
    )
    author: User | None = strawberry_django.field(description="Who wrote it; null for SYSTEM.")
    subject: User | None = strawberry_django.field(
        description="For SYSTEM messages: who joined, left, was added or removed."
    )
    client_id: str | None = strawberry_django.field(
        description="The sender's idempotency key, to match an optimistic message."
    )
    created_at: datetime = strawberry_django.field(description="When it was sent.")
    edited_at: datetime | None = strawberry_django.field(description="When it was last edited.")
    deleted_at: datetime | None = strawberry_django.field(description="When it was deleted.")

    @strawberry_django.field(
        only=["latitude", "longitude", "location_label"],
        description="The point of a LOCATION message; null otherwise or once deleted.",
    )
    @unless_loaded(fields_loaded("latitude", "longitude", "location_label"))
    def location(self: models.Message) -> Location | None:
        if self.latitude is None or self.longitude is None:
            return None
        return Location(
            latitude=self.latitude, longitude=self.longitude, label=self.location_label
        )

    @strawberry_django.field(
        description=(
            "Members other than the author who have read up to this message, by name (at "
            "most `first`, 10 by default, 100 at most). In a direct chat: read by the other "
            "member or not. A page of history costs one query for all its messages."
        )
    )
    async def read_by(
        self: models.Message,
        info: strawberry.Info,
        first: Annotated[
            int, strawberry.argument(description="How many readers to list (0 to 100).")
        ] = 10,
    ) -> list[User]:
        if not 0 <= first <= settings.GRAPHQL_MAX_PAGE_SIZE:
            raise bad_user_input("`first` must be between 0 and 100.", argument="first")
        _, users = await info.context.loaders.readers.load((self.pk, first))
        return users

    @strawberry_django.field(
        description="How many members other than the author have read up to this message."
    )
    async def read_count(self: models.Message, info: strawberry.Info) -> int:
        count, _ = await info.context.loaders.readers.load((self.pk, 0))
        return count

    @strawberry_django.field(
        select_related=["reply_to", "reply_to__author"],
        description="The message this one answers (`replyToId`), or null.",
    )
    @unless_loaded(_quote_loaded)
    def reply_to(self: models.Message) -> QuotedMessage | None:
        return QuotedMessage.of(self.reply_to) if self.reply_to is not None else None

    @strawberry_django.field(
        description=(
            "Its reactions, one per emoji in the order first given (a page of history costs "
            "one query for all of them)."
        )
    )
    async def reactions(self: models.Message, info: strawberry.Info) -> list[ReactionCount]:
        rows = await info.context.loaders.reactions.load(self.pk)
        return [
            ReactionCount(emoji=r["emoji"], count=r["count"], reacted_by_me=r["mine"])
            for r in rows
        ]

    @strawberry_django.field(
        description=(
            "What it said before each edit, oldest first; empty if never edited, and gone "
            "once it is deleted."
        )
    )
    async def edit_history(self: models.Message, info: strawberry.Info) -> list[MessageRevision]:
        edits = await info.context.loaders.edit_history.load(self.pk)
        return [MessageRevision(body=e.body, edited_at=e.edited_at) for e in edits]

    pinned_at: datetime | None = strawberry_django.field(
        description="When it was pinned to its chat (`pinMessage`); null if it is not."
    )

    @strawberry_django.field(
        description=(
            "The members it @-mentions (`sendMessage(input: { mentions })`), by name; one "
            "query for a page of history."
        )
    )
    async def mentions(self: models.Message, info: strawberry.Info) -> list[User]:
        if hasattr(self, "mentioned"):  # known from the send or the event
            return self.mentioned
        return await info.context.loaders.mentions.load(self.pk)

    @strawberry_django.field(only=["deleted_at"], description="True once deleted.")
    @unless_loaded(fields_loaded("deleted_at"))
    def is_deleted(self: models.Message) -> bool:
        return self.is_deleted

    @strawberry_django.field(
        only=["system_event"], description="For SYSTEM messages: what happened."
    )
    @unless_loaded(fields_loaded("system_event"))
    def system_event(self: models.Message) -> SystemEvent | None:
        return models.Message.SystemEvent(self.system_event) if self.system_event else None


@strawberry_django.type(
    models.Membership,
    name="Member",
    description="A user's place in a chat: their role, since when, and how far they read.",
)
class Member:
    user: User = strawberry_django.field(description="The member.")
    role: MemberRole = strawberry_django.field(description="OWNER, ADMIN or MEMBER.")
    joined_at: datetime = strawberry_django.field(description="When they joined.")
    last_read_seq: int = strawberry_django.field(
        description="The `seq` they have read up to (see `Message.readBy`)."
    )

    @strawberry_django.field(description="At least one of their sockets is open now.")
    @unless_loaded(_member_user_loaded)
    def online(self: models.Membership) -> bool:
        return self.user.last_seen_at is None


@strawberry_django.type(models.Ban, name="Ban", description="A user kept out of a room.")
class Ban:
    user: User = strawberry_django.field(description="Who is banned.")
    banned_by: User | None = strawberry_django.field(description="Who banned them.")
    reason: str = strawberry_django.field(description="Why; may be empty.")
    until: datetime | None = strawberry_django.field(description="When it ends; null: never.")
    created_at: datetime = strawberry_django.field(description="When they were banned.")


MEMBER_ORDER = Keyset((("rank", False, INTEGER), ("name", False, TEXT), ("user_id", False, UUID)))


def _viewer_loaded(chat: models.Chat) -> bool:
    """The viewer's membership came with the chat (the chat list, `selectors.viewer_chat`)."""
    return hasattr(chat, "my_last_read_seq")


@strawberry_django.type(
    models.Chat, name="Chat", description="A conversation: a direct chat or a group room."
)
class Chat:
    id: strawberry.ID = strawberry_django.field(description="The chat's UUID.")
    kind: ChatKind = strawberry_django.field(description="DIRECT or GROUP.")
    name: str = strawberry_django.field(description="The room's name; empty for direct chats.")
    topic: str = strawberry_django.field(description="The room's topic; may be empty.")
    is_public: bool = strawberry_django.field(description="Anyone may find and join it.")
    created_at: datetime = strawberry_django.field(description="When it was created.")
    last_seq: int = strawberry_django.field(description="The `seq` of its newest message.")
    revision: int = strawberry_django.field(
        description=(
            "The position of its newest change (message added, edited or deleted). Load "
            "history, then subscribe to `chatEvents` with `after` set to this: nothing "
            "in between is missed."
        )
    )
    last_message_at: datetime | None = strawberry_django.field(
        description="When its newest message was sent."
    )
    member_count: int = strawberry_django.field(description="How many members it has.")
    slug: str | None = strawberry_django.field(
        description="A room's name in URLs (`room(slug)`, `joinRoom(slug)`); null if none."
    )
    archived_at: datetime | None = strawberry_django.field(
        description="When the room was archived (read-only since); null if it is not."
    )

    @strawberry_django.field(
        description=(
            "Its members: owners, then admins, then everyone else, each by name; `search` "
            "matches the start of a word in a name. Members only (anyone, for a public "
            "room); `NOT_FOUND` otherwise."
        )
    )
    def members(
        self: models.Chat,
        info: strawberry.Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size (default 50, at most 100).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="The cursor to continue after.")
        ] = None,
        search: Annotated[
            str, strawberry.argument(description="A name, or the start of a word in one.")
        ] = "",
    ) -> Connection[Member]:
        selectors.members_visible(viewer=require_viewer(info), chat=self)
        members = selectors.chat_members(chat=self, search=search)
        return paginate(members, MEMBER_ORDER, first=first, after=after, default_first=50)

    @strawberry_django.field(
        description=(
            "The room's bans in force, newest first: for its owner and admins; null for "
            "everyone else."
        )
    )
    def bans(self: models.Chat, info: strawberry.Info) -> list[Ban] | None:
        role = _my_membership(self, info).role
        if role not in {models.Membership.Role.OWNER, models.Membership.Role.ADMIN}:
            return None
        return selectors.room_bans(self)

    @strawberry_django.field(
        description=(
            "Its pinned messages, the most recently pinned first (one query for a whole "
            "chat list)."
        )
    )
    async def pinned_messages(self: models.Chat, info: strawberry.Info) -> list[Message]:
        return await info.context.loaders.pinned.load(self.id)

    @strawberry_django.field(
        description="How many of its members are online now (one query for a whole list)."
    )
    async def online_count(self: models.Chat, info: strawberry.Info) -> int:
        return await info.context.loaders.online_count.load(self.id)

    @strawberry_django.field(
        description=(
            "Unread messages in this chat that mention the viewer (`markRead` lowers it); "
            "one query for a whole chat list."
        )
    )
    async def unread_mention_count(self: models.Chat, info: strawberry.Info) -> int:
        return await info.context.loaders.unread_mentions.load(self.id)

    @strawberry_django.field(description="The viewer's unread messages in this chat.")
    @unless_loaded(_viewer_loaded)
    def unread_count(self: models.Chat, info: strawberry.Info) -> int:
        return self.last_seq - _my_membership(self, info).last_read_seq

    @strawberry_django.field(description="The `seq` the viewer has read up to.")
    @unless_loaded(_viewer_loaded)
    def last_read_seq(self: models.Chat, info: strawberry.Info) -> int:
        return _my_membership(self, info).last_read_seq

    @strawberry_django.field(
        description=(
            "The viewer has muted this chat's push notifications (`muteChat`). Unread "
            "counts and live events are unchanged."
        )
    )
    @unless_loaded(_viewer_loaded)
    def is_muted(self: models.Chat, info: strawberry.Info) -> bool:
        until = _my_membership(self, info).muted_until
        return until is not None and until > timezone.now()

    @strawberry_django.field(
        description=(
            "When the viewer's mute ends; null when not muted, or muted until `unmuteChat` "
            "(then `isMuted` is true)."
        )
    )
    @unless_loaded(_viewer_loaded)
    def muted_until(self: models.Chat, info: strawberry.Info) -> datetime | None:
        until = _my_membership(self, info).muted_until
        if until is None or until <= timezone.now() or until == models.Membership.MUTED_FOREVER:
            return None
        return until

    @strawberry_django.field(description="The viewer's role; null if not a member.")
    @unless_loaded(_viewer_loaded)
    def my_role(self: models.Chat, info: strawberry.Info) -> MemberRole | None:
        role = _my_membership(self, info).role
        return models.Membership.Role(role) if role else None

    @strawberry_django.field(description="The newest message, if any.")
    @unless_loaded(lambda chat: hasattr(chat, "prefetched_last_message"))
    def last_message(self: models.Chat) -> Message | None:
        if hasattr(self, "prefetched_last_message"):
            return self.prefetched_last_message
        return selectors.last_messages([self]).get(self.id)

    @strawberry_django.field(description="For a direct chat, the other member; null for rooms.")
    @unless_loaded(lambda chat: hasattr(chat, "prefetched_peer"))
    def peer(self: models.Chat, info: strawberry.Info) -> User | None:
        if hasattr(self, "prefetched_peer"):
            return self.prefetched_peer
        return selectors.direct_peers([self], viewer=info.context.user).get(self.id)


class ViewerMembership(NamedTuple):
    """What a chat shows of the viewer's own membership. A plain tuple: building a
    `Membership` model for each of a chat list's fields cost more than the fields."""

    last_read_seq: int
    role: str
    muted_until: datetime | None


def _my_membership(chat: models.Chat, info: strawberry.Info) -> ViewerMembership:
    """The viewer's read marker, role and mute: from the chat list's annotations or
    `selectors.viewer_chat` when they are there, else looked up once and kept on the chat."""
    if not hasattr(chat, "my_last_read_seq"):
        membership = models.Membership.objects.filter(chat=chat, user=info.context.user).first()
        selectors.remember_viewer(chat, membership)
    return ViewerMembership(
        chat.my_last_read_seq, chat.my_role or "", getattr(chat, "my_muted_until", None)
    )
