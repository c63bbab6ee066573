"""Mutations: read arguments, call a `chat` service, return. Failures the client can fix
come back as `OperationInfo` (errors as data, with a stable `code`)."""

from typing import Annotated, Any

import strawberry
import strawberry_django
from django.contrib.auth import logout as end_session
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest

from chat import models, selectors, services
from schema.arguments import ChatId, MessageId
from schema.context import Context, require_viewer
from schema.conversation import ConversationMutation
from schema.moderation import ModerationMutation
from schema.notifications import NotificationMutation
from schema.rooms import RoomMutation
from schema.types import AuthPayload, Chat, Done, Message, User
from schema.uploads import Upload

Email = Annotated[str, strawberry.argument(description="The sign-in email address.")]
Password = Annotated[str, strawberry.argument(description="The account password.")]
Body = Annotated[str, strawberry.argument(description="The text; trimmed, 1 to 4,000 characters.")]
SLUG = (
    "The room's name in URLs, unique: 1 to 50 lowercase letters, digits and single hyphens "
    "between them (`slug_taken` when another room has it)."
)
NewPassword = Annotated[
    str, strawberry.argument(description="The new password; must pass the password rules.")
]


def _reply_to_id() -> Any:
    return strawberry.field(
        default=None,
        description=(
            "Answer this message of the same chat: the new one carries it as `replyTo` "
            "(`reply_not_found`; `cannot_reply` for a deleted or SYSTEM message)."
        ),
    )


def _client_id() -> Any:
    return strawberry.field(
        default=None,
        description=(
            "Your idempotency key (1 to 64 of A-Z a-z 0-9 . _ : -), unique per message you "
            "send. Retrying with the same key returns the original message, never a copy."
        ),
    )


@strawberry.input(description="A text message to send.")
class SendMessageInput:
    chat_id: strawberry.ID = strawberry.field(description="The chat to send to.")
    body: str = strawberry.field(description="The text; trimmed, 1 to 4,000 characters.")
    reply_to_id: strawberry.ID | None = _reply_to_id()
    mentions: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description=(
            "Members this message @-mentions, as the client picked them (names are not "
            "unique): at most 50, each in the chat (`mention_not_member`). They see it in "
            "`inbox` as `Mentioned` and in `unreadMentionCount`; pushes reach them even in "
            "a muted chat."
        ),
    )
    client_id: str | None = _client_id()


@strawberry.input(description="A photo or file to send, with an optional caption.")
class SendAttachmentInput:
    chat_id: strawberry.ID = strawberry.field(description="The chat to send to.")
    file: Upload = strawberry.field(
        description=(
            "The file, as a multipart request part, at most `UPLOAD_MAX_BYTES` (10 MB by "
            "default). A PNG, JPEG, GIF or WebP image that decodes becomes an IMAGE "
            "(re-encoded without its metadata); anything else a FILE."
        )
    )
    caption: str = strawberry.field(
        default="", description="Text shown with it; trimmed, up to 4,000 characters."
    )
    reply_to_id: strawberry.ID | None = _reply_to_id()
    client_id: str | None = _client_id()


@strawberry.input(description="A point on the map to send.")
class SendLocationInput:
    chat_id: strawberry.ID = strawberry.field(description="The chat to send to.")
    latitude: float = strawberry.field(description="Degrees north, -90 to 90 (WGS 84).")
    longitude: float = strawberry.field(description="Degrees east, -180 to 180 (WGS 84).")
    label: str = strawberry.field(
        default="", description="A place name or address; trimmed, up to 200 characters."
    )
    reply_to_id: strawberry.ID | None = _reply_to_id()
    client_id: str | None = _client_id()


def _signed_in(context: Context, token: str, user: models.User) -> AuthPayload:
    # The rest of this response is answered as the new session (so `user.email` shows).
    context.user = user
    return AuthPayload(token=token, user=user)


