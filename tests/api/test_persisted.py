"""Persisted documents: Apollo's automatic persisted queries over HTTP (POST and GET) and
WebSocket, and the trusted-documents mode that runs only what the clients were built with."""

import hashlib
import json
from urllib.parse import urlencode

import pytest

from tests.api.test_http import http
from tests.ws import GraphQLSocket

ME = "query Me { me { displayName } }"
ME_SUBSCRIPTION = "subscription { me { displayName } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def post(app, token, body: dict):
    return http(app, "POST", "/graphql/", json=body, headers={"Authorization": f"Bearer {token}"})


NOT_FOUND = {
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
}


@pytest.mark.django_db
def test_an_unknown_hash_then_the_text_then_the_hash_alone(asgi_app, token):
    unknown = post(asgi_app, token, {"extensions": persisted(sha(ME))})
    learnt = post(asgi_app, token, {"query": ME, "extensions": persisted(sha(ME))})
    by_hash = post(asgi_app, token, {"extensions": persisted(sha(ME))})
    query = urlencode({"extensions": json.dumps(persisted(sha(ME)))})
    by_get = http(
        asgi_app, "GET", f"/graphql/?{query}", headers={"Authorization": f"Bearer {token}"}
    )

    assert (unknown.status_code, unknown.json()) == (200, NOT_FOUND)
    expected = {"data": {"me": {"displayName": "Ada Lovelace"}}}
    assert learnt.json() == by_hash.json() == by_get.json() == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        (persisted("0" * 64), "provided sha does not match query"),
        ({"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}, "Unsupported persistedQuery"),
        ({"persistedQuery": "x"}, "Unsupported persistedQuery"),
    ],
)
def test_a_wrong_or_malformed_hash_is_refused(asgi_app, token, extensions, message):
    response = post(asgi_app, token, {"query": ME, "extensions": extensions})

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(message)
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


@pytest.mark.django_db(transaction=True)
async def test_a_persisted_document_over_a_websocket(
    asgi_app, transactional_db, close_worker_connections
):
    from asgiref.sync import sync_to_async

    from tests.factories import UserFactory, token_for

    user = await sync_to_async(UserFactory)(display_name="Ada")
    token = await sync_to_async(token_for)(user)
    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    extensions = persisted(sha(ME_SUBSCRIPTION))

    await socket.send({"type": "subscribe", "id": "1", "payload": {"extensions": extensions}})
    unknown = await socket.receive()
    await socket.send(
        {
            "type": "subscribe",
            "id": "2",
            "payload": {"query": ME_SUBSCRIPTION, "extensions": extensions},
        }
    )
    learnt = await socket.next_payload("2")
    await socket.send({"type": "subscribe", "id": "3", "payload": {"extensions": extensions}})
    by_hash = await socket.next_payload("3")
    await socket.close()

    assert unknown == {"id": "1", "type": "error", "payload": NOT_FOUND["errors"]}
    assert learnt == by_hash == {"data": {"me": {"displayName": "Ada"}}}


@pytest.fixture
def trusted(settings, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha(ME), "name": "Me", "type": "query", "body": ME}],
            }
        )
    )
    settings.GRAPHQL_TRUSTED_DOCUMENTS = str(manifest)


@pytest.mark.django_db
@pytest.mark.usefixtures("trusted")
def test_trusted_documents_mode_runs_only_the_manifest(asgi_app, token):
    by_hash = post(asgi_app, token, {"extensions": persisted(sha(ME))})
    by_text = post(asgi_app, token, {"query": ME})
    unlisted = post(asgi_app, token, {"query": "{ me { id } }"})
    unlisted_hash = post(asgi_app, token, {"extensions": persisted(sha("{ me { id } }"))})

    expected = {"data": {"me": {"displayName": "Ada Lovelace"}}}
    assert by_hash.json() == by_text.json() == expected
    for refused in (unlisted, unlisted_hash):
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["extensions"] == {"code": "TRUSTED_DOCUMENT_REQUIRED"}
