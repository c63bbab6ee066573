"""HTTP features through live processes sharing Redis: a persisted query one process learnt
runs on another by its hash, and a subscription over multipart HTTP leaves nothing behind
in Redis once its client hangs up."""

import hashlib
import os

import httpx
import pytest

pytestmark = pytest.mark.system

ME = "query LiveMe { me { displayName } }"


@pytest.fixture(scope="module", autouse=True)
def _needs_redis():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("several processes need REDIS_URL: this runs in the PostgreSQL + Redis pass")


def post(server, body: dict, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql/",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_a_hash_learnt_by_one_process_runs_on_another(live_stack, daphne_server):
    other = live_stack.start()
    token = daphne_server.register("Persisted")
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(ME.encode()).hexdigest()}
    }

    unknown = post(other, {"extensions": extensions}, token)
    learnt = post(daphne_server, {"query": ME, "extensions": extensions}, token)
    elsewhere = post(other, {"extensions": extensions}, token)
    wrong = post(other, {"query": "{ me { id } }", "extensions": extensions}, token)

    assert unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert learnt.json() == elsewhere.json() == {"data": {"me": {"displayName": "Persisted"}}}
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_a_multipart_subscription_aborted_by_its_client_leaves_no_listener(live_stack):
    """Through a real daphne and Redis: the process's subscription to the chat's group in
    Redis is there while the client streams, and gone once it hangs up."""
    import time

    import redis

    server = live_stack.start()
    token = server.register("Streamer")
    room = server.graphql(
        'mutation { createRoom(name: "Stream") { ... on Chat { id } } }', token=token
    )["data"]["createRoom"]["id"]
    prefix = live_stack.env["CHANNEL_LAYER_PREFIX"]
    group_channel = f"{prefix}__group__chat.{room.replace('-', '')}"
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    def subscribers() -> int:
        return dict(client.pubsub_numsub(group_channel))[group_channel.encode()]

    body = {"query": "subscription($c: ID!) { chatEvents(chatId: $c) { __typename } }"}
    body["variables"] = {"c": room}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": 'multipart/mixed;subscriptionSpec="1.0",application/json',
    }
    with httpx.stream("POST", f"{server.url}/graphql/", json=body, headers=headers) as stream:
        assert stream.headers["content-type"].startswith("multipart/mixed")
        chunks = stream.iter_raw()
        next(chunks)  # the first heartbeat
        deadline = time.monotonic() + 10
        while not subscribers() and time.monotonic() < deadline:
            time.sleep(0.05)
        while_streaming = subscribers()
    closed_at = time.monotonic()
    while subscribers() and time.monotonic() < closed_at + 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - closed_at

    assert while_streaming == 1
    assert subscribers() == 0
    assert gone_after < 2
