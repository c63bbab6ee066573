"""Push notifications, from a committed message to a push service's door: who is notified,
what they get, and what each answer from the push service does."""

import asyncio
import json
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from chat import presence, services
from chat.models import Device, Membership, Message
from chat.push import delivery, notify, webpush
from tests.factories import UserFactory
from tests.push import (
    FCM_PROJECT,
    VAPID_PUBLIC_KEY,
    Browser,
    run_tasks,
    verify_oauth_assertion,
    verify_vapid,
)

FCM_SEND = f"/v1/projects/{FCM_PROJECT}/messages:send"
FCM_TOKEN = "fcm-token-" + "x" * 140


@pytest.fixture
def direct(user, grace):
    return services.open_direct_chat(user=user, other_user_id=grace.id)


@pytest.fixture
def graces_browser(web_push, grace):
    browser = Browser(web_push)
    services.register_device(
        user=grace, auth_token=None, web_push=_keys(browser.subscription()), name="Firefox"
    )
    return browser


def _keys(subscription: dict) -> dict:
    return {"endpoint": subscription["endpoint"], **subscription["keys"]}


def _subscribe(user, service) -> Browser:
    browser = Browser(service)
    services.register_device(user=user, auth_token=None, web_push=_keys(browser.subscription()))
    return browser


def _queued(task: str) -> list[DBTaskResult]:
    return list(
        DBTaskResult.objects.filter(task_path=f"chat.tasks.{task}").order_by("enqueued_at")
    )


@pytest.mark.django_db
def test_an_offline_member_gets_an_encrypted_web_push(user, grace, direct, graces_browser):
    message = services.send_message(author=user, chat_id=direct.id, body="  Lunch   at noon?  ")

    run_tasks()

    [received] = graces_browser.requests()
    claims = verify_vapid(received, VAPID_PUBLIC_KEY, audience=graces_browser.endpoint[:22])
    assert claims["sub"] == "mailto:push-tests@example.com"
    assert received.headers["topic"] == direct.id.hex
    assert received.headers["urgency"] == "high"
    assert received.headers["ttl"] == "86400"
    assert graces_browser.decrypt(received) == {
        "type": "MESSAGE",
        "title": "Ada Lovelace",
        "body": "Lunch at noon?",
        "chatId": str(direct.id),
        "chatKind": "DIRECT",
        "chatName": "",
        "messageId": str(message.id),
        "seq": 1,
        "kind": "TEXT",
        "senderId": str(user.id),
        "senderName": "Ada Lovelace",
        "preview": "Lunch at noon?",
        "sentAt": message.created_at.isoformat(),
        "tag": direct.id.hex,
    }
    device = Device.objects.get()
    assert (device.failures, device.last_error) == (0, "")
    assert device.last_success_at is not None


