"""Subscriptions over HTTP (`Accept: multipart/mixed;subscriptionSpec="1.0"`, what Apollo
Client's HttpLink and urql's fetchSubscriptions speak), driven through the project's ASGI
application by a raw ASGI client that reads the stream part by part and can hang up."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async

from chat import events, services
from schema import fanout
from tests.api.realtime import SEND, http, joined
from tests.graphql_client import post_scope

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]

MULTIPART = 'multipart/mixed;subscriptionSpec="1.0",application/json'
EVENTS = """
subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) {
    __typename ... on MessageAdded { revision message { seq body } }
  }
}
"""
ME = "subscription { me { displayName } }"
RENAME = 'mutation { updateProfile(displayName: "Ada Byron") { __typename } }'


class Stream:
    """One streaming HTTP request to the ASGI app: `payloads()` yields each multipart part's
    payload (heartbeats skipped); `hang_up()` disconnects as a browser tab closing does."""

    def __init__(self, app, body: dict, token: str, accept: str = MULTIPART) -> None:
        self.app, self.body = app, json.dumps(body).encode()
        self.headers = [
            (b"content-type", b"application/json"),
            (b"accept", accept.encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ]
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._sent_body = False
        self.task: asyncio.Task | None = None
        self._text = ""

    async def __aenter__(self) -> "Stream":
        scope = post_scope(self.headers)
        self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.hang_up()

    async def _receive(self) -> dict:
        if not self._sent_body:
            self._sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            await self.chunks.put(message.get("body", b""))

    async def payloads(self, count: int, timeout: float = 5) -> list[dict]:
        found: list[dict] = []
        while len(found) < count:
            while (
                "\r\n\r\n" not in self._text
                or "\r\n--graphql" not in self._text.split("\r\n\r\n", 1)[1]
            ):
                self._text += (await asyncio.wait_for(self.chunks.get(), timeout)).decode()
            _head, rest = self._text.split("\r\n\r\n", 1)
            part, self._text = rest.split("\r\n--graphql", 1)
            data = json.loads(part)
            if data:  # {} is a heartbeat
                found.append(data["payload"])
        return found

    async def hang_up(self) -> None:
        self._gone.set()
        if self.task is not None:
            await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 10)


async def send_as(app, token, chat, body) -> None:
    result = await http(app, SEND, {"chatId": str(chat.id), "body": body}, token)
    assert result == {"data": {"sendMessage": {"__typename": "Message"}}}


async def test_chat_events_stream_over_multipart_http_live(asgi_app, people):
    chat = people["chat"]
    async with Stream(
        asgi_app, {"query": EVENTS, "variables": {"chatId": str(chat.id)}}, people["ada_token"]
    ) as stream:
        await joined(f"chat.{chat.id.hex}")
        await send_as(asgi_app, people["grace_token"], chat, "over http")
        [payload] = await stream.payloads(1)

    assert stream.status == 200
    assert stream.response_headers["content-type"].startswith("multipart/mixed;boundary=graphql")
    assert payload == {
        "data": {
            "chatEvents": {
                "__typename": "MessageAdded",
                "revision": 1,
                "message": {"seq": 1, "body": "over http"},
            }
        }
    }


async def test_resuming_over_multipart_replays_exactly_what_was_missed(asgi_app, people):
    chat = people["chat"]
    for body in ("one", "two", "three"):
        await send_as(asgi_app, people["grace_token"], chat, body)

    variables = {"chatId": str(chat.id), "after": 1}
    async with Stream(
        asgi_app, {"query": EVENTS, "variables": variables}, people["ada_token"]
    ) as stream:
        replayed = await stream.payloads(2)
        quiet = stream.chunks.empty()

    assert [p["data"]["chatEvents"]["message"]["body"] for p in replayed] == ["two", "three"]
    assert quiet


async def test_hanging_up_leaves_no_listener_behind(asgi_app, people):
    chat = people["chat"]
    stream = Stream(
        asgi_app, {"query": EVENTS, "variables": {"chatId": str(chat.id)}}, people["ada_token"]
    )
    await stream.__aenter__()
    await joined(f"chat.{chat.id.hex}")
    listening = set(fanout.hub().feeds)

    await stream.hang_up()
    await asyncio.sleep(0.1)

    assert f"chat.{chat.id.hex}" in listening
    # The process's own group, where token revocations arrive (server.tokens), stays.
    assert set(fanout.hub().feeds) <= {events.SESSIONS_CHANGED_GROUP}
    assert stream.task.done()


async def test_me_streams_profile_changes_over_multipart(asgi_app, people):
    async with Stream(asgi_app, {"query": ME}, people["ada_token"]) as stream:
        [first] = await stream.payloads(1)
        await joined(f"user.{people['ada'].id.hex}")
        await http(asgi_app, RENAME, {}, people["ada_token"])
        [renamed] = await stream.payloads(1)

    assert first == {"data": {"me": {"displayName": "Ada"}}}
    assert renamed == {"data": {"me": {"displayName": "Ada Byron"}}}


async def test_a_non_member_gets_not_found_over_multipart(asgi_app, people):
    outsider_room = await sync_to_async(services.create_room)(owner=people["grace"], name="X")
    variables = {"chatId": str(outsider_room.id)}
    async with Stream(
        asgi_app, {"query": EVENTS, "variables": variables}, people["ada_token"]
    ) as stream:
        [payload] = await stream.payloads(1)

    assert payload["data"] is None
    assert [e["extensions"]["code"] for e in payload["errors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize("query", [EVENTS, ME, "subscription { inbox { __typename } }"])
async def test_a_subscription_over_plain_http_is_bad_request_without_a_traceback(
    asgi_app, people, caplog, query
):
    variables = {"chatId": str(people["chat"].id)}
    with caplog.at_level(logging.WARNING):
        result = await http(asgi_app, query, variables, people["ada_token"])

    assert result["data"] is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_REQUEST"]
    assert "multipart/mixed" in result["errors"][0]["message"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_an_event_stream_subscription_uses_lf_lines_for_urql(asgi_app, people):
    async with Stream(asgi_app, {"query": ME}, people["ada_token"], "text/event-stream") as stream:
        first = (await asyncio.wait_for(stream.chunks.get(), 5)).decode()

    assert stream.response_headers["content-type"] == "text/event-stream"
    assert first == 'event: next\ndata: {"data":{"me":{"displayName":"Ada"}}}\n\n'


async def test_a_query_from_a_client_that_also_accepts_streams_is_plain_json(asgi_app, people):
    accept = (
        "application/graphql-response+json, application/json, text/event-stream, multipart/mixed"
    )
    async with Stream(
        asgi_app, {"query": "{ me { displayName } }"}, people["ada_token"], accept
    ) as stream:
        body = (await asyncio.wait_for(stream.chunks.get(), 5)).decode()

    assert stream.response_headers["content-type"].startswith("application/graphql-response+json")
    assert json.loads(body) == {"data": {"me": {"displayName": "Ada"}}}
