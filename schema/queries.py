import strawberry
import strawberry_django

from schema.context import require_viewer
from schema.types import User


@strawberry.type(description="Reads. Each raises `UNAUTHENTICATED` when it needs a user.")
class Query:
    @strawberry_django.field(description="The signed-in user. `UNAUTHENTICATED` when signed out.")
    def me(self, info: strawberry.Info) -> User:
        return require_viewer(info)
