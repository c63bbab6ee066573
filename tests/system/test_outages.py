"""Outages against live daphne processes: Redis stopped and started under two processes,
and a database that cannot be reached. The database is the truth: writes go on while
Redis is down, every subscriber converges on what was written, and a client that cannot
be served is told so at once with a code it can retry on."""

import asyncio
import hashlib
import json
import os
import shutil
import threading
import time
import uuid

import httpx
import pytest
import redis as redis_client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.system.live import LiveServer, LiveStack, PrivateRedis, free_port, live_database
from tests.system.rawws import RawWebSocket

pytestmark = pytest.mark.system

CREATE_ROOM = 'mutation { createRoom(name: "Outage", isPublic: true) { ... on Chat { id } } }'
JOIN = "mutation($c: ID!) { joinRoom(chatId: $c) { __typename } }"
SEND = """
mutation($c: ID!, $b: String!) {
  sendMessage(input: {chatId: $c, body: $b}) { __typename ... on Message { id seq } }
}
"""
EDIT = "mutation($m: ID!, $b: String!) { editMessage(messageId: $m, body: $b) { __typename } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { __typename } }"
TYPING = "mutation($c: ID!) { setTyping(chatId: $c, typing: true) { __typename } }"
LOGOUT = "mutation { logout { __typename } }"
EVENTS = """
subscription($c: ID!, $after: Int) {
  chatEvents(chatId: $c, after: $after) {
    __typename
    ... on MessageAdded { revision message { seq body } }
    ... on MessageEdited { revision message { seq body } }
    ... on MessageDeleted { revision message { seq isDeleted } }
    ... on MemberJoined { revision user { displayName } }
    ... on MemberLeft { revision user { displayName } }
  }
}
"""


@pytest.fixture(scope="module")
def redis_binary():
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is needed for the outage tests")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def redis_outage_stack(tmp_path, redis_binary):
    redis = PrivateRedis(tmp_path)
    with live_database(tmp_path) as database_url:
        stack = LiveStack(
            tmp_path,
            database_url,
            REDIS_URL=redis.url,
            CHANNEL_LAYER_PROBE_INTERVAL="0.5",
            PRESENCE_HEARTBEAT="1",
            SEND_RATE_BURST="1000",
        )
        try:
            yield redis, stack.start(), stack.start()
        finally:
            stack.stop()
            redis.stop()


class Subscriber:
    def __init__(self, server: LiveServer, token: str, chat_id: str, after: int | None = None):
        self.server, self.token, self.chat_id, self.after = server, token, chat_id, after
        self.events: list[dict] = []

    async def __aenter__(self) -> "Subscriber":
        self._cm = connect(self.server.ws_url, subprotocols=["graphql-transport-ws"])
        self.ws = await self._cm.__aenter__()
        auth = {"authorization": f"Bearer {self.token}"}
        await self.ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        assert json.loads(await self.ws.recv()) == {"type": "connection_ack"}
        variables = {"c": self.chat_id, "after": self.after}
        payload = {"query": EVENTS, "variables": variables}
        await self.ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(*exc)

    async def collect_until(self, done, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not done(self.events) and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic())
            except TimeoutError:
                break
            message = json.loads(raw)
            if message["type"] != "next":
                continue
            event = (message["payload"].get("data") or {}).get("chatEvents") or {}
            if "revision" in event:  # presence and typing come and go: not the point here
                self.events.append(event)
        return self.events


def last_revision(events: list[dict], revision: int):
    return lambda _: bool(events) and events[-1]["revision"] >= revision


def summary(events: list[dict]) -> list[tuple]:
    """(event, revision, seq or who). A replayed change shows the message as it is at the
    replay (an edit replayed after the delete shows the deleted message), so bodies are
    checked only where they cannot have changed since."""
    rows = []
    for event in events:
        message = event.get("message")
        detail = message["seq"] if message else event["user"]["displayName"]
        if event["__typename"] == "MessageAdded" and message["seq"] != 3:
            detail = (detail, message["body"])
        rows.append((event["__typename"], event["revision"], detail))
    return rows


async def call(server, query, variables, token):
    return await asyncio.to_thread(server.graphql, query, variables, token)


