"""Browsers on other origins: CORS for the origins in ALLOWED_ORIGINS, nothing for others,
and the API at /graphql with or without the slash."""

import httpx
import pytest
from asgiref.sync import async_to_sync

APP_ORIGIN = "http://localhost:3000"
ME = {"query": "{ me { id } }"}


@pytest.fixture(autouse=True)
def _allowed_origins(settings):
    settings.ALLOWED_ORIGINS = settings.CORS_ALLOWED_ORIGINS = [APP_ORIGIN]
    settings.CSRF_TRUSTED_ORIGINS = [APP_ORIGIN]


def request(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, **kwargs)

    return async_to_sync(send)()


def preflight(app, origin: str, path: str = "/graphql/") -> httpx.Response:
    return request(
        app,
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": (
                "authorization, content-type, apollo-require-preflight"
            ),
        },
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/graphql/", "/graphql"])
def test_a_preflight_from_a_listed_origin_is_answered(asgi_app, path):
    response = preflight(asgi_app, APP_ORIGIN, path)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "apollo-require-preflight"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "86400"


@pytest.mark.django_db
def test_a_request_from_a_listed_origin_gets_its_cors_headers(asgi_app, token, user):
    response = request(
        asgi_app,
        "POST",
        "/graphql/",
        json=ME,
        headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {token}"},
    )

    assert response.json() == {"data": {"me": {"id": str(user.id)}}}
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    assert "origin" in response.headers["vary"].lower()


@pytest.mark.django_db
def test_an_unlisted_origin_gets_no_cors_headers(asgi_app, token):
    refused_preflight = preflight(asgi_app, "https://evil.example")
    actual = request(
        asgi_app,
        "POST",
        "/graphql/",
        json=ME,
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {token}"},
    )

    for response in (refused_preflight, actual):
        assert not [h for h in response.headers if h.startswith("access-control-")]


@pytest.mark.django_db
def test_errors_to_a_listed_origin_carry_cors_headers_too(asgi_app):
    response = request(
        asgi_app,
        "POST",
        "/graphql/",
        content=b"{nope",
        headers={"Origin": APP_ORIGIN, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.django_db
def test_the_admin_is_not_shared_with_other_origins(asgi_app):
    response = preflight(asgi_app, APP_ORIGIN, "/admin/")

    assert "access-control-allow-origin" not in response.headers


@pytest.mark.django_db
def test_graphql_without_the_slash_is_the_api_not_a_redirect(asgi_app, token, user, settings):
    settings.DEBUG = True  # APPEND_SLASH would turn a POST into a 500 here

    response = request(
        asgi_app, "POST", "/graphql", json=ME, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"id": str(user.id)}}}


@pytest.mark.django_db
def test_a_cookie_session_from_a_listed_origin_passes_csrf_with_its_token(asgi_app, user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    csrf = "a" * 32
    cookies = f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}"

    response = request(
        asgi_app,
        "POST",
        "/graphql/",
        json=ME,
        headers={
            "Origin": APP_ORIGIN,
            "Referer": f"{APP_ORIGIN}/chat",
            "Cookie": cookies,
            "X-CSRFToken": csrf,
        },
    )

    assert response.json() == {"data": {"me": {"id": str(user.id)}}}
    assert response.headers["access-control-allow-credentials"] == "true"
