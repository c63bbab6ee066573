"""Mutations: read arguments, call a `chat` service, return. Failures the client can fix
come back as `OperationInfo` (errors as data, with a stable `code`)."""

from typing import Annotated

import strawberry
import strawberry_django
from django.contrib.auth import logout as end_session
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest

from chat import models, services
from schema.context import Context, require_viewer
from schema.types import AuthPayload, Done, User

Email = Annotated[str, strawberry.argument(description="The sign-in email address.")]
Password = Annotated[str, strawberry.argument(description="The account password.")]
NewPassword = Annotated[
    str, strawberry.argument(description="The new password; must pass the password rules.")
]


def _signed_in(context: Context, token: str, user: models.User) -> AuthPayload:
    # The rest of this response is answered as the new session (so `user.email` shows).
    context.user = user
    return AuthPayload(token=token, user=user)


@strawberry.type(
    description="Writes. Failures the client can fix come back as `OperationInfo` with a `code`."
)
class Mutation:
    @strawberry_django.mutation(description="Create an account and sign in to it.")
    def register(
        self,
        info: strawberry.Info[Context],
        email: Email,
        password: NewPassword,
        display_name: Annotated[str, strawberry.argument(description="1 to 64 characters.")],
    ) -> AuthPayload:
        context = info.context
        token, user = services.register(
            email=email,
            password=password,
            display_name=display_name,
            address=context.client_address,
            user_agent=context.user_agent,
        )
        return _signed_in(context, token, user)

    @strawberry_django.mutation(
        description="Sign in. Failed attempts are limited per email and per client address."
    )
    def login(
        self, info: strawberry.Info[Context], email: Email, password: Password
    ) -> AuthPayload:
        context = info.context
        token, user = services.login(
            email=email,
            password=password,
            address=context.client_address,
            user_agent=context.user_agent,
        )
        return _signed_in(context, token, user)

    @strawberry_django.mutation(
        description="Sign out: revoke the token in use (or end the cookie session)."
    )
    def logout(self, info: strawberry.Info[Context]) -> Done:
        require_viewer(info)
        context = info.context
        if context.token is not None:
            services.logout(token=context.token)
        elif isinstance(context.request, HttpRequest):
            end_session(context.request)
        return Done(message="Signed out.")

    @strawberry_django.mutation(description="Change the signed-in user's public profile.")
    def update_profile(
        self,
        info: strawberry.Info[Context],
        display_name: Annotated[
            str | None, strawberry.argument(description="New display name, 1 to 64 characters.")
        ] = None,
    ) -> User:
        return services.update_profile(user=require_viewer(info), display_name=display_name)

    @strawberry_django.mutation(
        description="Change the password. Signs out every other session of the user."
    )
    def change_password(
        self,
        info: strawberry.Info[Context],
        current_password: Annotated[str, strawberry.argument(description="The password now.")],
        new_password: NewPassword,
    ) -> User:
        context = info.context
        user = services.change_password(
            user=require_viewer(info),
            current_password=current_password,
            new_password=new_password,
            keep=context.token,
        )
        if context.token is None and isinstance(context.request, HttpRequest):
            update_session_auth_hash(context.request, user)
        return user

    @strawberry_django.mutation(
        description=(
            "Email a password reset link. Answers the same whether or not the address has "
            "an account."
        )
    )
    def request_password_reset(self, info: strawberry.Info[Context], email: Email) -> Done:
        services.request_password_reset(email=email, address=info.context.client_address)
        return Done(message="If an account uses this address, we sent it a reset link.")

    @strawberry_django.mutation(
        description="Set a new password from the emailed link. Signs out every session."
    )
    def reset_password(
        self,
        uid: Annotated[str, strawberry.argument(description="The `uid` from the link.")],
        token: Annotated[str, strawberry.argument(description="The `token` from the link.")],
        new_password: NewPassword,
    ) -> Done:
        services.reset_password(uid=uid, token=token, new_password=new_password)
        return Done(message="Your password was changed. Sign in with the new one.")