@strawberry.type(
    description="Writes. Failures the client can fix come back as `OperationInfo` with a `code`."
)
class Mutation(NotificationMutation, RoomMutation, ModerationMutation, ConversationMutation):
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
    async def update_profile(
        self,
        info: strawberry.Info[Context],
        display_name: Annotated[
            str | None, strawberry.argument(description="New display name, 1 to 64 characters.")
        ] = None,
        avatar: Annotated[
            Upload | None,
            strawberry.argument(
                description=(
                    "A new profile photo (multipart upload): a PNG, JPEG, GIF or WebP "
                    "image, cropped to a square and stored without its metadata."
                )
            ),
        ] = None,
    ) -> User:
        return await services.update_profile(
            user=require_viewer(info), display_name=display_name, avatar=avatar
        )

    @strawberry_django.mutation(description="Remove the profile photo. Harmless without one.")
    def remove_avatar(self, info: strawberry.Info[Context]) -> User:
        return services.remove_avatar(user=require_viewer(info))

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

    @strawberry_django.mutation(
        description="The direct chat with a user: the existing one, or a new one."
    )
    def open_direct_chat(
        self,
        info: strawberry.Info[Context],
        user_id: Annotated[strawberry.ID, strawberry.argument(description="The other user.")],
    ) -> Chat:
        return services.open_direct_chat(user=require_viewer(info), other_user_id=user_id)

    @strawberry_django.mutation(description="Create a group room; the viewer becomes its owner.")
    def create_room(
        self,
        info: strawberry.Info[Context],
        name: Annotated[str, strawberry.argument(description="1 to 100 characters.")],
        topic: Annotated[str, strawberry.argument(description="Up to 300 characters.")] = "",
        is_public: Annotated[
            bool, strawberry.argument(description="Anyone may find and join it.")
        ] = False,
        slug: Annotated[str | None, strawberry.argument(description=SLUG)] = None,
    ) -> Chat:
        return services.create_room(
            owner=require_viewer(info), name=name, topic=topic, is_public=is_public, slug=slug
        )

    @strawberry_django.mutation(
        description=(
            "Join a public room, by `chatId` or by `slug` (one of them). Joining twice is "
            "harmless; an archived room refuses (`room_archived`)."
        )
    )
    def join_room(
        self,
        info: strawberry.Info[Context],
        chat_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="The room's id.")
        ] = None,
        slug: Annotated[str | None, strawberry.argument(description="The room's slug.")] = None,
    ) -> Chat:
        return services.join_room(user=require_viewer(info), chat_id=chat_id, slug=slug)

    @strawberry_django.mutation(
        description="Leave a room. An owner hands the room to its longest-standing member."
    )
    def leave_room(self, info: strawberry.Info[Context], chat_id: ChatId) -> Chat:
        return services.leave_room(user=require_viewer(info), chat_id=chat_id)

    @strawberry_django.mutation(
        description=(
            "Add users to a room (private rooms too): its owner and admins. A banned user "
            "refuses the whole call (`banned`)."
        )
    )
    def add_members(
        self,
        info: strawberry.Info[Context],
        chat_id: ChatId,
        user_ids: Annotated[list[strawberry.ID], strawberry.argument(description="Who to add.")],
    ) -> Chat:
        return services.add_members(actor=require_viewer(info), chat_id=chat_id, user_ids=user_ids)

    @strawberry_django.mutation(
        description=(
            "Remove a member: the owner anyone, an admin only members (`outranked`). Their "
            "subscriptions to the room end."
        )
    )
    def remove_member(
        self,
        info: strawberry.Info[Context],
        chat_id: ChatId,
        user_id: Annotated[strawberry.ID, strawberry.argument(description="Who to remove.")],
    ) -> Chat:
        return services.remove_member(actor=require_viewer(info), chat_id=chat_id, user_id=user_id)

    @strawberry_django.mutation(
        description="Send a text message. Limited per user: a burst, then a steady rate."
    )
    def send_message(
        self,
        info: strawberry.Info[Context],
        input: Annotated[SendMessageInput, strawberry.argument(description="What to send.")],
    ) -> Message:
        return services.send_message(
            author=require_viewer(info),
            chat_id=input.chat_id,
            body=input.body,
            client_id=input.client_id,
            reply_to_id=input.reply_to_id,
            mentions=input.mentions,
        )

    @strawberry_django.mutation(
        description=(
            "Send a photo or file as a multipart request (apollo-upload-client, urql). "
            "Limited like `sendMessage`, and by a separate upload limit."
        )
    )
    async def send_attachment(
        self,
        info: strawberry.Info[Context],
        input: Annotated[SendAttachmentInput, strawberry.argument(description="What to send.")],
    ) -> Message:
        return await services.send_attachment(
            author=require_viewer(info),
            chat_id=input.chat_id,
            upload=input.file,
            caption=input.caption,
            client_id=input.client_id,
            reply_to_id=input.reply_to_id,
        )

    @strawberry_django.mutation(description="Send a location. Limited like `sendMessage`.")
    def send_location(
        self,
        info: strawberry.Info[Context],
        input: Annotated[SendLocationInput, strawberry.argument(description="What to send.")],
    ) -> Message:
        return services.send_location(
            author=require_viewer(info),
            chat_id=input.chat_id,
            latitude=input.latitude,
            longitude=input.longitude,
            label=input.label,
            client_id=input.client_id,
            reply_to_id=input.reply_to_id,
        )

    @strawberry_django.mutation(
        description="Change the text of your own message (or a photo's or file's caption)."
    )
    def edit_message(
        self, info: strawberry.Info[Context], message_id: MessageId, body: Body
    ) -> Message:
        return services.edit_message(user=require_viewer(info), message_id=message_id, body=body)

    @strawberry_django.mutation(
        description=(
            "Delete a message: your own, or anyone's in a room you own or administer. It "
            "stays in the timeline, marked deleted."
        )
    )
    def delete_message(self, info: strawberry.Info[Context], message_id: MessageId) -> Message:
        return services.delete_message(user=require_viewer(info), message_id=message_id)

    @strawberry_django.mutation(
        description="Mark a chat read up to `seq`. The marker only moves forward."
    )
    def mark_read(
        self,
        info: strawberry.Info[Context],
        chat_id: ChatId,
        seq: Annotated[int, strawberry.argument(description="The newest `seq` the user saw.")],
    ) -> Chat:
        membership = services.mark_read(user=require_viewer(info), chat_id=chat_id, seq=seq)
        return selectors.viewer_chat(membership)

    @strawberry_django.mutation(
        description=(
            "Say that the viewer is typing in a chat (or stopped). Call it as often as you "
            "like: it is passed on at most every few seconds, and lapses on its own."
        )
    )
    async def set_typing(
        self,
        info: strawberry.Info[Context],
        chat_id: ChatId,
        typing: Annotated[bool, strawberry.argument(description="False when they stopped.")],
    ) -> Done:
        await services.set_typing(user=require_viewer(info), chat_id=chat_id, typing=typing)
        return Done(message="Typing." if typing else "Stopped typing.")
