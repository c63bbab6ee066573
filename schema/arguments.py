"""Arguments many operations take, described once."""

from typing import Annotated

import strawberry

ChatId = Annotated[strawberry.ID, strawberry.argument(description="The chat's id.")]
RoomId = Annotated[strawberry.ID, strawberry.argument(description="The room's id.")]
MessageId = Annotated[strawberry.ID, strawberry.argument(description="The message's id.")]
UserId = Annotated[strawberry.ID, strawberry.argument(description="The user's id.")]
First = Annotated[int | None, strawberry.argument(description="Page forward: this many items.")]
After = Annotated[str | None, strawberry.argument(description="Page forward from this cursor.")]
Last = Annotated[int | None, strawberry.argument(description="Page backward: this many items.")]
Before = Annotated[str | None, strawberry.argument(description="Page backward from this cursor.")]
