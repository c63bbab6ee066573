"""`/metrics` through live daphne processes sharing one PROMETHEUS_MULTIPROC_DIR: a scrape of
either process reports the machine's totals."""

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

TOKEN = "live-scrape"


def open_sockets(server) -> float:
    response = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    [family] = [
        f
        for f in text_string_to_metric_families(response.text)
        if f.name == "chat_websockets_open"
    ]
    return sum(sample.value for sample in family.samples)


async def test_a_scrape_of_one_process_counts_the_sockets_of_all(live_stack, tmp_path):
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_TOKEN": TOKEN}
    a, b = live_stack.start(**shared), live_stack.start(**shared)
    token = a.register("Scraped")
    init = json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})

    async with (
        connect(a.ws_url, subprotocols=["graphql-transport-ws"]) as on_a,
        connect(b.ws_url, subprotocols=["graphql-transport-ws"]) as on_b,
    ):
        for socket in (on_a, on_b):
            await socket.send(init)
            assert json.loads(await socket.recv()) == {"type": "connection_ack"}
        both = (open_sockets(a), open_sockets(b))
        await on_b.close()
        await on_a.close()
    closed = None
    for _ in range(50):  # the close reaches b's application a moment later
        closed = open_sockets(a)
        if closed == 0:
            break
        await asyncio.sleep(0.1)
    a.stop()
    b.stop()

    assert both == (2, 2)
    assert closed == 0
