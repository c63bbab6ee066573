from typing import Annotated

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async

from chat import models, presence, selectors
from schema.arguments import After, Before, First, Last
from schema.context import Context, require_viewer
from schema.conversation import ConversationQuery
from schema.notifications import NotificationQuery
from schema.pagination import DATETIME, INTEGER, TEXT, UUID, Connection, Keyset, paginate
from schema.rooms import RoomQuery
from schema.selection import message_joins, selected_below
from schema.types import Chat, Message, User

Search = Annotated[str, strawberry.argument(description="Text to look for; empty lists all.")]

CHAT_ORDER = Keyset((("activity_at", True, DATETIME), ("id", True, UUID)))
MESSAGE_ORDER = Keyset((("seq", False, INTEGER),))
ROOM_ORDER = Keyset((("member_count", True, INTEGER), ("id", True, UUID)))
USER_ORDER = Keyset((("display_name", False, TEXT), ("id", False, UUID)))


@strawberry.type(description="Reads. Each raises `UNAUTHENTICATED` when it needs a user.")
class Query(NotificationQuery, RoomQuery, ConversationQuery):
    @strawberry_django.field(description="The signed-in user. `UNAUTHENTICATED` when signed out.")
    def me(self, info: strawberry.Info[Context]) -> User:
        return require_viewer(info)

    @strawberry_django.field(description="An active user by id; `NOT_FOUND` otherwise.")
    def user(
        self,
        info: strawberry.Info[Context],
        id: Annotated[strawberry.ID, strawberry.argument(description="The user's id.")],
    ) -> User:
        require_viewer(info)
        return selectors.active_user(id)

    @strawberry_django.field(
        description=(
            "Active users whose display name starts a word with `search`, or whose email "
            "is exactly `search`. Rate limited (`RATE_LIMITED`)."
        )
    )
    def users(
        self,
        info: strawberry.Info[Context],
        search: Search = "",
        first: First = None,
        after: After = None,
    ) -> Connection[User]:
        users = selectors.search_users(viewer=require_viewer(info), search=search)
        return paginate(users, USER_ORDER, first=first, after=after, default_first=20)

    @strawberry_django.field(description="The viewer's chats, most recent activity first.")
    def chats(
        self, info: strawberry.Info[Context], first: First = None, after: After = None
    ) -> Connection[Chat]:
        viewer = require_viewer(info)
        shown = selected_below(info, "edges", "node")
        return paginate(
            selectors.user_chats(viewer),
            CHAT_ORDER,
            first=first,
            after=after,
            default_first=50,
            prepare=lambda chats: selectors.prepare_chat_page(
                chats,
                viewer=viewer,
                last_message="lastMessage" in shown,
                message_joins=message_joins(selected_below(info, "edges", "node", "lastMessage")),
                peer="peer" in shown,
            ),
        )

    @strawberry_django.field(description="One of the viewer's chats; `NOT_FOUND` otherwise.")
    def chat(
        self,
        info: strawberry.Info[Context],
        id: Annotated[strawberry.ID, strawberry.argument(description="The chat's id.")],
    ) -> Chat:
        return selectors.chat_for_member(user=require_viewer(info), chat_id=id)

    @strawberry_django.field(
        description=(
            "The chat's members who are online now (at least one open socket), by name. "
            "Follow changes with `chatEvents` (`PresenceChanged`)."
        )
    )
    async def online_users(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[strawberry.ID, strawberry.argument(description="The chat's id.")],
    ) -> list[User]:
        chat = await sync_to_async(selectors.chat_for_member)(
            user=require_viewer(info), chat_id=chat_id
        )
        member_ids = [
            user_id
            async for user_id in models.Membership.objects.filter(chat=chat).values_list(
                "user_id", flat=True
            )
        ]
        online = await presence.online_user_ids(member_ids)
        return [
            user
            async for user in models.User.objects.filter(pk__in=online).order_by(
                "display_name", "id"
            )
        ]

    @strawberry_django.field(description="Public rooms, the busiest first.")
    def rooms(
        self,
        info: strawberry.Info[Context],
        search: Search = "",
        first: First = None,
        after: After = None,
    ) -> Connection[Chat]:
        require_viewer(info)
        rooms = selectors.public_rooms(search=search)
        return paginate(rooms, ROOM_ORDER, first=first, after=after, default_first=20)

    @strawberry_django.field(
        description=(
            "A chat's history in `seq` order. `last: 30` is the newest page; "
            "`last: 30, before: <first cursor>` loads the messages before it."
        )
    )
    def messages(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[strawberry.ID, strawberry.argument(description="The chat's id.")],
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Message]:
        viewer = require_viewer(info)
        joins = message_joins(selected_below(info, "edges", "node"))
        page = paginate(
            selectors.member_messages(user=viewer, chat_id=chat_id, joins=joins),
            MESSAGE_ORDER,
            first=first,
            after=after,
            last=last,
            before=before,
            default_last=50,
        )
        if not page.edges:  # an empty chat, or one the viewer is not in (NotFound)
            selectors.membership_for(user=viewer, chat_id=chat_id)
        return page
