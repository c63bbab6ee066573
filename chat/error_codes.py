"""Stable error codes returned to clients in `OperationMessage.code`.

Clients branch on these, never on message text: a code, once shipped, keeps its name.
Django's own validation codes (`password_too_short`, `password_too_common`, ...) pass
through unchanged beside them.
"""

from enum import StrEnum


class AccountErrorCode(StrEnum):
    INVALID_EMAIL = "invalid_email"
    EMAIL_TAKEN = "email_taken"
    INVALID_DISPLAY_NAME = "invalid_display_name"
    INVALID_CREDENTIALS = "invalid_credentials"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105
    INVALID_RESET_LINK = "invalid_reset_link"
    NOTHING_TO_UPDATE = "nothing_to_update"


class ChatErrorCode(StrEnum):
    # A chat, user or message the viewer cannot see: "not found", never "forbidden", so
    # the answer does not reveal that it exists.
    NOT_FOUND = "not_found"
    CANNOT_CHAT_WITH_SELF = "cannot_chat_with_self"
    INVALID_ROOM_NAME = "invalid_room_name"
    TOPIC_TOO_LONG = "topic_too_long"
    NOT_A_ROOM = "not_a_room"
    ALREADY_MEMBER = "already_member"
    OWNER_ONLY = "owner_only"
    ADMIN_ONLY = "admin_only"  # the owner and admins only
    CANNOT_REMOVE_SELF = "cannot_remove_self"
    TOO_MANY_MEMBERS = "too_many_members"
    INVALID_SLUG = "invalid_slug"
    SLUG_TAKEN = "slug_taken"
    ROOM_ARCHIVED = "room_archived"  # read-only: no sends, edits, deletes or joins
    NOTHING_TO_UPDATE = "nothing_to_update"
    ONE_WAY_TO_NAME_A_ROOM = "one_way_to_name_a_room"  # give chatId or slug, not both
    BANNED = "banned"  # banned from the room: cannot join or be added
    OUTRANKED = "outranked"  # an admin acting on the owner or another admin
    CANNOT_CHANGE_OWN_ROLE = "cannot_change_own_role"
    INVALID_ROLE = "invalid_role"
    BAN_IN_PAST = "ban_in_past"
    REASON_TOO_LONG = "reason_too_long"
    REASON_REQUIRED = "reason_required"
    NOT_BANNED = "not_banned"
    OWN_MESSAGE = "own_message"  # reporting one's own message
    CANNOT_MESSAGE_USER = "cannot_message_user"  # a block between the two, either way
    NOT_DIRECT = "not_direct"  # only direct chats can be hidden
    CANNOT_BLOCK_SELF = "cannot_block_self"


class MessageErrorCode(StrEnum):
    MESSAGE_EMPTY = "message_empty"
    MESSAGE_TOO_LONG = "message_too_long"
    INVALID_CLIENT_ID = "invalid_client_id"
    CLIENT_ID_REUSED = "client_id_reused"
    NOT_AUTHOR = "not_author"
    MESSAGE_DELETED = "message_deleted"
    NOT_EDITABLE = "not_editable"
    INVALID_SEQ = "invalid_seq"
    INVALID_LATITUDE = "invalid_latitude"
    INVALID_LONGITUDE = "invalid_longitude"
    LABEL_TOO_LONG = "label_too_long"
    CAPTION_TOO_LONG = "caption_too_long"
    REPLY_NOT_FOUND = "reply_not_found"  # no such message in this chat
    CANNOT_REPLY = "cannot_reply"  # a deleted or SYSTEM message
    INVALID_EMOJI = "invalid_emoji"  # not one emoji, nor a :shortcode:
    TOO_MANY_REACTIONS = "too_many_reactions"  # REACTION_MAX_DISTINCT kinds already
    CANNOT_REACT = "cannot_react"  # a deleted or SYSTEM message
    CANNOT_PIN = "cannot_pin"  # a deleted or SYSTEM message
    TOO_MANY_PINS = "too_many_pins"  # PIN_MAX per chat
    MENTION_NOT_MEMBER = "mention_not_member"  # only the chat's members can be mentioned
    TOO_MANY_MENTIONS = "too_many_mentions"


class MediaErrorCode(StrEnum):
    """Why an upload was refused. Nothing is stored for any of them."""

    UPLOAD_MISSING = "upload_missing"
    FILE_EMPTY = "file_empty"
    FILE_TOO_LARGE = "file_too_large"
    IMAGE_TOO_LARGE = "image_too_large"  # too many pixels: a decompression bomb
    IMAGE_UNREADABLE = "image_unreadable"  # an image format whose data does not decode
    NOT_AN_IMAGE = "not_an_image"  # an avatar must be a PNG, JPEG, GIF or WebP image


class NotificationErrorCode(StrEnum):
    """Why a device could not be registered, or a chat muted."""

    ONE_KIND_OF_DEVICE = "one_kind_of_device"  # give exactly one of webPush and fcmToken
    INVALID_SUBSCRIPTION = "invalid_subscription"
    INVALID_FCM_TOKEN = "invalid_fcm_token"  # noqa: S105
    PUSH_NOT_CONFIGURED = "push_not_configured"  # this server has no keys for that service
    NAME_TOO_LONG = "name_too_long"
    MUTE_IN_PAST = "mute_in_past"