@pytest.mark.django_db
def test_a_room_notification_names_the_room_and_previews_only_the_kind_of_media(
    user, grace, web_push
):
    room = services.create_room(owner=user, name="Lunch club", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    browser = _subscribe(grace, web_push)

    services.send_location(author=user, chat_id=room.id, latitude=51.5, longitude=-0.12)
    services.send_message(author=user, chat_id=room.id, body="word " * 100)
    run_tasks()

    first, second = (browser.decrypt(r) for r in browser.requests())
    assert (first["title"], first["body"], first["kind"]) == (
        "Lunch club",
        "Ada Lovelace: Location",
        "LOCATION",
    )
    assert first["chatName"] == "Lunch club"
    assert len(second["preview"]) == 120
    assert second["preview"].endswith("…")


@pytest.mark.django_db
def test_a_message_queues_one_task_in_its_own_transaction(user, grace, direct, graces_browser):
    def rolled_back() -> None:
        with transaction.atomic():
            services.send_message(author=user, chat_id=direct.id, body="never sent")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        rolled_back()
    assert _queued("notify_message") == []

    message = services.send_message(author=user, chat_id=direct.id, body="sent")

    [task] = _queued("notify_message")
    assert task.args_kwargs == {"args": [str(message.id)], "kwargs": {}}
    assert task.status == "READY"


@pytest.mark.django_db
def test_nothing_is_queued_without_a_push_service_configured(user, grace, direct):
    services.send_message(author=user, chat_id=direct.id, body="hi")

    assert DBTaskResult.objects.count() == 0


@pytest.mark.django_db
def test_the_author_an_online_member_and_a_system_message_notify_nobody(
    user, grace, direct, web_push
):
    own_browser = Browser(web_push)
    services.register_device(
        user=user, auth_token=None, web_push=_keys(own_browser.subscription())
    )
    graces = Browser(web_push)
    services.register_device(user=grace, auth_token=None, web_push=_keys(graces.subscription()))
    room = services.create_room(owner=user, name="Room", is_public=True)

    type(grace).objects.filter(pk=grace.pk).update(last_seen_at=None)  # online
    services.send_message(author=user, chat_id=direct.id, body="you are online")
    services.join_room(user=grace, chat_id=room.id)  # a SYSTEM message in the room
    run_tasks()

    assert web_push.received == []
    assert _queued("notify_message")[0].return_value == {"devices": 0, "batches": 0}
    assert len(_queued("notify_message")) == 1  # the join queued nothing


@pytest.mark.django_db
def test_a_member_online_when_it_was_sent_gets_none_after_leaving(
    user, grace, direct, graces_browser
):
    type(grace).objects.filter(pk=grace.pk).update(last_seen_at=None)  # online
    services.send_message(author=user, chat_id=direct.id, body="seen live")
    type(grace).objects.filter(pk=grace.pk).update(last_seen_at=timezone.now())  # gone
    later = services.send_message(author=user, chat_id=direct.id, body="after she left")

    run_tasks()

    [received] = graces_browser.requests()
    assert graces_browser.decrypt(received)["seq"] == later.seq


@pytest.mark.django_db
def test_nobody_is_notified_of_a_message_from_someone_they_block(user, grace, web_push):
    room = services.create_room(owner=user, name="Room", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    browser = _subscribe(grace, web_push)
    services.block_user(user=grace, user_id=user.id)

    services.send_message(author=user, chat_id=room.id, body="from someone Grace blocks")
    run_tasks()
    assert browser.requests() == []

    services.unblock_user(user=grace, user_id=user.id)
    services.send_message(author=user, chat_id=room.id, body="unblocked")
    run_tasks()
    [received] = browser.requests()
    assert browser.decrypt(received)["preview"] == "unblocked"


@pytest.mark.django_db
def test_a_muted_chat_sends_nothing_until_the_mute_lapses(user, grace, direct, graces_browser):
    services.mute_chat(user=grace, chat_id=direct.id, until=timezone.now() + timedelta(hours=1))
    services.send_message(author=user, chat_id=direct.id, body="muted")
    run_tasks()
    assert graces_browser.requests() == []

    Membership.objects.filter(user=grace).update(muted_until=timezone.now() - timedelta(seconds=1))
    services.send_message(author=user, chat_id=direct.id, body="lapsed")
    run_tasks()

    [received] = graces_browser.requests()
    assert graces_browser.decrypt(received)["body"] == "lapsed"


@pytest.mark.django_db
def test_a_mention_notifies_even_in_a_muted_chat(user, grace, web_push):
    room = services.create_room(owner=user, name="Room", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    browser = _subscribe(grace, web_push)
    services.mute_chat(user=grace, chat_id=room.id)

    services.send_message(author=user, chat_id=room.id, body="chatter")
    services.send_message(author=user, chat_id=room.id, body="@Grace you?", mentions=[grace.id])
    run_tasks()

    [received] = browser.requests()
    assert browser.decrypt(received)["preview"] == "@Grace you?"


@pytest.mark.django_db
def test_muted_forever_until_unmuted(user, grace, direct, graces_browser):
    services.mute_chat(user=grace, chat_id=direct.id)
    assert Membership.objects.get(user=grace).muted_until == Membership.MUTED_FOREVER
    services.send_message(author=user, chat_id=direct.id, body="muted")
    run_tasks()
    assert graces_browser.requests() == []

    services.unmute_chat(user=grace, chat_id=direct.id)
    services.send_message(author=user, chat_id=direct.id, body="unmuted")
    run_tasks()

    [received] = graces_browser.requests()
    assert graces_browser.decrypt(received)["body"] == "unmuted"


@pytest.mark.django_db
def test_a_message_deleted_or_read_before_the_worker_runs_notifies_nobody(
    user, grace, direct, graces_browser
):
    deleted = services.send_message(author=user, chat_id=direct.id, body="oops")
    services.delete_message(user=user, message_id=deleted.id)
    read = services.send_message(author=user, chat_id=direct.id, body="seen elsewhere")
    services.mark_read(user=grace, chat_id=direct.id, seq=read.seq)

    run_tasks()

    assert graces_browser.requests() == []


@pytest.mark.django_db
def test_recipients_are_one_query_and_deliveries_are_queued_in_batches(
    user, web_push, settings, django_assert_num_queries
):
    settings.PUSH_BATCH_SIZE = 5
    room = services.create_room(owner=user, name="Big room", is_public=True)
    members = UserFactory.create_batch(30)
    for member in members:
        services.join_room(user=member, chat_id=room.id)
    for member in members[:12]:  # 12 offline members with a device each
        browser = Browser(web_push)
        services.register_device(
            user=member, auth_token=None, web_push=_keys(browser.subscription())
        )
    type(user).objects.filter(pk=members[0].pk).update(last_seen_at=None)  # one is online
    message = services.send_message(author=user, chat_id=room.id, body="hello all")

    with django_assert_num_queries(1):
        devices = list(
            notify.recipients(
                chat_id=room.id,
                seq=message.seq,
                author_id=user.id,
                sent_at=message.created_at,
                message_id=message.id,
            )
        )
    assert len(devices) == 11

    with django_assert_num_queries(2 + 3):  # the message, the recipients, one row per batch
        assert notify.fan_out(str(message.id)) == {"devices": 11, "batches": 3}
    assert [len(t.args_kwargs["args"][1]) for t in _queued("deliver")] == [5, 5, 1]


@pytest.mark.django_db
def test_a_410_deactivates_the_device(user, grace, direct, graces_browser):
    graces_browser.service.script(graces_browser.path, (410, {}))

    message = services.send_message(author=user, chat_id=direct.id, body="gone?")
    run_tasks()
    services.send_message(author=user, chat_id=direct.id, body="not tried")
    run_tasks()

    assert len(graces_browser.requests()) == 1
    device = Device.objects.get()
    assert device.is_active is False
    assert device.failures == 1
    assert device.last_error.startswith("HTTP 410")
    assert Message.objects.get(pk=message.pk).body == "gone?"  # the message itself stands


@pytest.mark.django_db
def test_a_500_is_retried_then_given_up(user, grace, direct, graces_browser, caplog):
    graces_browser.service.script(graces_browser.path, *[(500, {})] * 5)

    services.send_message(author=user, chat_id=direct.id, body="server trouble")
    run_tasks()

    assert len(graces_browser.requests()) == 3  # PUSH_MAX_ATTEMPTS
    assert [t.args_kwargs["args"][2] for t in _queued("deliver")] == [1, 2, 3]
    assert [t.return_value["retrying"] for t in _queued("deliver")] == [1, 1, 1]
    device = Device.objects.get()
    assert (device.is_active, device.failures) == (True, 3)
    assert "given up after 3 attempts" in caplog.text


@pytest.mark.django_db
def test_a_429_waits_for_retry_after(user, grace, direct, graces_browser):
    graces_browser.service.script(graces_browser.path, (429, {"Retry-After": "1"}), (201, {}))

    services.send_message(author=user, chat_id=direct.id, body="slow down")
    run_tasks()
    [retry] = [t for t in _queued("deliver") if t.status == "READY"]
    assert retry.run_after - retry.enqueued_at > timedelta(seconds=0.9)
    time.sleep(max(0.0, (retry.run_after - timezone.now()).total_seconds()) + 0.05)
    run_tasks()

    first, second = graces_browser.requests()
    assert second.at - first.at >= 1.0
    device = Device.objects.get()
    assert (device.failures, device.last_success_at is not None) == (0, True)


@pytest.mark.django_db
def test_a_timeout_is_retried(user, grace, direct, graces_browser, settings):
    settings.PUSH_TIMEOUT = 0.3
    graces_browser.service.script(graces_browser.path, (201, {"X-Test-Delay": "1"}), (201, {}))

    services.send_message(author=user, chat_id=direct.id, body="are you there?")
    run_tasks()

    assert [t.return_value["retrying"] for t in _queued("deliver")] == [1, 0]
    assert [t.return_value["sent"] for t in _queued("deliver")] == [0, 1]


@pytest.mark.django_db
def test_fcm_gets_a_v1_message_with_a_bearer_token_and_a_collapse_key(
    user, grace, direct, fcm, push_service
):
    services.register_device(user=grace, auth_token=None, fcm_token=FCM_TOKEN, name="Pixel")

    message = services.send_message(author=user, chat_id=direct.id, body="to your phone")
    services.send_message(author=user, chat_id=direct.id, body="and again")
    run_tasks()

    [token_request] = push_service.to("/token")
    claims = verify_oauth_assertion(token_request, fcm)
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    # Sent to the configured token_uri; google-auth names Google's endpoint as audience.
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert claims["iss"] == f"push@{FCM_PROJECT}.iam.gserviceaccount.com"
    first, second = push_service.to(FCM_SEND)
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer oauth-1"
    body = first.json()["message"]
    collapse = direct.id.hex
    assert body["token"] == FCM_TOKEN
    assert body["notification"] == {"title": "Ada Lovelace", "body": "to your phone"}
    assert body["android"] == {
        "collapse_key": collapse,
        "priority": "HIGH",
        "ttl": "86400s",
        "notification": {"tag": collapse},
    }
    assert body["apns"]["headers"]["apns-collapse-id"] == collapse
    assert body["data"]["seq"] == "1"
    assert body["data"]["messageId"] == str(message.id)
    assert all(isinstance(value, str) for value in body["data"].values())


@pytest.mark.django_db
def test_fcm_renews_a_rejected_token_and_deactivates_an_unregistered_device(
    user, grace, direct, fcm, push_service
):
    services.register_device(user=grace, auth_token=None, fcm_token=FCM_TOKEN)
    push_service.script(FCM_SEND, (401, {}), (200, {}), (404, {}))

    services.send_message(author=user, chat_id=direct.id, body="one")
    run_tasks()
    services.send_message(author=user, chat_id=direct.id, body="two")
    run_tasks()

    assert push_service.tokens_issued == 2
    assert [r.headers["authorization"] for r in push_service.to(FCM_SEND)] == [
        "Bearer oauth-1",
        "Bearer oauth-2",
        "Bearer oauth-2",
    ]
    assert Device.objects.get().is_active is False


@pytest.mark.django_db(transaction=True)
async def test_presence_is_mirrored_in_the_database_and_repaired(
    user, grace, close_worker_connections
):
    await presence.socket_opened(user, "socket-1")
    await presence.flush()  # the database learns of presence changes in batches
    await user.arefresh_from_db()
    assert user.last_seen_at is None

    await presence.socket_closed(user, "socket-1")
    await presence.flush()
    await user.arefresh_from_db()
    assert user.last_seen_at is not None

    # A process that died with Grace online left her so in the database: no lease holds her.
    await type(grace).objects.filter(pk=grace.pk).aupdate(last_seen_at=None)
    await presence.socket_opened(user, "socket-2")
    assert await presence.reconcile() == 1
    await grace.arefresh_from_db()
    await user.arefresh_from_db()
    assert (grace.last_seen_at is not None, user.last_seen_at) == (True, None)
    await presence.socket_closed(user, "socket-2")


def test_the_vapid_public_key_is_derived_from_the_private_key(web_push):
    assert webpush.public_key() == VAPID_PUBLIC_KEY
    assert json.dumps(webpush.check_settings()) == "[]"


def test_retry_after_in_seconds_or_as_a_date_and_the_delay_is_capped(settings):
    settings.PUSH_RETRY_DELAY, settings.PUSH_RETRY_MAX_DELAY = 10, 60
    in_a_minute = timezone.now() + timedelta(seconds=60)

    assert delivery.retry_after("120") == 120
    assert 55 < delivery.retry_after(format_datetime(in_a_minute, usegmt=True)) <= 60
    assert delivery.retry_after("soon") is None
    assert delivery.retry_delay(1, 30) == 30
    assert delivery.retry_delay(1, 7200) == 60
    assert 10 <= delivery.retry_delay(1, None) <= 12.5
    assert 40 <= delivery.retry_delay(3, None) <= 50


async def test_users_leaving_together_wait_on_one_grace_timer(settings, monkeypatch):
    """A reconnect storm takes thousands of users offline at once: a timer (and a flush
    reading every pending departure) per user made it quadratic."""
    from types import SimpleNamespace

    settings.PRESENCE_OFFLINE_GRACE, settings.PRESENCE_FLUSH_DELAY = 60, 60
    loop = asyncio.get_running_loop()
    timers = []
    call_later = loop.call_later

    def counted(delay, callback, *args):
        timers.append(callback.__name__)
        return call_later(delay, callback, *args)

    monkeypatch.setattr(loop, "call_later", counted)
    try:
        for n in range(200):
            presence._changed(SimpleNamespace(id=f"user-{n}"), online=False)
        assert timers.count("_grace_over") == 1
        assert len(presence._leaving) == 200
    finally:
        for timer in (presence._graces.pop(loop, None), presence._flushes.pop(loop, None)):
            if timer is not None:
                timer.cancel()
        presence._leaving.clear()
        presence._pending.clear()
