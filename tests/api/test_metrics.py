"""`/metrics`: off by default, behind a token, and counting what production needs to see."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from chat import services
from tests.api.realtime import CHAT_EVENTS, SEND, http, subscribed
from tests.factories import UserFactory, token_for

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "scrape-me"


def scrape(token: str | None = TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().get("/metrics", **headers)


def samples() -> dict[tuple, float]:
    """Every sample of a scrape, by (name, labels)."""
    response = scrape()
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_are_off_without_a_token(settings):
    settings.METRICS_TOKEN = ""

    assert scrape().status_code == 404


def test_metrics_need_the_token(settings):
    settings.METRICS_TOKEN = TOKEN

    missing, wrong = scrape(None), scrape("guess")

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'


async def test_metrics_count_sockets_subscriptions_deliveries_and_sends(
    asgi_app, settings, close_worker_connections
):
    settings.METRICS_TOKEN = TOKEN
    ada = await sync_to_async(UserFactory)(display_name="Ada")
    grace = await sync_to_async(UserFactory)(display_name="Grace")
    chat = await sync_to_async(services.open_direct_chat)(user=ada, other_user_id=grace.id)
    ada_token, grace_token = await sync_to_async(lambda: (token_for(ada), token_for(grace)))()
    before = await sync_to_async(samples)()

    socket = await subscribed(asgi_app, grace_token, CHAT_EVENTS, {"chatId": str(chat.id)})
    resumed = await subscribed(
        asgi_app, grace_token, CHAT_EVENTS, {"chatId": str(chat.id), "after": 0}
    )
    sent = await http(asgi_app, SEND, {"chatId": str(chat.id), "body": "hi"}, ada_token)
    await socket.next_payload("s")
    await resumed.next_payload("s")
    during = await sync_to_async(samples)()
    await socket.close()
    await resumed.close()
    after = await sync_to_async(samples)()

    def grew(name: str, labels: tuple = ()) -> float:
        return during.get((name, labels), 0) - before.get((name, labels), 0)

    assert sent == {"data": {"sendMessage": {"__typename": "Message"}}}
    assert grew("chat_websockets_open") == 2
    assert grew("chat_subscriptions_active") == 2
    assert grew("chat_deliveries_total", (("path", "direct"),)) >= 1
    assert grew("chat_send_message_seconds_count") == 1
    assert grew("chat_websocket_connect_seconds_count") == 2
    assert grew("chat_subscription_resumes_total") == 1
    assert ("chat_tasks_pending", (("status", "ready"),)) in during
    assert after[("chat_websockets_open", ())] == before.get(("chat_websockets_open", ()), 0)
    assert after[("chat_subscriptions_active", ())] == before.get(
        ("chat_subscriptions_active", ()), 0
    )


async def test_refused_sockets_are_counted_by_reason(asgi_app, settings):
    from tests.ws import GraphQLSocket

    settings.METRICS_TOKEN = TOKEN
    key = ("chat_websockets_refused_total", (("reason", "unauthenticated"),))
    before = (await sync_to_async(samples)()).get(key, 0)

    socket = GraphQLSocket(asgi_app)
    await socket.connect()
    await socket.send({"type": "connection_init", "payload": {"authorization": "Bearer nope"}})
    await socket.receive_close()

    assert (await sync_to_async(samples)())[key] == before + 1
