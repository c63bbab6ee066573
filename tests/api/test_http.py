import json

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from chat import services

ME = "query { me { id } }"


def http(app, method: str, path: str, cookies=None, **kwargs) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", cookies=cookies
        ) as client:
            return await client.request(method, path, **kwargs)

    return async_to_sync(send)()


@pytest.fixture
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


# --- cookie sessions and CSRF --------------------------------------------------------


@pytest.mark.django_db
def test_a_cookie_session_without_the_csrf_token_is_refused(asgi_app, user, session_cookie):
    response = http(
        asgi_app, "POST", "/graphql/", json={"query": ME}, cookies={"sessionid": session_cookie}
    )

    assert response.status_code == 403
    assert response.json() == {
        "errors": [
            {
                "message": "CSRF check failed: CSRF cookie not set.",
                "extensions": {"code": "CSRF_FAILED"},
            }
        ]
    }


@pytest.mark.django_db
def test_a_cookie_session_with_the_csrf_token_from_graphiql_works(asgi_app, user, session_cookie):
    page = http(
        asgi_app,
        "GET",
        "/graphql/",
        headers={"Accept": "text/html"},
        cookies={"sessionid": session_cookie},
    )
    csrf = page.cookies["csrftoken"]

    response = http(
        asgi_app,
        "POST",
        "/graphql/",
        json={"query": ME},
        cookies={"sessionid": session_cookie, "csrftoken": csrf},
        headers={"X-CSRFToken": csrf},
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"id": str(user.id)}}}


