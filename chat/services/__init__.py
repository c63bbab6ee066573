"""Writes. Resolvers, the admin, management commands and tests all call these.

Each service validates its input and raises Django `ValidationError`s keyed by field, with
a code from `chat.error_codes` (or Django's own password codes), before it writes anything.
"""

from chat.services.accounts import (
    change_password,
    login,
    logout,
    register,
    remove_avatar,
    request_password_reset,
    reset_password,
    update_profile,
)
from chat.services.chats import (
    create_room,
    join_room,
    leave_room,
    open_direct_chat,
)
from chat.services.messages import (
    delete_message,
    edit_message,
    mark_read,
    remove_message,
    send_attachment,
    send_location,
    send_message,
)
from chat.services.moderation import (
    add_members,
    ban_member,
    handle_reports,
    remove_member,
    report_message,
    set_member_role,
    unban_member,
)
from chat.services.notifications import (
    mute_chat,
    register_device,
    set_devices_active,
    unmute_chat,
    unregister_device,
)
from chat.services.pins import pin_message, unpin_message
from chat.services.privacy import block_user, hide_chat, unblock_user
from chat.services.reactions import add_reaction, remove_reaction
from chat.services.rooms import archive_room, update_room
from chat.services.typing import set_typing

__all__ = [
    "add_members",
    "add_reaction",
    "archive_room",
    "ban_member",
    "block_user",
    "change_password",
    "create_room",
    "delete_message",
    "edit_message",
    "handle_reports",
    "hide_chat",
    "join_room",
    "leave_room",
    "login",
    "logout",
    "mark_read",
    "mute_chat",
    "open_direct_chat",
    "pin_message",
    "register",
    "register_device",
    "remove_avatar",
    "remove_member",
    "remove_message",
    "remove_reaction",
    "report_message",
    "request_password_reset",
    "reset_password",
    "send_attachment",
    "send_location",
    "send_message",
    "set_devices_active",
    "set_member_role",
    "set_typing",
    "unban_member",
    "unblock_user",
    "unmute_chat",
    "unpin_message",
    "unregister_device",
    "update_profile",
    "update_room",
]
