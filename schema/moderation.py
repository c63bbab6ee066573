"""Moderating rooms (roles, bans, reports) and a user's own defences (blocks, hiding a
direct chat)."""

from datetime import datetime
from typing import Annotated

import strawberry
import strawberry_django

from chat import selectors, services
from schema.arguments import RoomId, UserId
from schema.context import Context, require_viewer
from schema.types import Ban, Chat, Member, MemberRole, User


@strawberry.type(description="The report was received; staff will review it.")
class ReportReceived:
    message_id: strawberry.ID = strawberry.field(description="The message reported.")


@strawberry.type
class ModerationMutation:
    @strawberry_django.mutation(
        description=(
            "Make a member an ADMIN or a MEMBER, or hand them the room (OWNER; you become "
            "an admin). The owner only (`owner_only`). A SYSTEM message records it."
        )
    )
    def set_member_role(
        self,
        info: strawberry.Info[Context],
        chat_id: RoomId,
        user_id: UserId,
        role: Annotated[MemberRole, strawberry.argument(description="The new role.")],
    ) -> Member:
        return services.set_member_role(
            owner=require_viewer(info), chat_id=chat_id, user_id=user_id, role=role.value
        )

    @strawberry_django.mutation(
        description=(
            "Ban a user from a room until `until` (null: until `unbanMember`): removed if in "
            "it, refused by `joinRoom` and `addMembers` (`banned`). The owner and admins "
            "(admins only members: `outranked`). A SYSTEM message records it."
        )
    )
    def ban_member(
        self,
        info: strawberry.Info[Context],
        chat_id: RoomId,
        user_id: UserId,
        until: Annotated[
            datetime | None, strawberry.argument(description="When it ends, in the future.")
        ] = None,
        reason: Annotated[str, strawberry.argument(description="Why, up to 500 characters.")] = "",
    ) -> Ban:
        return services.ban_member(
            actor=require_viewer(info),
            chat_id=chat_id,
            user_id=user_id,
            until=until,
            reason=reason,
        )

    @strawberry_django.mutation(
        description="Lift a ban (`not_banned` if there is none). The owner and admins."
    )
    def unban_member(
        self, info: strawberry.Info[Context], chat_id: RoomId, user_id: UserId
    ) -> Chat:
        viewer = require_viewer(info)
        services.unban_member(actor=viewer, chat_id=chat_id, user_id=user_id)
        return selectors.chat_for_member(user=viewer, chat_id=chat_id)

    @strawberry_django.mutation(
        description=(
            "Report a message in one of your chats to the service's staff (not to the room's "
            "admins). Reporting it again updates the reason. Not your own messages."
        )
    )
    def report_message(
        self,
        info: strawberry.Info[Context],
        message_id: Annotated[strawberry.ID, strawberry.argument(description="The message.")],
        reason: Annotated[str, strawberry.argument(description="What is wrong, 1 to 500.")],
    ) -> ReportReceived:
        report = services.report_message(
            reporter=require_viewer(info), message_id=message_id, reason=reason
        )
        return ReportReceived(message_id=strawberry.ID(str(report.message_id)))

    @strawberry_django.mutation(
        description=(
            "Block a user: no direct messages between you either way "
            "(`cannot_message_user`), and their messages in shared rooms come with "
            "`author.isBlockedByMe`. Harmless twice."
        )
    )
    def block_user(self, info: strawberry.Info[Context], user_id: UserId) -> User:
        return services.block_user(user=require_viewer(info), user_id=user_id)

    @strawberry_django.mutation(description="Lift a block. Harmless without one.")
    def unblock_user(self, info: strawberry.Info[Context], user_id: UserId) -> User:
        return services.unblock_user(user=require_viewer(info), user_id=user_id)

    @strawberry_django.mutation(
        description=(
            "Take a direct chat off your `chats` list until a new message arrives in it (or "
            "you open it again). Rooms are left instead (`not_direct`)."
        )
    )
    def hide_chat(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[strawberry.ID, strawberry.argument(description="The chat's id.")],
    ) -> Chat:
        membership = services.hide_chat(user=require_viewer(info), chat_id=chat_id)
        return selectors.viewer_chat(membership)
