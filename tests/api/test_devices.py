"""The push-notification API over HTTP: devices, the VAPID key, muting a chat."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import auth, services
from chat.models import Device, Membership
from tests.factories import PASSWORD, token_for
from tests.push import VAPID_PUBLIC_KEY, Browser

REGISTER = """
mutation($input: RegisterDeviceInput!) {
  registerDevice(input: $input) {
    __typename
    ... on Device { id kind name lastSuccessAt }
    ... on OperationInfo { messages { field code } }
  }
}
"""
UNREGISTER = """
mutation($id: ID!) {
  unregisterDevice(id: $id) {
    ... on UnregisterDeviceResult { deviceId }
    ... on OperationInfo { messages { field code } }
  }
}
"""
MY_DEVICES = "query { me { devices { id kind name } } }"
SOMEONES_DEVICES = "query($id: ID!) { user(id: $id) { devices { id } } }"
VAPID = "query { vapidPublicKey }"
MUTE = """
mutation($chatId: ID!, $until: DateTime) {
  muteChat(chatId: $chatId, until: $until) {
    ... on Chat { isMuted mutedUntil unreadCount }
    ... on OperationInfo { messages { field code } }
  }
}
"""
UNMUTE = """
mutation($chatId: ID!) {
  unmuteChat(chatId: $chatId) {
    ... on Chat { isMuted mutedUntil }
    ... on OperationInfo { messages { field code } }
  }
}
"""
CHATS = "query { chats(first: 5) { edges { node { id isMuted mutedUntil } } } }"
LOGOUT = "mutation { logout { __typename } }"
FCM_TOKEN = "fcm:" + "A1b2-_" * 25


def _errors(response, name: str) -> list[dict]:
    return response.data[name]["messages"]


@pytest.mark.django_db
def test_a_browser_registers_its_subscription_as_to_json_gives_it(gql, user, token, web_push):
    browser = Browser(web_push)

    response = gql.execute(
        REGISTER, {"input": {"webPush": browser.subscription(), "name": "Firefox"}}, token=token
    )

    device = Device.objects.get()
    assert response.data == {
        "registerDevice": {
            "__typename": "Device",
            "id": str(device.id),
            "kind": "WEB_PUSH",
            "name": "Firefox",
            "lastSuccessAt": None,
        }
    }
    assert (device.user, device.address) == (user, browser.endpoint)
    assert device.auth_token.user == user
    assert gql.execute(MY_DEVICES, token=token).data == {
        "me": {"devices": [{"id": str(device.id), "kind": "WEB_PUSH", "name": "Firefox"}]}
    }


@pytest.mark.django_db
def test_registering_again_updates_the_device_and_moves_it_to_the_new_user(
    gql, user, token, grace, web_push
):
    subscription = Browser(web_push).subscription()
    first = gql.execute(REGISTER, {"input": {"webPush": subscription}}, token=token)

    second = gql.execute(
        REGISTER,
        {"input": {"webPush": subscription, "name": "Shared laptop"}},
        token=token_for(grace),
    )

    assert second.data["registerDevice"]["id"] == first.data["registerDevice"]["id"]
    device = Device.objects.get()
    assert (device.user, device.name) == (grace, "Shared laptop")
    assert gql.execute(MY_DEVICES, token=token).data == {"me": {"devices": []}}


@pytest.mark.django_db
def test_an_app_registers_its_fcm_token_under_a_clean_name(gql, token, fcm):
    name = "  Pixel\u202e 8\n\tPro  "

    response = gql.execute(REGISTER, {"input": {"fcmToken": FCM_TOKEN, "name": name}}, token=token)

    assert response.data["registerDevice"]["kind"] == "FCM"
    assert response.data["registerDevice"]["name"] == "Pixel 8 Pro"
    assert Device.objects.get().address == FCM_TOKEN


BAD_SUBSCRIPTIONS = {
    "a host that is no push service": ("https://internal.example.com/push", None),
    "a private address": ("http://10.0.0.8/push", None),
    "plain http to a push service": ("http://fcm.googleapis.com/fcm/send/x", None),
    "credentials in the URL": ("https://user:pw@fcm.googleapis.com/fcm/send/x", None),
    "a key off the curve": (None, {"p256dh": "B" + "A" * 86}),
    "a short auth secret": (None, {"auth": "AAAA"}),
    "not base64": (None, {"auth": "!!!!"}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD_SUBSCRIPTIONS)
def test_a_subscription_that_is_not_a_browsers_is_refused(gql, token, web_push, case):
    endpoint, keys = BAD_SUBSCRIPTIONS[case]
    subscription = Browser(web_push).subscription()
    if endpoint is not None:
        subscription["endpoint"] = endpoint
    subscription["keys"].update(keys or {})

    response = gql.execute(REGISTER, {"input": {"webPush": subscription}}, token=token)

    assert _errors(response, "registerDevice") == [
        {"field": "webPush", "code": "invalid_subscription"}
    ]
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_refusals_for_the_kind_the_token_and_the_name(gql, token, web_push, fcm):
    subscription = Browser(web_push).subscription()
    cases = [
        ({}, "webPush", "one_kind_of_device"),
        ({"webPush": subscription, "fcmToken": FCM_TOKEN}, "webPush", "one_kind_of_device"),
        ({"fcmToken": "short"}, "fcmToken", "invalid_fcm_token"),
        ({"fcmToken": "has spaces " * 5}, "fcmToken", "invalid_fcm_token"),
        ({"fcmToken": FCM_TOKEN, "name": "x" * 101}, "name", "name_too_long"),
    ]
    for given, field, code in cases:
        response = gql.execute(REGISTER, {"input": given}, token=token)
        assert _errors(response, "registerDevice") == [{"field": field, "code": code}], given
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_a_kind_this_server_does_not_send_is_refused(gql, token, push_service):
    subscription = Browser(push_service).subscription()

    web = gql.execute(REGISTER, {"input": {"webPush": subscription}}, token=token)
    app = gql.execute(REGISTER, {"input": {"fcmToken": FCM_TOKEN}}, token=token)

    assert _errors(web, "registerDevice") == [{"field": "webPush", "code": "push_not_configured"}]
    assert _errors(app, "registerDevice") == [{"field": "fcmToken", "code": "push_not_configured"}]


@pytest.mark.django_db
def test_the_oldest_devices_make_room_past_the_cap(gql, token, web_push, settings):
    settings.PUSH_MAX_DEVICES_PER_USER = 2
    ids = [
        gql.execute(
            REGISTER, {"input": {"webPush": Browser(web_push).subscription()}}, token=token
        ).data["registerDevice"]["id"]
        for _ in range(3)
    ]

    assert sorted(str(pk) for pk in Device.objects.values_list("pk", flat=True)) == sorted(ids[1:])


@pytest.mark.django_db
def test_unregister_removes_only_your_own_device(gql, user, token, grace, web_push):
    mine = gql.execute(
        REGISTER, {"input": {"webPush": Browser(web_push).subscription()}}, token=token
    ).data["registerDevice"]["id"]

    theirs = gql.execute(UNREGISTER, {"id": mine}, token=token_for(grace))
    malformed = gql.execute(UNREGISTER, {"id": "nope"}, token=token)
    done = gql.execute(UNREGISTER, {"id": mine}, token=token)

    assert _errors(theirs, "unregisterDevice") == [{"field": "id", "code": "not_found"}]
    assert _errors(malformed, "unregisterDevice") == [{"field": "id", "code": "not_found"}]
    assert done.data == {"unregisterDevice": {"deviceId": mine}}
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_devices_are_private_and_need_a_sign_in(gql, user, token, grace, web_push):
    gql.execute(REGISTER, {"input": {"webPush": Browser(web_push).subscription()}}, token=token)

    seen_by_grace = gql.execute(SOMEONES_DEVICES, {"id": str(user.id)}, token=token_for(grace))
    anonymous = gql.execute(REGISTER, {"input": {"fcmToken": FCM_TOKEN}})

    assert seen_by_grace.data == {"user": {"devices": None}}
    assert anonymous.error_codes == ["UNAUTHENTICATED"]


@pytest.mark.django_db
def test_logout_unregisters_the_devices_of_that_session_only(gql, user, web_push):
    phone, laptop = token_for(user), token_for(user)
    gql.execute(REGISTER, {"input": {"webPush": Browser(web_push).subscription()}}, token=phone)
    kept = gql.execute(
        REGISTER, {"input": {"webPush": Browser(web_push).subscription()}}, token=laptop
    ).data["registerDevice"]["id"]

    gql.execute(LOGOUT, token=phone)

    assert [str(pk) for pk in Device.objects.values_list("pk", flat=True)] == [kept]


@pytest.mark.django_db
def test_a_password_change_unregisters_the_devices_of_every_other_session(user, web_push):
    current, other = (auth.issue_token(user=user)[1] for _ in range(2))
    kept = _register(user, current, web_push)
    for session in (other, None):  # another bearer session, and a cookie session
        _register(user, session, web_push)

    services.change_password(
        user=user, current_password=PASSWORD, new_password="another good passphrase", keep=current
    )

    assert list(Device.objects.all()) == [kept]


def _register(user, auth_token, service) -> Device:
    subscription = Browser(service).subscription()
    return services.register_device(
        user=user,
        auth_token=auth_token,
        web_push={"endpoint": subscription["endpoint"], **subscription["keys"]},
    )


@pytest.mark.django_db
def test_vapid_public_key_needs_no_sign_in(gql, settings, web_push):
    assert gql.execute(VAPID).data == {"vapidPublicKey": VAPID_PUBLIC_KEY}
    settings.VAPID_PRIVATE_KEY = ""
    assert gql.execute(VAPID).data == {"vapidPublicKey": None}


@pytest.mark.django_db
def test_mute_until_a_time_forever_and_unmute(gql, user, token, grace):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)
    services.send_message(author=grace, chat_id=chat.id, body="hi")
    until = (timezone.now() + timedelta(hours=8)).replace(microsecond=0)

    timed = gql.execute(MUTE, {"chatId": str(chat.id), "until": until.isoformat()}, token=token)
    listed = gql.execute(CHATS, token=token)
    forever = gql.execute(MUTE, {"chatId": str(chat.id)}, token=token)
    unmuted = gql.execute(UNMUTE, {"chatId": str(chat.id)}, token=token)

    assert timed.data == {
        "muteChat": {"isMuted": True, "mutedUntil": until.isoformat(), "unreadCount": 1}
    }
    assert listed.data["chats"]["edges"] == [
        {"node": {"id": str(chat.id), "isMuted": True, "mutedUntil": until.isoformat()}}
    ]
    assert forever.data == {"muteChat": {"isMuted": True, "mutedUntil": None, "unreadCount": 1}}
    assert unmuted.data == {"unmuteChat": {"isMuted": False, "mutedUntil": None}}
    assert Membership.objects.get(user=user).muted_until is None


@pytest.mark.django_db
def test_mute_refusals(gql, user, token, grace, make_user):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)
    past = (timezone.now() - timedelta(minutes=1)).isoformat()

    in_the_past = gql.execute(MUTE, {"chatId": str(chat.id), "until": past}, token=token)
    not_mine = gql.execute(MUTE, {"chatId": str(chat.id)}, token=token_for(make_user()))
    unmute_not_mine = gql.execute(UNMUTE, {"chatId": str(chat.id)}, token=token_for(make_user()))

    assert _errors(in_the_past, "muteChat") == [{"field": "until", "code": "mute_in_past"}]
    assert _errors(not_mine, "muteChat") == [{"field": "chatId", "code": "not_found"}]
    assert _errors(unmute_not_mine, "unmuteChat") == [{"field": "chatId", "code": "not_found"}]
    assert not Membership.objects.filter(muted_until__isnull=False).exists()