async def test_changes_made_while_redis_is_down_reach_every_subscriber(redis_outage_stack):
    redis, a, b = redis_outage_stack
    ada, grace = a.register("Ada"), b.register("Grace")
    lin_email = f"lin-{uuid.uuid4().hex[:8]}@example.com"
    lin = b.graphql(
        'mutation($e: String!) { register(email: $e, displayName: "Lin", '
        'password: "correct horse battery staple") { ... on AuthPayload { token } } }',
        {"e": lin_email},
    )["data"]["register"]["token"]
    room = a.graphql(CREATE_ROOM, token=ada)["data"]["createRoom"]["id"]  # revision 1
    assert b.graphql(JOIN, {"c": room}, token=grace)["data"]["joinRoom"]  # revision 2
    hello = a.graphql(SEND, {"c": room, "b": "hello"}, token=ada)["data"]["sendMessage"]
    # revision 3

    lins_other_session = b.graphql(
        'mutation { login(email: "%s", password: "correct horse battery staple") '  # noqa: UP031
        "{ ... on AuthPayload { token } } }" % lin_email
    )["data"]["login"]["token"]
    async with (
        Subscriber(b, grace, room) as on_b,
        Subscriber(a, ada, room) as on_a,
        Subscriber(a, lins_other_session, room) as signed_out,
    ):
        redis.stop()
        await asyncio.sleep(0.2)
        # Lin signs that session out while Redis is down: the close event is lost.
        assert (await call(b, LOGOUT, {}, lins_other_session))["data"]["logout"]
        # Every write goes on: the database is the truth.
        answers = [
            await call(a, EDIT, {"m": hello["id"], "b": "hello, edited"}, ada),  # 4
            await call(a, SEND, {"c": room, "b": "while down"}, ada),  # 5
            await call(b, JOIN, {"c": room}, lin),  # 6
            await call(a, DELETE, {"m": hello["id"]}, ada),  # 7
            await call(b, TYPING, {"c": room}, grace),  # ephemeral: lost, but answered
        ]
        # While Redis is down, the processes poll the database for their subscribers.
        down = await on_b.collect_until(last_revision(on_b.events, 7), timeout=15)
        # A socket signing in meanwhile is told to try again later, not failed.
        async with connect(b.ws_url, subprotocols=["graphql-transport-ws"]) as refused:
            await refused.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {grace}"}}
                )
            )
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(refused.recv(), 10)
        assert closed.value.rcvd.code == 1013
        redis.start()
        await asyncio.sleep(2)  # the layer reconnects and the probe sees it
        after = await call(b, SEND, {"c": room, "b": "back"}, grace)  # 8, live again
        await on_b.collect_until(last_revision(on_b.events, 8), timeout=15)
        await on_a.collect_until(last_revision(on_a.events, 8), timeout=15)
        # Once Redis is back the socket asks the database, and is closed.
        with pytest.raises(ConnectionClosed) as revoked:
            await signed_out.collect_until(lambda _: False, timeout=10)
        assert revoked.value.rcvd.code == 4403

    assert [next(iter(answer["data"].values()))["__typename"] for answer in answers] == [
        "Message",
        "Message",
        "Chat",
        "Message",
        "Done",
    ]
    assert after["data"]["sendMessage"]["seq"] == 6
    expected = [
        ("MessageEdited", 4, 3),
        ("MessageAdded", 5, (4, "while down")),
        ("MessageAdded", 6, (5, "Lin joined")),
        ("MemberJoined", 6, "Lin"),
        ("MessageDeleted", 7, 3),
        ("MessageAdded", 8, (6, "back")),
    ]
    assert summary(down)[:5] == expected[:5]
    for subscriber in (on_a, on_b):
        assert summary(subscriber.events) == expected  # each once, in order
        assert subscriber.events[4]["message"]["isDeleted"] is True

    # A client that was away resumes from the revision it had and gets exactly the rest.
    async with Subscriber(a, grace, room, after=3) as resumed:
        await resumed.collect_until(last_revision(resumed.events, 8), timeout=10)
        assert await resumed.collect_until(lambda _: False, timeout=0.5) == resumed.events
    assert summary(resumed.events) == expected


ME_SUBSCRIPTION = "subscription { me { displayName } }"


def _persisted(query: str) -> dict:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def _signed_in_socket(server: LiveServer, token: str) -> RawWebSocket:
    socket = RawWebSocket(server.port)
    socket.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    assert socket.message() == {"type": "connection_ack"}
    return socket


