"""GraphQL object types. Python names mirror the SDL names."""

from datetime import datetime

import strawberry
import strawberry_django

from chat import models


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
    def email(self: models.User, info: strawberry.Info) -> str | None:
        viewer = info.context.user
        return self.email if viewer is not None and viewer.pk == self.pk else None


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
