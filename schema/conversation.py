"""Conversation features beyond sending: reactions and pins."""

from typing import Annotated

import strawberry
import strawberry_django

from chat import services
from schema.context import Context, require_viewer
from schema.types import Message

MessageId = Annotated[strawberry.ID, strawberry.argument(description="The message.")]
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
