"""Push notifications through the real processes: daphne takes the message over HTTP,
`python manage.py db_worker` delivers it to a push service on 127.0.0.1, which checks the
VAPID signature and decrypts the payload with the browser's private key."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.push import VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY, Browser, PushService, verify_vapid
from tests.system.live import ROOT, LiveStack, live_database

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


class DbWorker:
    """`python manage.py db_worker`, as the README runs it beside daphne."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """SIGTERM, as a deploy stops it: it finishes the task in hand and exits."""
        self.process.terminate()
        self.process.wait(20)
        self._log.close()


@pytest.fixture(scope="module")
def push_service():
    service = PushService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, push_service):
    tmp = tmp_path_factory.mktemp("push")
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp,
            database_url,
            VAPID_PRIVATE_KEY=VAPID_PRIVATE_KEY,
            VAPID_SUBJECT="mailto:live-push@example.com",
            WEBPUSH_ENDPOINT_HOSTS="127.0.0.1",
            PUSH_RETRY_DELAY="0.2",
            PRESENCE_TTL="3",
            PRESENCE_HEARTBEAT="1",
            PRESENCE_SWEEP_INTERVAL="1",
            SEND_RATE_BURST="1000",
            REGISTER_RATE_LIMIT_PER_ADDRESS="100000",
        )
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture
def worker(stack):
    process = DbWorker(stack.env, stack.tmp_dir / "db_worker.log")
    yield process
    if process.process.poll() is None:
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
    stopped = DbWorker(stack.env, stack.tmp_dir / "db_worker.log")
    stopped.stop()  # a worker that was running, and is not any more

    seqs = [_send(server, ada, chat_id, f"while you were out {n}")["seq"] for n in range(5)]
    time.sleep(1)
    assert browser.requests() == []

    restarted = DbWorker(stack.env, stack.tmp_dir / "db_worker.log")
    try:
        received = browser.service.wait_for(browser.path, 5)
        time.sleep(1)  # anything more would be a duplicate
        assert len(browser.requests()) == 5
    finally:
        restarted.stop()
    assert sorted(browser.decrypt(r)["seq"] for r in received) == seqs
