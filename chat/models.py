"""Accounts and access tokens. Chats, memberships and messages join them here."""

import uuid
from datetime import UTC, datetime

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from chat.loading import LoadedFast


def normalize_email(email: str) -> str:
    """The one spelling of an address we store and look up: trimmed and lowercased.

    Lowercasing the local part is not what RFC 5321 says, but every mail provider our
    users have treats it so, and two accounts for `Ada@x` and `ada@x` would be a bug.
    """
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: object) -> "User":
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str, **fields: object) -> "User":
        fields.setdefault("display_name", email.split("@")[0])
        return self.create_user(email, password, is_staff=True, is_superuser=True, **fields)


class User(LoadedFast, AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an email address."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(
        unique=True, help_text="Sign-in address; stored lowercased. Private to the user."
    )
    display_name = models.CharField(max_length=64, help_text="Name shown to other users.")
    is_active = models.BooleanField(
        default=True, help_text="Inactive users cannot sign in or be found."
    )
    is_staff = models.BooleanField(default=False, help_text="May sign in to the admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    # When the user's last socket closed; null while one is open (chat.presence keeps it),
    # which is how the push worker, another process, tells who is online.
    last_seen_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # Square, re-encoded without metadata (chat.media), under random storage names.
    avatar = models.FileField(max_length=200, blank=True, help_text="Profile photo.")
    avatar_thumbnail = models.FileField(max_length=200, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["display_name"]

    class Meta:
        constraints = [
            # `email` is stored lowercased, but a row written around the manager must
            # still not create a second account for the same address.
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]
        indexes = [
            models.Index(Lower("display_name"), name="user_display_name_lower_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}>"


class AuthToken(LoadedFast, models.Model):
    """A bearer token. Only its SHA-256 is stored: a database leak leaks no tokens."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_tokens")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, to tell tokens apart in the admin.
    prefix = models.CharField(max_length=12, editable=False)
    user_agent = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"], name="token_user_revoked_idx")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class Chat(LoadedFast, models.Model):
    """A conversation: a direct chat between two users, or a group room."""

    class Kind(models.TextChoices):
        DIRECT = "DIRECT", "Direct"
        GROUP = "GROUP", "Group"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=6, choices=Kind.choices)
    name = models.CharField(
        max_length=100, blank=True, help_text="Room name; empty for direct chats."
    )
    topic = models.CharField(max_length=300, blank=True)
    is_public = models.BooleanField(
        default=False, help_text="Anyone may find and join a public room."
    )
    # "<smaller user id>:<larger user id>" for a direct chat: one chat per pair, enforced
    # by the database even when both users open it at the same moment.
    direct_key = models.CharField(
        max_length=65, unique=True, null=True, blank=True, editable=False
    )
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The seq of the newest message; messages are numbered 1..last_seq without gaps.
    last_seq = models.BigIntegerField(default=0)
    # The newest `Change`'s revision; changes are numbered 1..revision without gaps.
    revision = models.BigIntegerField(
        default=0, help_text="The newest change's position: chatEvents(after:) resumes from it."
    )
    last_message_at = models.DateTimeField(null=True, blank=True)
    member_count = models.PositiveIntegerField(default=0)
    members = models.ManyToManyField(User, through="Membership", related_name="chats")
    # A room's name in URLs (`room(slug)`, `joinRoom(slug)`): lowercase letters, digits, "-".
    slug = models.CharField(max_length=50, unique=True, null=True, blank=True)
    # An archived room is read-only: its history stays, nothing new is written to it.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="GROUP", direct_key__isnull=True)
                | models.Q(kind="DIRECT", direct_key__isnull=False),
                name="chat_direct_key_iff_direct",
            ),
        ]
        indexes = [
            models.Index(
                Lower("name"), name="chat_public_name_idx", condition=models.Q(is_public=True)
            ),
            # A chat list's order (selectors.chats_for_user): its first page walks this
            # index and stops after a page of the user's chats, where sorting all of them
            # took 5.9 ms for a user in 5,000 (bench/RESULTS.md). A send changes the key,
            # so a chat's row update is no longer HOT: one more index entry per message.
            models.Index(
                Coalesce("last_message_at", "created_at").desc(),
                models.F("id").desc(),
                name="chat_activity_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"direct {self.direct_key}"

    @staticmethod
    def direct_key_for(a: uuid.UUID, b: uuid.UUID) -> str:
        low, high = sorted([a.hex, b.hex])
        return f"{low}:{high}"


class Membership(LoadedFast, models.Model):
    class Role(models.TextChoices):
        OWNER = "OWNER", "Owner"
        ADMIN = "ADMIN", "Admin"
        MEMBER = "MEMBER", "Member"

    # Both lookups are served by the composite keys below, not single-column indexes.
    chat = models.ForeignKey(
        Chat, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    role = models.CharField(max_length=6, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    # Messages up to this seq have been read by the user; unread = chat.last_seq - this.
    last_read_seq = models.BigIntegerField(default=0)
    # No push notifications from this chat before then; MUTED_FOREVER until unmuted.
    muted_until = models.DateTimeField(null=True, blank=True)
    # Hidden from the user's chat list (`hideChat`) until a message newer than this.
    hidden_at = models.DateTimeField(null=True, blank=True)

    MUTED_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chat", "user"], name="membership_chat_user_unique"),
        ]
        indexes = [models.Index(fields=["user", "chat"], name="membership_user_chat_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.chat_id}"


class Attachment(LoadedFast, models.Model):
    """A file sent in a message, stored under a random name (`chat.storage`). `name` is the
    sender's file name, kept only as a label for the download."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    file = models.FileField(max_length=200, help_text="Storage name; random.")
    thumbnail = models.FileField(
        max_length=200, blank=True, help_text="For images: at most 320 px on the long side."
    )
    name = models.CharField(max_length=200, help_text="The sender's file name (a label).")
    content_type = models.CharField(
        max_length=100, help_text="Decided from the file's bytes, never from the client."
    )
    size = models.PositiveBigIntegerField(help_text="Bytes stored.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    uploaded_by = models.ForeignKey(
        "User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} bytes)"


class Message(LoadedFast, models.Model):
    class Kind(models.TextChoices):
        TEXT = "TEXT", "Text"
        LOCATION = "LOCATION", "Location"
        IMAGE = "IMAGE", "Image"
        FILE = "FILE", "File"
        SYSTEM = "SYSTEM", "System"

    class SystemEvent(models.TextChoices):
        MEMBER_JOINED = "MEMBER_JOINED", "Member joined"
        MEMBER_LEFT = "MEMBER_LEFT", "Member left"
        MEMBER_ADDED = "MEMBER_ADDED", "Member added"
        MEMBER_REMOVED = "MEMBER_REMOVED", "Member removed"
        ROOM_CREATED = "ROOM_CREATED", "Room created"
        MEMBER_BANNED = "MEMBER_BANNED", "Member banned"
        MEMBER_UNBANNED = "MEMBER_UNBANNED", "Member unbanned"
        ROLE_CHANGED = "ROLE_CHANGED", "Role changed"
        MESSAGE_PINNED = "MESSAGE_PINNED", "Message pinned"  # replyTo: the message
        MESSAGE_UNPINNED = "MESSAGE_UNPINNED", "Message unpinned"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # (chat, seq) is unique and indexed; a chat_id index alone would be redundant.
    chat = models.ForeignKey(
        Chat, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    seq = models.BigIntegerField(help_text="Position in the chat: 1, 2, 3… without gaps.")
    author = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        help_text="Null for system messages.",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(blank=True)
    # The message this one answers (same chat), shown as a quote; pins point at theirs too.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The body's words for full-text search. On PostgreSQL a trigger keeps it (migration
    # 0013) and a GIN index serves it; the embedded SQLite default leaves it empty.
    search_vector = SearchVectorField(null=True, editable=False)
    # Pinned to the top of its chat (`Chat.pinnedMessages`) since then, by them.
    pinned_at = models.DateTimeField(null=True, blank=True)
    pinned_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # For SYSTEM messages: what happened, and to whom.
    system_event = models.CharField(max_length=16, choices=SystemEvent.choices, blank=True)
    subject = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The sender's idempotency key: a retried send with the same key is the same message.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL is "no key"; the partial unique constraint needs it
    # IMAGE and FILE messages; deleting the message deletes the attachment and its files.
    attachment = models.OneToOneField(
        Attachment, null=True, blank=True, on_delete=models.SET_NULL, related_name="message"
    )
    # LOCATION messages (WGS 84 degrees).
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    location_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the index every history page reads: (chat, seq) in either direction.
            models.UniqueConstraint(fields=["chat", "seq"], name="message_chat_seq_unique"),
            models.UniqueConstraint(
                fields=["author", "client_id"],
                name="message_author_client_id_unique",
                condition=models.Q(client_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chat_id}#{self.seq}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Change(LoadedFast, models.Model):
    """One change to a chat's timeline that subscribers render: a message added, edited or
    deleted (joins and leaves are SYSTEM messages, so they are added messages too).

    Numbered per chat, 1, 2, 3... without gaps, under the chat's row lock: a subscriber that
    saw revision n and hears n + 2 knows it missed one, and `chatEvents(after: n)` replays
    every change after n from here. Channel layers deliver at most once; this log is what
    makes an outage of the layer recoverable.
    """

    class Kind(models.TextChoices):
        ADDED = "ADDED", "Added"
        EDITED = "EDITED", "Edited"
        DELETED = "DELETED", "Deleted"

    # (chat, revision) is unique and indexed; a chat_id index alone would be redundant.
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="+", db_index=False)
    revision = models.BigIntegerField()
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=7, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chat", "revision"], name="change_chat_revision_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chat_id}@{self.revision} {self.kind} {self.message_id}"


class Device(LoadedFast, models.Model):
    """Where a user's push notifications go: a browser's Web Push subscription or a mobile
    app's FCM registration token. `address` (the endpoint or the token) is unique: the same
    one registered again is the same device, whoever registers it."""

    class Kind(models.TextChoices):
        WEB_PUSH = "WEB_PUSH", "Web Push"
        FCM = "FCM", "Firebase Cloud Messaging"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    address = models.CharField(max_length=2048, unique=True, help_text="Endpoint or token.")
    # Web Push only: the browser's P-256 public key and auth secret (base64url).
    p256dh = models.CharField(max_length=100, blank=True)
    auth = models.CharField(max_length=50, blank=True)
    name = models.CharField(max_length=100, blank=True, help_text="A label, e.g. the browser.")
    # The session that registered it: signing that session out unregisters the device.
    auth_token = models.ForeignKey(
        AuthToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Inactive once the push service says it is gone (404, 410) or staff turn it off.
    is_active = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # Failed deliveries since the last success, and the newest one's reason.
    failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=200, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "is_active"], name="device_user_active_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name or self.id} ({self.user_id})"


class Ban(LoadedFast, models.Model):
    """A user kept out of a room (removed, and refused by `joinRoom` and `addMembers`)
    until `until`, or until unbanned when it is null."""

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="bans")
    banned_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="Empty: until unbanned.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chat", "user"], name="ban_chat_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} banned from {self.chat_id}"


class Report(LoadedFast, models.Model):
    """A member's report of a message, for staff to act on in the admin."""

    class Status(models.TextChoices):
        OPEN = "OPEN", "Open"
        RESOLVED = "RESOLVED", "Resolved (message removed)"
        DISMISSED = "DISMISSED", "Dismissed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    handled_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Reporting the same message twice is one report.
            models.UniqueConstraint(fields=["message", "reporter"], name="report_once")
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="report_status_idx")]

    def __str__(self) -> str:
        return f"Report of {self.message_id} by {self.reporter_id}"


class Block(LoadedFast, models.Model):
    """`blocker` blocked `blocked`: no direct messages between them either way, and the
    blocker's API flags the other's messages in shared rooms."""

    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocked_by")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_once"),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"


class Reaction(LoadedFast, models.Model):
    """One user's emoji on one message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_once")
        ]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id} by {self.user_id}"


class MessageEdit(LoadedFast, models.Model):
    """A message's body before one of its edits (`Message.editHistory`)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    body = models.TextField()
    # When this body was replaced.
    edited_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["message", "edited_at"], name="message_edit_idx")]

    def __str__(self) -> str:
        return f"Edit of {self.message_id} at {self.edited_at}"


class Mention(LoadedFast, models.Model):
    """A member a message @-mentions (picked by the sender, so names need not be unique)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mentions")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="mention_once"),
        ]
        indexes = [models.Index(fields=["user", "message"], name="mention_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.message_id}"