def test_a_stalled_redis_holds_up_only_what_waits_for_it(tmp_path, redis_binary):
    """While Redis does not answer, a request waiting for it (the query budget, a persisted
    document) must not hold up the process's other sockets: before the fix those calls
    blocked the event loop, and a ping on another socket waited for Redis too."""
    redis = PrivateRedis(tmp_path)
    with live_database(tmp_path) as database_url:
        stack = LiveStack(tmp_path, database_url, REDIS_URL=redis.url, REDIS_TIMEOUT="5")
        try:
            server = stack.start()
            token = server.register("Stall")
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{server.url}/graphql/"
            me = "query { me { displayName } }"
            httpx.post(url, json={"query": me, "extensions": _persisted(me)}, headers=headers)
            bystander, subscriber = (_signed_in_socket(server, token) for _ in range(2))
            subscriber.send(
                {
                    "type": "subscribe",
                    "id": "learn",
                    "payload": {
                        "query": ME_SUBSCRIPTION,
                        "extensions": _persisted(ME_SUBSCRIPTION),
                    },
                }
            )
            assert subscriber.message()["type"] == "next"
            waiting_for_redis = {
                "a query over HTTP": lambda: httpx.post(
                    url, json={"query": "{ __typename }"}, headers=headers, timeout=10
                ),
                "a persisted query over HTTP": lambda: httpx.post(
                    url, json={"extensions": _persisted(me)}, headers=headers, timeout=10
                ),
                "a persisted subscription over a WebSocket": lambda: subscriber.send(
                    {
                        "type": "subscribe",
                        "id": "by-hash",
                        "payload": {"extensions": _persisted(ME_SUBSCRIPTION)},
                    }
                ),
            }
            control = redis_client.Redis.from_url(redis.url)
            answered = {}
            for name, request in waiting_for_redis.items():
                control.execute_command("CLIENT", "PAUSE", "1500", "ALL")
                waiting = threading.Thread(target=request)
                waiting.start()
                time.sleep(0.3)  # the request is waiting for Redis by now
                started = time.monotonic()
                bystander.send_frame(0x9, b"still there?")
                assert bystander.frame() == (0xA, b"still there?")
                answered[name] = time.monotonic() - started
                waiting.join()
                time.sleep(1.5)  # the pause is over
            # The stalled requests were answered once Redis was back.
            assert subscriber.message()["id"] == "by-hash"
        finally:
            stack.stop()
            redis.stop()

    assert all(seconds < 0.5 for seconds in answered.values()), answered


def nowhere_server(tmp_path) -> LiveServer:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "DJANGO_SETTINGS_MODULE": "server.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        "DATABASE_CONNECT_TIMEOUT": "2",
        "DEBUG": "false",
        "SECRET_KEY": "live-tests-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    return LiveServer(env, tmp_path / "nowhere.log", healthy=False)


@pytest.fixture
def no_database(tmp_path):
    server = nowhere_server(tmp_path)
    yield server
    server.stop()


def test_an_unreachable_database_is_a_coded_503_over_http(no_database):
    server = no_database
    health = httpx.get(f"{server.url}/healthz", timeout=10)
    with_token = httpx.post(
        f"{server.url}/graphql/",
        json={"query": "{ me { id } }"},
        headers={"Authorization": "Bearer ct_anything"},
        timeout=10,
    )
    login = server.graphql(
        'mutation { login(email: "a@example.com", password: "x") { __typename } }'
    )

    assert health.status_code == 503
    assert health.json()["database"] == "error"
    assert with_token.status_code == 503
    assert with_token.headers["Retry-After"] == "5"
    assert with_token.json() == {
        "errors": [
            {
                "message": "The service is temporarily unavailable. Try again shortly.",
                "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": 5},
            }
        ]
    }
    assert login["data"] is None
    assert login["errors"][0]["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfter": 5}


async def test_an_unreachable_database_closes_a_socket_1013_at_once(no_database):
    started = time.monotonic()
    async with connect(no_database.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        auth = {"authorization": "Bearer ct_anything"}
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)

    assert closed.value.rcvd.code == 1013
    assert time.monotonic() - started < 5


CHAT_LIST = "{ chats(first: 5) { edges { node { id } } } }"


def test_connections_the_database_ended_are_replaced_before_requests_use_them(tmp_path):
    """PostgreSQL restarting (here: every connection of the database terminated) ends the
    connections each request thread keeps. The health check asks the socket, not the
    server (server/postgresql/): the server's goodbye on it makes the next request on
    each thread reconnect, and no request fails."""
    with live_database(tmp_path) as database_url:
        if not database_url.startswith("postgres"):
            pytest.skip("needs DATABASE_URL: runs in the PostgreSQL + Redis pass")
        stack = LiveStack(tmp_path, database_url)
        try:
            server = stack.start()
            token = server.register("Restart")

            async def lists() -> list[httpx.Response]:
                # Concurrent, so that they spread over the server's request threads.
                headers = {"Authorization": f"Bearer {token}"}
                async with httpx.AsyncClient(headers=headers, timeout=10) as client:
                    return await asyncio.gather(
                        *(
                            client.post(f"{server.url}/graphql/", json={"query": CHAT_LIST})
                            for _ in range(24)
                        )
                    )

            assert all(reply.status_code == 200 for reply in asyncio.run(lists()))
            name = database_url.rsplit("/", 1)[1]
            terminated = _terminate_connections(database_url, name)
            time.sleep(0.2)  # the servers' goodbyes arrive
            after = asyncio.run(lists())
        finally:
            stack.stop()

    assert terminated >= 2, "the server's threads held no connections to end"
    assert [reply.status_code for reply in after] == [200] * len(after)
    assert all("errors" not in reply.json() for reply in after), after[0].text


def _terminate_connections(database_url: str, name: str) -> int:
    import psycopg2

    admin = psycopg2.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        [terminated] = cursor.fetchone()
    admin.close()
    return terminated
