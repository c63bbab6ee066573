"""Devices that receive push notifications, and chats muted for them."""

import unicodedata
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat import ratelimit
from chat.error_codes import ChatErrorCode, NotificationErrorCode
from chat.exceptions import field_error
from chat.models import AuthToken, Device, Membership, User
from chat.push import fcm, webpush
from chat.selectors import find_membership, parse_id

DEVICE_NAME_MAX = 100


def _web_push_fields(subscription: dict[str, str]) -> dict[str, str]:
    if not settings.VAPID_PRIVATE_KEY:
        raise field_error(
            "web_push",
            "This server does not send Web Push notifications.",
            NotificationErrorCode.PUSH_NOT_CONFIGURED,
        )
    try:
        endpoint = webpush.check_endpoint(subscription["endpoint"])
        webpush.check_keys(subscription["p256dh"], subscription["auth"])
    except webpush.InvalidSubscription as error:
        raise field_error(
            "web_push", str(error), NotificationErrorCode.INVALID_SUBSCRIPTION
        ) from None
    return {
        "kind": Device.Kind.WEB_PUSH,
        "address": endpoint,
        "p256dh": subscription["p256dh"],
        "auth": subscription["auth"],
    }


def _fcm_fields(token: str) -> dict[str, str]:
    if not settings.FCM_CREDENTIALS:
        raise field_error(
            "fcm_token",
            "This server does not send FCM notifications.",
            NotificationErrorCode.PUSH_NOT_CONFIGURED,
        )
    try:
        fcm.check_token(token)
    except fcm.InvalidToken as error:
        raise field_error(
            "fcm_token", str(error), NotificationErrorCode.INVALID_FCM_TOKEN
        ) from None
    return {"kind": Device.Kind.FCM, "address": token, "p256dh": "", "auth": ""}


def register_device(
    *,
    user: User,
    auth_token: AuthToken | None,
    web_push: dict[str, str] | None = None,
    fcm_token: str | None = None,
    name: str = "",
) -> Device:
    """Register where the user's notifications go: a Web Push subscription (`endpoint`,
    `p256dh`, `auth`) or an FCM token, exactly one. The same endpoint or token registered
    again is the same device, updated and moved to this user (a shared browser signed in
    by someone else). Past `PUSH_MAX_DEVICES_PER_USER`, the least recently registered of
    the user's devices is dropped. Raises `ValidationError` and `RateLimited`."""
    if (web_push is None) == (fcm_token is None):
        raise field_error(
            "web_push",
            "Give either webPush or fcmToken.",
            NotificationErrorCode.ONE_KIND_OF_DEVICE,
        )
    # A label shown in lists: no control or format characters (bidi overrides).
    name = "".join(c for c in " ".join(name.split()) if unicodedata.category(c)[0] != "C")
    if len(name) > DEVICE_NAME_MAX:
        raise field_error(
            "name",
            f"A device name can be at most {DEVICE_NAME_MAX} characters.",
            NotificationErrorCode.NAME_TOO_LONG,
        )
    fields = _web_push_fields(web_push) if web_push is not None else _fcm_fields(fcm_token)
    ratelimit.hit("notification", user)
    now = timezone.now()
    with transaction.atomic():
        device, _ = Device.objects.update_or_create(
            address=fields.pop("address"),
            defaults={
                **fields,
                "user": user,
                "name": name,
                "auth_token": auth_token,
                "updated_at": now,
                "is_active": True,
                "failures": 0,
                "last_error": "",
            },
            create_defaults={**fields, "user": user, "name": name, "auth_token": auth_token},
        )
        surplus = (
            Device.objects.filter(user=user)
            .order_by("-updated_at", "-created_at")
            .values_list("pk", flat=True)[settings.PUSH_MAX_DEVICES_PER_USER :]
        )
        Device.objects.filter(pk__in=list(surplus)).delete()
    return device


def unregister_device(*, user: User, device_id: object) -> str:
    """Stop notifying a device of the user's; returns its id. `NOT_FOUND` for anyone
    else's."""
    ratelimit.hit("notification", user)
    deleted, _ = Device.objects.filter(pk=parse_id(device_id), user=user).delete()
    if not deleted:
        raise field_error("id", "Device not found.", ChatErrorCode.NOT_FOUND)
    return str(device_id)


def set_devices_active(devices: QuerySet[Device], *, active: bool) -> int:
    """Staff turning devices off (or back on, with their failure count cleared)."""
    changes: dict[str, object] = {"is_active": active}
    if active:
        changes.update(failures=0, last_error="")
    return devices.update(**changes)


def mute_chat(*, user: User, chat_id: object, until: datetime | None = None) -> Membership:
    """No push notifications from the chat until `until` (None: until unmuted). Unread
    counts and live events are unchanged."""
    if until is not None and until <= timezone.now():
        raise field_error(
            "until", "A mute must end in the future.", NotificationErrorCode.MUTE_IN_PAST
        )
    return _set_mute(user, chat_id, until or Membership.MUTED_FOREVER)


def unmute_chat(*, user: User, chat_id: object) -> Membership:
    """Notifications from the chat again. Harmless when it was not muted."""
    return _set_mute(user, chat_id, None)


def _set_mute(user: User, chat_id: object, until: datetime | None) -> Membership:
    membership = find_membership(user=user, chat_id=chat_id)
    if membership is None:
        raise field_error("chat_id", "Chat not found.", ChatErrorCode.NOT_FOUND)
    ratelimit.hit("notification", user)
    Membership.objects.filter(pk=membership.pk).update(muted_until=until)
    membership.muted_until = until
    return membership