@pytest.mark.django_db
def test_a_bearer_token_needs_no_csrf_token_even_beside_a_session(
    asgi_app, user, token, session_cookie
):
    response = http(
        asgi_app,
        "POST",
        "/graphql/",
        json={"query": ME},
        cookies={"sessionid": session_cookie},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.json() == {"data": {"me": {"id": str(user.id)}}}


@pytest.mark.django_db
def test_an_anonymous_post_needs_no_csrf_token(asgi_app):
    response = http(asgi_app, "POST", "/graphql/", json={"query": "{ __typename }"})

    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.django_db
def test_a_form_posted_to_a_checked_view_still_needs_its_csrf_token(asgi_app, admin_user):
    """The CSRF check runs inline for the GraphQL view only; Django's own views (the
    admin's sign-in form) keep it, in a thread."""
    form = {"username": admin_user.email, "password": "password", "next": "/admin/"}

    refused = http(asgi_app, "POST", "/admin/login/", data=form)
    page = http(asgi_app, "GET", "/admin/login/")
    csrf = page.cookies["csrftoken"]
    signed_in = http(
        asgi_app,
        "POST",
        "/admin/login/",
        data={**form, "csrfmiddlewaretoken": csrf},
        cookies={"csrftoken": csrf},
    )

    assert refused.status_code == 403
    assert signed_in.status_code == 302
    assert signed_in.headers["location"] == "/admin/"


# --- GraphiQL ------------------------------------------------------------------------


@pytest.mark.django_db
def test_graphiql_loads_every_asset_from_this_server(asgi_app, settings):
    page = http(asgi_app, "GET", "/graphql/", headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert "https://" not in page.text.split("<script>")[0]
    assets = [
        "/static/vendor/graphiql/react.production.min.js",
        "/static/vendor/graphiql/react-dom.production.min.js",
        "/static/vendor/graphiql/graphiql.min.js",
        "/static/vendor/graphiql/graphiql.min.css",
        "/static/vendor/graphiql/plugin-explorer.umd.js",
        "/static/vendor/graphiql/plugin-explorer.css",
    ]
    for asset in assets:
        assert asset in page.text
        response = http(asgi_app, "GET", asset)
        assert response.status_code == 200, asset
        assert response.content == (settings.BASE_DIR / "server" / asset[1:]).read_bytes()


# --- limits and errors ---------------------------------------------------------------


@pytest.mark.django_db
def test_too_many_aliases_are_refused(gql, settings):
    aliases = " ".join(f"a{n}: __typename" for n in range(settings.GRAPHQL_MAX_ALIASES + 1))

    response = gql.execute(f"{{ {aliases} }}")

    assert response.json["data"] is None
    assert response.error_codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert "aliases" in response.errors[0]["message"]


@pytest.mark.django_db
def test_too_deep_a_query_is_refused(gql, settings):
    depth = settings.GRAPHQL_MAX_DEPTH + 1
    # The rule measures the document before validation, so an invalid nesting of `me`
    # exercises it without needing a deep type.
    selection = "id"
    for _ in range(depth):
        selection = f"me {{ {selection} }}"
    query = "{ " + selection + " }"

    response = gql.execute(query)

    assert response.json["data"] is None
    assert "exceeds maximum operation depth" in response.errors[0]["message"]
    assert response.error_codes[0] == "GRAPHQL_VALIDATION_FAILED"


@pytest.mark.django_db
def test_too_many_tokens_are_refused(gql, settings):
    query = "{ " + " ".join(["__typename"] * settings.GRAPHQL_MAX_TOKENS) + " }"

    response = gql.execute(query)

    assert response.json["data"] is None
    assert response.error_codes == ["GRAPHQL_PARSE_FAILED"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ me { id ", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
@pytest.mark.django_db
def test_malformed_documents_get_a_code(gql, query, code):
    assert gql.execute(query).error_codes == [code]


@pytest.mark.django_db
def test_a_wrongly_typed_variable_is_bad_user_input(gql):
    response = gql.execute(
        "mutation($e: String!) { requestPasswordReset(email: $e) { __typename } }", {"e": 5}
    )

    assert response.error_codes == ["BAD_USER_INPUT"]


@pytest.mark.django_db
def test_a_body_that_is_not_json_is_a_400(asgi_app):
    response = http(
        asgi_app,
        "POST",
        "/graphql/",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400


@pytest.mark.django_db
def test_unexpected_errors_are_masked_and_logged(gql, user, token, monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services, "update_profile", explode)

    response = gql.execute(
        'mutation { updateProfile(displayName: "X") { __typename } }', token=token
    )

    assert response.json["data"] is None
    assert response.errors == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 12}],
            "path": ["updateProfile"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "secret internals" in caplog.text


@pytest.mark.django_db
def test_expected_errors_are_not_logged_as_failures(gql, caplog):
    gql.execute(ME)

    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.django_db
def test_introspection_can_be_turned_off(settings):
    from graphql.validation import NoSchemaIntrospectionCustomRule  # noqa: F401

    import schema as schema_module
    from schema import Query, Schema

    settings.GRAPHQL_INTROSPECTION = False
    closed = Schema(query=Query, extensions=schema_module._extensions())

    result = closed.execute_sync("{ __schema { queryType { name } } }")

    assert result.data is None
    assert "introspection" in result.errors[0].message.lower()


# --- health --------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_reports_database_and_channel_layer(asgi_app):
    response = http(asgi_app, "GET", "/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_when_the_channel_layer_fails(asgi_app, monkeypatch):
    from server import views

    async def broken():
        raise ConnectionError("redis is down")

    monkeypatch.setattr(views, "_channel_layer_ok", broken)

    response = http(asgi_app, "GET", "/healthz")

    assert response.status_code == 503
    assert json.loads(response.content) == {
        "status": "unavailable",
        "database": "ok",
        "channel_layer": "error",
    }


# --- GraphQL over HTTP: application/graphql-response+json ---------------------------------

GRAPHQL_RESPONSE = "application/graphql-response+json"


def post_accepting(app, body: dict, accept: str, token: str | None = None):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http(app, "POST", "/graphql/", json=body, headers=headers)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ me { id "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {
                "query": "query($n: Int!) { rooms(first: $n) { edges { cursor } } }",
                "variables": {"n": "x"},
            },
            "BAD_USER_INPUT",
        ),
    ],
    ids=["parse", "validation", "variable"],
)
def test_a_request_error_is_a_400_without_data_for_graphql_response_json(asgi_app, body, code):
    response = post_accepting(asgi_app, body, f"{GRAPHQL_RESPONSE}, application/json;q=0.9")

    assert response.status_code == 400
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert "data" not in response.json()
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == [code]


@pytest.mark.django_db
def test_a_field_error_is_a_200_with_data_for_graphql_response_json(asgi_app):
    response = post_accepting(asgi_app, {"query": "{ me { id } }"}, GRAPHQL_RESPONSE)

    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["path"] == ["me"]


@pytest.mark.django_db
def test_a_spent_budget_is_a_429_with_retry_after_for_graphql_response_json(asgi_app, settings):
    settings.GRAPHQL_COST_RATE_BURST = 1
    settings.GRAPHQL_COST_RATE_PER_SECOND = 0.01
    post_accepting(asgi_app, {"query": "{ __typename }"}, GRAPHQL_RESPONSE)

    response = post_accepting(asgi_app, {"query": "{ __typename }"}, GRAPHQL_RESPONSE)

    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_application_json_clients_keep_200_and_data(asgi_app, accept):
    headers = {"Accept": accept} if accept else {}

    response = http(asgi_app, "POST", "/graphql/", json={"query": "{ nope }"}, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] is None


@pytest.mark.django_db
def test_a_known_document_is_not_hashed_again(gql, user, token, monkeypatch):
    """A parsed document's hash walks its whole tree (8-10 µs for a history page's), and
    the limits' and validation's caches looked every request's document up by it; they
    key it by identity, as the parse cache hands out one document per text."""
    from graphql.language import DocumentNode

    query = "query { me { id displayName } }"
    gql.execute(query, token=token)
    hashed: list[DocumentNode] = []
    by_value = DocumentNode.__hash__

    def counted(self: DocumentNode) -> int:
        hashed.append(self)
        return by_value(self)

    monkeypatch.setattr(DocumentNode, "__hash__", counted)
    reply = gql.execute(query, token=token)

    assert reply.data["me"]["displayName"] == user.display_name
    assert hashed == []
