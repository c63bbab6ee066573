"""Managing rooms: finding one by slug, changing its settings, archiving it."""

from typing import Annotated

import strawberry
import strawberry_django

from chat import selectors, services
from schema.arguments import RoomId
from schema.context import Context, require_viewer
from schema.types import Chat


@strawberry.type
class RoomQuery:
    @strawberry_django.field(
        description=(
            "A room by its slug (as in a URL): a public room, or one the viewer is in; "
            "`NOT_FOUND` otherwise."
        )
    )
    def room(
        self,
        info: strawberry.Info[Context],
        slug: Annotated[str, strawberry.argument(description="The room's slug.")],
    ) -> Chat:
        return selectors.room_by_slug(viewer=require_viewer(info), slug=slug)


@strawberry.type
class RoomMutation:
    @strawberry_django.mutation(
        description=(
            "Change a room's settings: only those given (an empty `slug` removes it). The "
            "owner and admins may (`admin_only` otherwise); members hear `ChatUpdated`."
        )
    )
    def update_room(
        self,
        info: strawberry.Info[Context],
        chat_id: RoomId,
        name: Annotated[
            str | None, strawberry.argument(description="1 to 100 characters.")
        ] = None,
        topic: Annotated[
            str | None, strawberry.argument(description="Up to 300 characters.")
        ] = None,
        is_public: Annotated[
            bool | None, strawberry.argument(description="Anyone may find and join it.")
        ] = None,
        slug: Annotated[
            str | None,
            strawberry.argument(
                description="A new slug (lowercase letters, digits, hyphens), or empty for none."
            ),
        ] = None,
    ) -> Chat:
        viewer = require_viewer(info)
        services.update_room(
            chat_id=chat_id, actor=viewer, name=name, topic=topic, is_public=is_public, slug=slug
        )
        return selectors.chat_for_member(user=viewer, chat_id=chat_id)

    @strawberry_django.mutation(
        description=(
            "Archive a room: read-only for everyone (history stays; sends, edits and joins "
            "get `room_archived`) and gone from `rooms`. The owner only; members hear "
            "`ChatUpdated`."
        )
    )
    def archive_room(self, info: strawberry.Info[Context], chat_id: RoomId) -> Chat:
        viewer = require_viewer(info)
        services.archive_room(owner=viewer, chat_id=chat_id)
        return selectors.chat_for_member(user=viewer, chat_id=chat_id)
