"""Several daphne processes behind one PostgreSQL and one Redis: every subscriber hears
every message exactly once whichever process it and the sender use, and presence holds
across processes, including after one is killed with `kill -9`."""

import asyncio
import json
import os
import time
import uuid

import pytest
from websockets.asyncio.client import connect

from tests.system.conftest import (
    PRESENCE_OFFLINE_GRACE,
    PRESENCE_SWEEP_INTERVAL,
    PRESENCE_TTL,
)

pytestmark = pytest.mark.system

REGISTER = """
mutation($email: String!, $name: String!) {
  register(email: $email, password: "correct horse battery staple", displayName: $name) {
    ... on AuthPayload { token user { id } }
  }
}
"""
CREATE_ROOM = 'mutation { createRoom(name: "Scale", isPublic: true) { ... on Chat { id } } }'
JOIN = "mutation($c: ID!) { joinRoom(chatId: $c) { __typename } }"
SEND = """
mutation($c: ID!, $b: String!) { sendMessage(input: {chatId: $c, body: $b}) { __typename } }
"""
EVENTS = """
subscription($c: ID!, $after: Int) {
  chatEvents(chatId: $c, after: $after) {
    __typename
    ... on MessageAdded { message { seq body } }
    ... on PresenceChanged { online user { displayName } }
  }
}
"""
ONLINE = "query($c: ID!) { onlineUsers(chatId: $c) { displayName } }"
REVISION = "query($c: ID!) { chat(id: $c) { revision } }"


@pytest.fixture(scope="module", autouse=True)
def _needs_redis():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("several processes need REDIS_URL: this runs in the PostgreSQL + Redis pass")


def register(server, name: str) -> str:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    result = server.graphql(REGISTER, {"email": email, "name": name})
    return result["data"]["register"]["token"]


