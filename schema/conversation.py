"""Conversation features beyond sending: reactions, pins and search."""

from typing import Annotated

import strawberry
import strawberry_django

from chat import search, services
from schema.arguments import MessageId
from schema.context import Context, require_viewer
from schema.errors import bad_user_input
from schema.pagination import DATETIME, FLOAT, UUID, Connection, Edge, Keyset, paginate
from schema.types import Message

Emoji = Annotated[
    str,
    strawberry.argument(
        description="One emoji (a single grapheme, skin tone and ZWJ sequences included) or "
        "a `:shortcode:` of 1 to 32 of a-z 0-9 _ + -."
    ),
]


@strawberry.type
class ConversationMutation:
    @strawberry_django.mutation(
        description=(
            "React to a message (again with the same emoji: nothing changes). A message takes "
            "at most 20 different emoji (`too_many_reactions`); `invalid_emoji`, "
            "`cannot_react` (deleted or SYSTEM). Members hear `ReactionChanged`."
        )
    )
    def add_reaction(
        self, info: strawberry.Info[Context], message_id: MessageId, emoji: Emoji
    ) -> Message:
        return services.add_reaction(user=require_viewer(info), message_id=message_id, emoji=emoji)

    @strawberry_django.mutation(description="Take a reaction back. Harmless without one.")
    def remove_reaction(
        self, info: strawberry.Info[Context], message_id: MessageId, emoji: Emoji
    ) -> Message:
        return services.remove_reaction(
            user=require_viewer(info), message_id=message_id, emoji=emoji
        )

    @strawberry_django.mutation(
        description=(
            "Pin a message to the top of its chat (`Chat.pinnedMessages`): any member of a "
            "direct chat, the owner and admins of a room (`admin_only`). A SYSTEM message "
            "(`MESSAGE_PINNED`, quoting it in `replyTo`) tells everyone live. At most 50 "
            "per chat (`too_many_pins`); `cannot_pin` for deleted and SYSTEM messages."
        )
    )
    def pin_message(self, info: strawberry.Info[Context], message_id: MessageId) -> Message:
        return services.pin_message(user=require_viewer(info), message_id=message_id)

    @strawberry_django.mutation(
        description=(
            "Unpin a message (a `MESSAGE_UNPINNED` SYSTEM message). Harmless if not pinned."
        )
    )
    def unpin_message(self, info: strawberry.Info[Context], message_id: MessageId) -> Message:
        return services.unpin_message(user=require_viewer(info), message_id=message_id)


@strawberry.type(description="A message that matches a search, with where it matched.")
class SearchHit:
    message: Message = strawberry.field(description="The message, as history shows it.")
    snippet: str = strawberry.field(
        description=(
            "Its text around the matches, HTML-escaped, each match in `<mark>…</mark>`: safe "
            "to use as innerHTML."
        )
    )
    rank: float = strawberry.field(
        description="How well it matched (higher first; 0 on the embedded SQLite default)."
    )


SEARCH_ORDER = Keyset((("rank", True, FLOAT), ("created_at", True, DATETIME), ("id", True, UUID)))


@strawberry.type
class ConversationQuery:
    @strawberry_django.field(
        description=(
            "Messages matching `query` in the viewer's chats (or in `chatId`), best first: "
            'words in any order, "quoted phrases", `or`, `-word`. Deleted messages are '
            "never found, nor chats the viewer is not in. 1 to 200 characters "
            "(`BAD_USER_INPUT`); rate limited like user search."
        )
    )
    def search_messages(
        self,
        info: strawberry.Info[Context],
        query: Annotated[str, strawberry.argument(description="What to look for.")],
        chat_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only in this chat.")
        ] = None,
        first: Annotated[
            int | None, strawberry.argument(description="Page size (default 20, at most 100).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="The cursor to continue after.")
        ] = None,
    ) -> Connection[SearchHit]:
        viewer = require_viewer(info)
        query = " ".join(query.split())
        if not 0 < len(query) <= search.QUERY_MAX:
            raise bad_user_input("`query` must be 1 to 200 characters.", argument="query")
        found = search.search(viewer=viewer, query=query, chat_id=chat_id)
        page = paginate(found, SEARCH_ORDER, first=first, after=after, default_first=20)
        page.edges = [
            Edge(
                node=SearchHit(
                    message=edge.node,
                    snippet=search.snippet(edge.node, query),
                    rank=edge.node.rank,
                ),
                cursor=edge.cursor,
            )
            for edge in page.edges
        ]
        return page
