from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import AuthToken, Chat, Membership, Message, User
from tests.factories import PASSWORD, token_for


@pytest.fixture
def admin_client(make_user) -> Client:
    staff = make_user(email="staff@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.django_db
def test_the_admin_lists_searches_and_shows_users_and_tokens(admin_client, user):
    token_for(user)
    token = AuthToken.objects.get(user=user)

    pages = [
        reverse("admin:chat_user_changelist") + "?q=ada",
        reverse("admin:chat_user_change", args=[user.pk]),
        reverse("admin:chat_user_add"),
        reverse("admin:chat_authtoken_changelist") + "?q=ada@example.com",
        reverse("admin:chat_authtoken_change", args=[token.pk]),
    ]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
    listing = admin_client.get(pages[0]).content.decode()
    assert "ada@example.com" in listing


@pytest.mark.django_db
def test_the_admin_creates_a_user_with_a_hashed_password(admin_client):
    response = admin_client.post(
        reverse("admin:chat_user_add"),
        {
            "email": "new@example.com",
            "display_name": "New",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )

    assert response.status_code == 302
    created = User.objects.get(email="new@example.com")
    assert created.check_password(PASSWORD)


@pytest.mark.django_db
def test_the_admin_signs_a_user_out_everywhere(admin_client, user):
    token_for(user), token_for(user)

    admin_client.post(
        reverse("admin:chat_user_changelist"),
        {"action": "revoke_tokens", "_selected_action": [str(user.pk)]},
    )

    assert AuthToken.objects.filter(user=user, revoked_at__isnull=True).count() == 0


def test_websockets_wait_ten_seconds_for_connection_init_by_default():
    from django.conf import settings

    from server.asgi import graphql_consumer

    assert settings.GRAPHQL_WS_CONNECTION_INIT_TIMEOUT == 10
    assert graphql_consumer.consumer_initkwargs["connection_init_wait_timeout"] == timedelta(
        seconds=10
    )


@pytest.mark.django_db
def test_the_admin_lists_searches_and_filters_chats_memberships_and_messages(
    admin_client, user, grace
):
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    message = services.send_message(author=grace, chat_id=room.id, body="findable words")
    membership = Membership.objects.get(chat=room, user=grace)

    pages = [
        reverse("admin:chat_chat_changelist") + "?q=grace@example.com",
        reverse("admin:chat_chat_changelist") + "?kind__exact=GROUP&is_public__exact=1",
        reverse("admin:chat_chat_change", args=[room.pk]),
        reverse("admin:chat_chat_add"),
        reverse("admin:chat_membership_changelist") + "?q=Lounge",
        reverse("admin:chat_membership_change", args=[membership.pk]),
        reverse("admin:chat_message_changelist") + "?q=findable&kind__exact=TEXT",
        reverse("admin:chat_message_change", args=[message.pk]),
    ]

    for page in pages:
        assert admin_client.get(page).status_code == 200, page
    assert "findable words" in admin_client.get(pages[6]).content.decode()


@pytest.mark.django_db
def test_a_room_created_in_the_admin_goes_through_the_service(admin_client, user):
    response = admin_client.post(
        reverse("admin:chat_chat_add"),
        {
            "kind": "GROUP",
            "name": " Staff  Room ",
            "topic": "",
            "is_public": "on",
            "created_by": str(user.pk),
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    room = Chat.objects.get()
    assert (room.name, room.member_count, room.last_seq) == ("Staff Room", 1, 1)
    assert Membership.objects.get(chat=room).user == user


@pytest.mark.django_db
def test_an_invalid_room_edit_in_the_admin_is_a_form_error(admin_client, user):
    room = services.create_room(owner=user, name="Lounge")

    response = admin_client.post(
        reverse("admin:chat_chat_change", args=[room.pk]),
        {
            "name": "   ",
            "topic": "",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
        },
    )

    assert response.status_code == 200
    assert "Room name must be 1 to 100 characters." in response.content.decode()
    room.refresh_from_db()
    assert room.name == "Lounge"


@pytest.mark.django_db
def test_the_admin_removes_messages_softly_and_publishes_it(
    admin_client, user, grace, events_sent
):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)
    message = services.send_message(author=grace, chat_id=chat.id, body="spam")

    with events_sent() as sent:
        admin_client.post(
            reverse("admin:chat_message_changelist"),
            {"action": "remove", "_selected_action": [str(message.pk)]},
        )

    message.refresh_from_db()
    assert (message.body, message.is_deleted, Message.objects.count()) == ("", True, 1)
    assert [event for _, event, _ in sent] == ["message_deleted"]


@pytest.mark.django_db
def test_the_admin_shows_attachments_with_thumbnails_and_removes_them_with_the_message(
    admin_client, user, grace, settings, tmp_path, django_capture_on_commit_callbacks
):
    from asgiref.sync import async_to_sync
    from django.core.files.uploadedfile import SimpleUploadedFile

    from chat.models import Attachment
    from tests.media_files import pdf, photo

    settings.MEDIA_ROOT = tmp_path
    direct = services.open_direct_chat(user=user, other_user_id=grace.id)
    send = async_to_sync(services.send_attachment)
    image = send(author=user, chat_id=direct.id, upload=SimpleUploadedFile("a.png", photo("PNG")))
    send(author=user, chat_id=direct.id, upload=SimpleUploadedFile("r.pdf", pdf()))
    services.send_location(author=user, chat_id=direct.id, latitude=1.5, longitude=2, label="Here")
    async_to_sync(services.update_profile)(
        user=user, avatar=SimpleUploadedFile("me.png", photo("PNG"))
    )

    listing = admin_client.get(reverse("admin:chat_message_changelist")).content.decode()
    assert listing.count('<img src="/media/attachments/') == 1
    assert ">r.pdf</a> (" in listing
    assert "1.50000, 2.00000 Here" in listing
    pages = [
        reverse("admin:chat_attachment_changelist"),
        reverse("admin:chat_attachment_change", args=[image.attachment.pk]),
        reverse("admin:chat_message_change", args=[image.pk]),
        reverse("admin:chat_user_change", args=[user.pk]),
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert '<img src="/media/' in response.content.decode(), page
    thumbnail_url = "/media/" + listing.split('<img src="/media/')[1].split('"')[0]
    thumbnail_url = thumbnail_url.replace("&amp;", "&")
    assert admin_client.get(thumbnail_url).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:chat_message_changelist"),
            {"action": "remove", "_selected_action": [image.pk]},
        )
    assert not Attachment.objects.filter(pk=image.attachment.pk).exists()
    assert not (tmp_path / image.attachment.file.name).exists()
    assert not (tmp_path / image.attachment.thumbnail.name).exists()
    assert admin_client.get(thumbnail_url).status_code == 404


@pytest.mark.django_db
def test_the_admin_lists_devices_and_turns_them_off_and_on(admin_client, user, web_push):
    from chat.models import Device
    from tests.push import Browser

    subscription = Browser(web_push).subscription()
    device = services.register_device(
        user=user,
        auth_token=None,
        web_push={"endpoint": subscription["endpoint"], **subscription["keys"]},
        name="Firefox on the laptop",
    )
    Device.objects.filter(pk=device.pk).update(failures=2, last_error="HTTP 500")
    changelist = reverse("admin:chat_device_changelist")

    listing = admin_client.get(changelist + "?q=ada@example.com").content.decode()
    page = admin_client.get(reverse("admin:chat_device_change", args=[device.pk]))
    admin_client.post(changelist, {"action": "deactivate", "_selected_action": [device.pk]})
    off = Device.objects.get()
    admin_client.post(changelist, {"action": "activate", "_selected_action": [device.pk]})
    on = Device.objects.get()

    assert "Firefox on the laptop" in listing
    assert "HTTP 500" in listing
    assert page.status_code == 200
    assert (off.is_active, off.failures) == (False, 2)
    assert (on.is_active, on.failures, on.last_error) == (True, 0, "")
    assert admin_client.get(reverse("admin:chat_device_add")).status_code == 403
