"""Push notifications: devices, the VAPID key browsers need, and muting a chat."""

from datetime import datetime
from typing import Annotated

import strawberry
import strawberry_django

from chat import selectors, services
from chat.push import webpush
from schema.arguments import ChatId
from schema.context import Context, require_viewer
from schema.types import Chat, Device


@strawberry.input(description="The `keys` of a browser's push subscription.")
class WebPushKeysInput:
    p256dh: str = strawberry.field(description="The browser's P-256 public key (base64url).")
    auth: str = strawberry.field(description="The 16-byte auth secret (base64url).")


@strawberry.input(
    description=(
        "A browser's push subscription, exactly as `PushSubscription.toJSON()` gives it: "
        "`registerDevice(input: { webPush: subscription.toJSON() })`."
    )
)
class WebPushSubscriptionInput:
    endpoint: str = strawberry.field(description="The push service URL to send to.")
    keys: WebPushKeysInput = strawberry.field(description="For encrypting the payload.")
    expiration_time: float | None = strawberry.field(
        default=None, description="Accepted and ignored: browsers send null."
    )


@strawberry.input(description="Where to send the user's push notifications: give one kind.")
class RegisterDeviceInput:
    web_push: WebPushSubscriptionInput | None = strawberry.field(
        default=None, description="A browser's subscription (needs `vapidPublicKey`)."
    )
    fcm_token: str | None = strawberry.field(
        default=None, description="A mobile app's Firebase Cloud Messaging registration token."
    )
    name: str = strawberry.field(
        default="", description="A label to tell devices apart (up to 100 characters)."
    )


@strawberry.type(description="The device is no longer notified.")
class UnregisterDeviceResult:
    device_id: strawberry.ID = strawberry.field(description="The device that was removed.")


@strawberry.type
class NotificationQuery:
    @strawberry.field(
        description=(
            "The server's VAPID public key (base64url), for the browser's "
            "`pushManager.subscribe({ applicationServerKey })`; null when this server sends "
            "no Web Push. Needs no sign-in."
        )
    )
    def vapid_public_key(self) -> str | None:
        return webpush.public_key()


@strawberry.type
class NotificationMutation:
    @strawberry_django.mutation(
        description=(
            "Send the viewer's push notifications to this browser or app as well. Registering "
            "the same subscription or token again updates it (and moves it to the viewer). "
            "Signing out the session that registered it unregisters it."
        )
    )
    def register_device(
        self,
        info: strawberry.Info[Context],
        input: Annotated[
            RegisterDeviceInput, strawberry.argument(description="The subscription or token.")
        ],
    ) -> Device:
        web_push = input.web_push
        return services.register_device(
            user=require_viewer(info),
            auth_token=info.context.token,
            web_push=None
            if web_push is None
            else {
                "endpoint": web_push.endpoint,
                "p256dh": web_push.keys.p256dh,
                "auth": web_push.keys.auth,
            },
            fcm_token=input.fcm_token,
            name=input.name,
        )

    @strawberry_django.mutation(description="Stop sending push notifications to a device.")
    def unregister_device(
        self,
        info: strawberry.Info[Context],
        id: Annotated[strawberry.ID, strawberry.argument(description="The device's id.")],
    ) -> UnregisterDeviceResult:
        device_id = services.unregister_device(user=require_viewer(info), device_id=id)
        return UnregisterDeviceResult(device_id=strawberry.ID(device_id))

    @strawberry_django.mutation(
        description=(
            "No push notifications from this chat until `until` (or until `unmuteChat`). It "
            "still counts unread and still sends live events."
        )
    )
    def mute_chat(
        self,
        info: strawberry.Info[Context],
        chat_id: ChatId,
        until: Annotated[
            datetime | None,
            strawberry.argument(description="When the mute ends, in the future; null: never."),
        ] = None,
    ) -> Chat:
        membership = services.mute_chat(user=require_viewer(info), chat_id=chat_id, until=until)
        return selectors.viewer_chat(membership)

    @strawberry_django.mutation(description="Push notifications from this chat again.")
    def unmute_chat(self, info: strawberry.Info[Context], chat_id: ChatId) -> Chat:
        membership = services.unmute_chat(user=require_viewer(info), chat_id=chat_id)
        return selectors.viewer_chat(membership)
