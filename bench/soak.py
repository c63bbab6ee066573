"""Soak: no change lost, duplicated or out of order through disconnects and a Redis restart.

    .venv/bin/python bench/soak.py                       # 120 s, 24 subscribers
    .venv/bin/python bench/soak.py --duration 300 --subscribers 40

Two daphne processes (`python -m server.serve`) share one PostgreSQL database (a fresh one
from DATABASE_URL, default the local server) and a redis-server of the benchmark's own on a
free port. Subscribers, split across both processes, follow one room with
`chatEvents(after:)`; each drops its socket at random (every `--disconnect-every` seconds on
average) and resubscribes with the last revision it saw. A writer sends messages, edits
and deletes at `--rate` writes a second through both processes. Halfway through, Redis is
killed, kept down for `--redis-down` seconds, and started again.

Every subscriber records each revision it receives: a revision it already had is a
duplicate, one that skips ahead is out of order, and at the end every revision the room
has must have reached every subscriber (else lost). Each subscriber's view of the room
(message bodies and deletions, applied from its events) must equal the database's.
Latency from a write's answer to its arrival at the subscribers is reported for the calm
and for the writes made while Redis was down (the baseline of the same run). All traffic
is on 127.0.0.1; every loop is bounded in count and time.
"""

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.system.live import LiveStack, PrivateRedis, live_database  # noqa: E402

CREATE_ROOM = 'mutation { createRoom(name: "Soak", isPublic: true) { ... on Chat { id } } }'
JOIN = "mutation($c: ID!) { joinRoom(chatId: $c) { __typename } }"
SEND = """mutation($c: ID!, $b: String!) {
  sendMessage(input: {chatId: $c, body: $b}) { ... on Message { id seq } }
}"""
EDIT = "mutation($m: ID!, $b: String!) { editMessage(messageId: $m, body: $b) { __typename } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { __typename } }"
STATE = """query($c: ID!, $before: String) {
  chat(id: $c) { revision }
  messages(chatId: $c, last: 100, before: $before) {
    edges { cursor node { seq body isDeleted } }
    pageInfo { hasPreviousPage startCursor }
  }
}"""
EVENTS = """subscription($c: ID!, $after: Int) {
  chatEvents(chatId: $c, after: $after) {
    __typename
    ... on MessageAdded { revision message { seq body isDeleted } }
    ... on MessageEdited { revision message { seq body isDeleted } }
    ... on MessageDeleted { revision message { seq body isDeleted } }
    ... on MemberJoined { revision }
    ... on MemberLeft { revision }
  }
}"""


