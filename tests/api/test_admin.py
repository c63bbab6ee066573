from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import AuthToken, User
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