class Listener:
    """A graphql-transport-ws client subscribed to one chat's events."""

    def __init__(self, server, token: str, chat_id: str, *, resume: bool = False) -> None:
        """`resume`: subscribe `after` the chat's revision as read now, so that what is
        sent before the subscription is live comes in its replay. Without it (presence,
        which is never replayed), wait a moment for the subscription to join its group."""
        self.server, self.token, self.chat_id = server, token, chat_id
        self.after: int | None = None
        if resume:
            chat = server.graphql(REVISION, {"c": chat_id}, token=token)["data"]["chat"]
            self.after = chat["revision"]
        self.received: list[dict] = []

    async def __aenter__(self) -> "Listener":
        self._cm = connect(self.server.ws_url, subprotocols=["graphql-transport-ws"])
        self.ws = await self._cm.__aenter__()
        await self.ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}
            )
        )
        assert json.loads(await self.ws.recv()) == {"type": "connection_ack"}
        await self.ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "1",
                    "payload": {
                        "query": EVENTS,
                        "variables": {"c": self.chat_id, "after": self.after},
                    },
                }
            )
        )
        if self.after is None:
            await asyncio.sleep(0.3)  # the subscription has joined its group
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(*exc)

    async def collect(self, until, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not until(self.received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                message = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            except TimeoutError:
                break
            if message["type"] == "next":
                self.received.append(message["payload"]["data"]["chatEvents"])
        return self.received

    def messages(self) -> list[tuple[int, str]]:
        return [
            (e["message"]["seq"], e["message"]["body"])
            for e in self.received
            if e["__typename"] == "MessageAdded"
        ]


@pytest.fixture(scope="module")
def two_servers(live_stack, daphne_server):
    return daphne_server, live_stack.start()


async def test_every_subscriber_on_every_process_gets_every_message_once(two_servers):
    a, b = two_servers
    owner = register(a, "Owner")
    tokens = [register(server, f"Member{n}") for n, server in enumerate([a, b, a, b])]
    room = a.graphql(CREATE_ROOM, token=owner)["data"]["createRoom"]["id"]
    for token, server in zip(tokens, [a, b, a, b], strict=True):
        assert server.graphql(JOIN, {"c": room}, token=token)["data"]["joinRoom"]
    first_seq = 6  # created + four joins

    listeners = [
        Listener(server, token, room, resume=True)
        for token, server in zip(tokens, [a, b, a, b], strict=True)
    ]
    async with listeners[0], listeners[1], listeners[2], listeners[3]:
        for n in range(20):
            sender = (a, b)[n % 2]
            result = await asyncio.to_thread(
                sender.graphql, SEND, {"c": room, "b": f"via {'ab'[n % 2]} {n}"}, tokens[n % 4]
            )
            assert result == {"data": {"sendMessage": {"__typename": "Message"}}}
        for listener in listeners:
            await listener.collect(lambda _, lis=listener: len(lis.messages()) >= 20, timeout=15)

    expected = [(first_seq + n, f"via {'ab'[n % 2]} {n}") for n in range(20)]
    for listener in listeners:
        assert listener.messages() == expected


def _named(event: dict, name: str) -> bool:
    return event.get("user", {}).get("displayName") == name


async def test_presence_holds_across_processes_and_survives_kill_9(live_stack, two_servers):
    a, b = two_servers
    doomed = live_stack.start()
    watcher_token, walker_token = register(a, "Watcher"), register(a, "Walker")
    room = a.graphql(CREATE_ROOM, token=watcher_token)["data"]["createRoom"]["id"]
    a.graphql(JOIN, {"c": room}, token=walker_token)

    async with Listener(b, watcher_token, room) as watcher:
        async with connect(doomed.ws_url, subprotocols=["graphql-transport-ws"]) as walker:
            await walker.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"authorization": f"Bearer {walker_token}"},
                    }
                )
            )
            assert json.loads(await walker.recv()) == {"type": "connection_ack"}
            await watcher.collect(
                lambda r: any(e.get("online") and _named(e, "Walker") for e in r), timeout=5
            )
            online_elsewhere = a.graphql(ONLINE, {"c": room}, token=watcher_token)

            doomed.kill()  # no disconnect code runs
            killed_at = time.monotonic()
            await watcher.collect(
                lambda r: any(e.get("online") is False for e in r),
                timeout=PRESENCE_TTL + PRESENCE_SWEEP_INTERVAL + PRESENCE_OFFLINE_GRACE + 10,
            )
            offline_after = time.monotonic() - killed_at
        after = a.graphql(ONLINE, {"c": room}, token=watcher_token)

    presence = [
        (e["user"]["displayName"], e["online"])
        for e in watcher.received
        if e["__typename"] == "PresenceChanged"
    ]
    assert ("Walker", True) in presence
    assert presence[-1] == ("Walker", False)
    assert offline_after <= PRESENCE_TTL + PRESENCE_SWEEP_INTERVAL + PRESENCE_OFFLINE_GRACE + 3
    assert {u["displayName"] for u in online_elsewhere["data"]["onlineUsers"]} == {
        "Watcher",
        "Walker",
    }
    assert after == {"data": {"onlineUsers": [{"displayName": "Watcher"}]}}


ME = "query { me { displayName } }"
RENAME = 'mutation { updateProfile(displayName: "Renamed") { __typename } }'
LOGOUT = "mutation { logout { __typename } }"


def _until(check, timeout: float = 5.0) -> float:
    """Seconds until `check()` held (polled), or fail."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "never held"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_token_signed_out_on_one_process_is_refused_by_the_other(two_servers):
    """Each process answers token checks from its cache (chat.tokencache): a profile change
    or a sign-out on one process must reach the other's cache through the channel layer,
    within the broadcast's delay, not the cache's `AUTH_TOKEN_CACHE_SECONDS`."""
    a, b = two_servers
    token = register(a, "Roamer")
    for _ in range(5):  # b looks it up once, then answers from its cache
        assert b.graphql(ME, token=token) == {"data": {"me": {"displayName": "Roamer"}}}
        time.sleep(0.05)

    assert a.graphql(RENAME, token=token)["data"]["updateProfile"]
    renamed = _until(lambda: b.graphql(ME, token=token)["data"]["me"]["displayName"] == "Renamed")
    assert a.graphql(LOGOUT, token=token)["data"]["logout"]

    def refused() -> bool:
        reply = b.graphql(ME, token=token)
        return reply.get("data") is None and reply["errors"][0]["extensions"]["code"] == (
            "UNAUTHENTICATED"
        )

    signed_out = _until(refused)
    assert renamed < 1, renamed
    assert signed_out < 1, signed_out