@dataclass
class Subscriber:
    index: int
    server: object
    token: str
    room: str
    last: int = 0
    received: list[int] = field(default_factory=list)
    duplicates: int = 0
    out_of_order: int = 0
    reconnects: int = 0
    refusals: int = 0
    view: dict[int, tuple[str, bool]] = field(default_factory=dict)
    arrivals: dict[int, float] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event, disconnect_every: float) -> None:
        rng = random.Random(self.index)
        while not stop.is_set():
            lifetime = rng.expovariate(1 / disconnect_every)
            try:
                await asyncio.wait_for(self._follow(stop), timeout=lifetime)
            except TimeoutError:
                pass
            except ConnectionClosed as closed:  # 1013: refused while Redis is down
                self.refusals += closed.rcvd is not None and closed.rcvd.code == 1013
            except Exception:  # refused at the handshake or at connection_init: retry
                self.refusals += 1
            if not stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(rng.uniform(0, 0.5))

    async def _follow(self, stop: asyncio.Event) -> None:
        async with connect(self.server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
            auth = {"authorization": f"Bearer {self.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            variables = {"c": self.room, "after": self.last}
            payload = {"query": EVENTS, "variables": variables}
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
            while not stop.is_set():
                message = json.loads(await ws.recv())
                if message["type"] == "next":
                    self._take(message["payload"]["data"]["chatEvents"])

    def _take(self, event: dict) -> None:
        revision = event.get("revision")
        if revision is None:
            return  # presence, typing: ephemeral
        if event["__typename"] in {"MemberJoined", "MemberLeft"}:
            return  # follows its SYSTEM message, with the same revision
        if revision <= self.last:
            self.duplicates += 1
            return
        if revision != self.last + 1:
            self.out_of_order += 1
        self.last = revision
        self.received.append(revision)
        self.arrivals.setdefault(revision, time.monotonic())
        message = event["message"]
        self.view[message["seq"]] = (message["body"], message["isDeleted"])


async def database_view(server, token: str, room: str) -> tuple[int, dict[int, tuple]]:
    view, before, revision = {}, None, 0
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            response = await client.post(
                f"{server.url}/graphql/",
                json={"query": STATE, "variables": {"c": room, "before": before}},
                headers={"Authorization": f"Bearer {token}"},
            )
            data = response.json()["data"]
            revision = max(revision, data["chat"]["revision"])
            for edge in data["messages"]["edges"]:
                node = edge["node"]
                view[node["seq"]] = (node["body"], node["isDeleted"])
            page = data["messages"]["pageInfo"]
            if not page["hasPreviousPage"]:
                return revision, view
            before = page["startCursor"]


async def writer(servers, token, room, args, stop, redis_window, log):
    """Sends, edits and deletes at `args.rate` writes a second, alternating processes."""
    rng = random.Random(7)
    sent: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            server = servers[n % 2]
            roll = rng.random()
            if sent and roll < args.delete_ratio:
                query, variables = DELETE, {"m": sent.pop(rng.randrange(len(sent)))}
            elif sent and roll < args.delete_ratio + args.edit_ratio:
                query, variables = EDIT, {"m": rng.choice(sent), "b": f"edit {n}"}
            else:
                query, variables = SEND, {"c": room, "b": f"message {n}"}
            response = await client.post(
                f"{server.url}/graphql/",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            answered = time.monotonic()
            body = response.json()
            if "errors" in body:
                log["errors"].append(body["errors"][0]["extensions"]["code"])
            else:
                log["writes"] += 1
                if query is SEND:
                    sent.append(body["data"]["sendMessage"]["id"])
                down = redis_window[0] is not None and redis_window[1] is None
                log["answered"].append((answered, down))
            n += 1
            await asyncio.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))


async def _restart(redis, down: float, window: list, started: float) -> None:
    redis.stop()
    window[0] = time.monotonic()
    print(f"redis killed at {window[0] - started:.1f} s", flush=True)
    await asyncio.sleep(down)
    redis.start()
    window[1] = time.monotonic()
    print(f"redis started again at {window[1] - started:.1f} s", flush=True)


async def soak(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    redis = PrivateRedis(tmp)
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp,
            database_url,
            REDIS_URL=redis.url,
            CHANNEL_LAYER_PROBE_INTERVAL="1",
            SEND_RATE_BURST="100000",
            EDIT_RATE_BURST="100000",
            MEMBERSHIP_RATE_BURST="100000",
            GRAPHQL_COST_RATE_BURST="1000000",
            GRAPHQL_COST_RATE_PER_SECOND="1000000",
            GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS="100000",
            REGISTER_RATE_LIMIT_PER_ADDRESS="100000",
        )
        servers = [stack.start(), stack.start()]
        try:
            return await _run(args, servers, redis)
        finally:
            stack.stop()
            redis.stop()


async def _run(args, servers, redis) -> dict:
    owner = servers[0].register("Owner")
    room = servers[0].graphql(CREATE_ROOM, token=owner)["data"]["createRoom"]["id"]
    subscribers = []
    for index in range(args.subscribers):
        server = servers[index % 2]
        token = server.register(f"Sub{index}")
        assert server.graphql(JOIN, {"c": room}, token=token)["data"]["joinRoom"]
        subscribers.append(Subscriber(index, server, token, room))
    stop, writes_stop = asyncio.Event(), asyncio.Event()
    redis_window: list[float | None] = [None, None]
    log = {"writes": 0, "errors": [], "answered": []}
    followers = [asyncio.create_task(s.run(stop, args.disconnect_every)) for s in subscribers]
    await asyncio.sleep(1)
    started = time.monotonic()
    writing = asyncio.create_task(
        writer(servers, owner, room, args, writes_stop, redis_window, log)
    )
    await asyncio.sleep(args.duration / 2)
    if args.redis_down <= 0:
        redis_window[0] = redis_window[1] = time.monotonic()
    else:
        await _restart(redis, args.redis_down, redis_window, started)
    await asyncio.sleep(max(0.0, args.duration / 2 - max(args.redis_down, 0)))
    writes_stop.set()
    await writing

    revision, truth = await database_view(servers[0], owner, room)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(s.last < revision for s in subscribers):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    converged_at = time.monotonic()
    stop.set()
    for task in followers:
        task.cancel()
    await asyncio.gather(*followers, return_exceptions=True)

    lags: dict[bool, list[float]] = {False: [], True: []}
    # Writes are answered in revision order (one writer, one write at a time), after the
    # room's creation and joins: match each answer to its revision.
    answered = log["answered"]
    first_write = revision - len(answered) + 1
    for offset, (when, down) in enumerate(answered):
        arrived = [s.arrivals.get(first_write + offset) for s in subscribers]
        lags[down].extend(at - when for at in arrived if at is not None)
    every = set(range(1, revision + 1))
    return {
        "duration_s": args.duration,
        "subscribers": args.subscribers,
        "writes": log["writes"],
        "write_errors": {code: log["errors"].count(code) for code in set(log["errors"])},
        "revisions": revision,
        "reconnects": sum(s.reconnects for s in subscribers),
        "connections_refused": sum(s.refusals for s in subscribers),
        "deliveries": sum(len(s.received) for s in subscribers),
        "lost": sum(len(every - set(s.received)) for s in subscribers),
        "duplicated": sum(s.duplicates for s in subscribers),
        "out_of_order": sum(s.out_of_order for s in subscribers),
        "views_unlike_the_database": sum(1 for s in subscribers if s.view != truth),
        "converged_s_after_last_write": round(converged_at - answered[-1][0], 2),
        "lag_calm_ms_p50_p99": [percentile(lags[False], 50), percentile(lags[False], 99)],
        "lag_redis_down_ms_p50_p99": [percentile(lags[True], 50), percentile(lags[True], 99)],
    }


def percentile(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--subscribers", type=int, default=24)
    parser.add_argument("--rate", type=float, default=10, help="writes per second")
    parser.add_argument("--edit-ratio", type=float, default=0.2)
    parser.add_argument("--delete-ratio", type=float, default=0.05)
    parser.add_argument("--disconnect-every", type=float, default=8, help="mean seconds")
    parser.add_argument("--redis-down", type=float, default=5, help="seconds")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(soak(args)), indent=2))


if __name__ == "__main__":
    main()
