"""Push notifications through the real processes: daphne takes the message over HTTP,
`python manage.py db_worker` delivers it to a push service on 127.0.0.1, which checks the
VAPID signature and decrypts the payload with the browser's private key."""

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from tests.push import LIVE_SETTINGS, VAPID_PUBLIC_KEY, Browser, PushService, verify_vapid
from tests.system.live import DbWorker, LiveStack, live_database

pytestmark = pytest.mark.system

ME = "query { me { id } }"
VAPID = "query { vapidPublicKey }"
OPEN_DIRECT = """
mutation($userId: ID!) { openDirectChat(userId: $userId) { ... on Chat { id } } }
"""
REGISTER_DEVICE = """
mutation($input: RegisterDeviceInput!) {
  registerDevice(input: $input) { __typename ... on Device { id } }
}
"""
SEND = """
mutation($chatId: ID!, $body: String!) {
  sendMessage(input: { chatId: $chatId, body: $body }) { ... on Message { id seq } }
}
"""


@pytest.fixture(scope="module")
def push_service():
    service = PushService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, push_service):
    tmp = tmp_path_factory.mktemp("push")
    with live_database(tmp) as database_url:
        stack = LiveStack(tmp, database_url, **LIVE_SETTINGS, PUSH_RETRY_DELAY="0.2")
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture
def worker(stack):
    process = DbWorker(stack)
    yield process
    process.stop()


@pytest.fixture
def pair(stack, push_service):
    """Ada and Grace in a direct chat; Grace's browser subscribed, her tab closed."""
    server = stack.servers[0]
    ada, grace = server.register("Ada"), server.register("Grace")
    grace_id = server.graphql(ME, token=grace)["data"]["me"]["id"]
    chat_id = server.graphql(OPEN_DIRECT, {"userId": grace_id}, token=ada)["data"]
    browser = Browser(push_service)
    registered = server.graphql(
        REGISTER_DEVICE, {"input": {"webPush": browser.subscription()}}, token=grace
    )
    assert registered["data"]["registerDevice"]["__typename"] == "Device"
    return server, ada, grace, chat_id["openDirectChat"]["id"], browser


def _send(server, token: str, chat_id: str, body: str) -> dict:
    result = server.graphql(SEND, {"chatId": chat_id, "body": body}, token=token)
    return result["data"]["sendMessage"]


def test_a_closed_tab_gets_an_encrypted_push_checked_against_vapid_public_key(pair, worker):
    server, ada, _, chat_id, browser = pair
    key = server.graphql(VAPID)["data"]["vapidPublicKey"]
    assert key == VAPID_PUBLIC_KEY

    sent = _send(server, ada, chat_id, "Are you coming tonight?")
    [received] = browser.service.wait_for(browser.path, 1)

    verify_vapid(received, key, audience=browser.service.url)
    notification = browser.decrypt(received)
    assert {
        k: notification[k] for k in ("senderName", "chatId", "preview", "seq", "messageId")
    } == {
        "senderName": "Ada",
        "chatId": chat_id,
        "preview": "Are you coming tonight?",
        "seq": sent["seq"],
        "messageId": sent["id"],
    }
    assert notification["title"] == "Ada"


async def _online(server, token: str):
    ws = await connect(server.ws_url, subprotocols=["graphql-transport-ws"])
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
    return ws


async def test_a_member_with_the_app_open_gets_no_push(pair, worker):
    server, ada, grace, chat_id, browser = pair

    ws = await _online(server, grace)
    await asyncio.to_thread(_send, server, ada, chat_id, "seen live")
    await ws.close()
    await asyncio.sleep(0.5)  # the socket's close reaches the server and the database
    later = await asyncio.to_thread(_send, server, ada, chat_id, "sent after she left")

    # The worker runs tasks in order: once the second push is in, the first was decided.
    [received] = await asyncio.to_thread(browser.service.wait_for, browser.path, 1)
    await asyncio.sleep(0.5)
    assert browser.requests() == [received]
    assert browser.decrypt(received)["seq"] == later["seq"]


def test_notifications_queued_while_the_worker_is_down_arrive_once_when_it_is_back(pair, stack):
    server, ada, _, chat_id, browser = pair
    stopped = DbWorker(stack)
    stopped.stop()  # a worker that was running, and is not any more

    seqs = [_send(server, ada, chat_id, f"while you were out {n}")["seq"] for n in range(5)]
    time.sleep(1)
    assert browser.requests() == []

    restarted = DbWorker(stack)
    try:
        received = browser.service.wait_for(browser.path, 5)
        time.sleep(1)  # anything more would be a duplicate
        assert len(browser.requests()) == 5
    finally:
        restarted.stop()
    assert sorted(browser.decrypt(r)["seq"] for r in received) == seqs
