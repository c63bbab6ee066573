"""A reconnect storm: every subscribed socket dropped at once, all reconnecting with `after`
while messages keep flowing.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/reconnect.py                  # 5,000 sockets
    ... bench/reconnect.py --sockets 1000 --rate 2          # a quicker run
    ... bench/reconnect.py --sockets 1000 --server uvicorn  # or granian

One daphne process (`python -m server.serve`; `--server` picks another) on a fresh
database (PostgreSQL from DATABASE_URL, else SQLite), with Redis when REDIS_URL is set.
`--sockets` sockets (20 per user, the per-user cap) follow one room with `chatEvents`,
first subscribing from the room's revision as a client that has loaded its history does; a
sender posts `--rate` messages a second over HTTP throughout. Then every socket closes at
once and reconnects with `after` set to the last revision it saw. Prints:

- the time and the server's CPU (user + system, from /proc) to connect the sockets the
  first time, `--concurrency` handshakes at a time (what a socket costs when nothing is
  dropped; the CPU until `--settle` seconds after the last one, so that the garbage walk
  the wave leaves is counted), and again for the storm (all at once), per socket;
- the time from the drop until every socket is live again (has caught up with the
  room's newest revision as it was when the storm began); clients retry a dropped or
  refused handshake as graphql-ws does (exponential backoff with jitter), and the retries
  are counted (daphne drops a handshake the application has not accepted within 5 s);
- what each socket received over the whole run against the database: lost, duplicated,
  out of order (must all be 0);
- then, in the same run, what a first connect costs on two peers, the same number of
  sockets `--concurrency` at a time: the Channels tutorial consumer (bench/baseline_asgi.py:
  accept and join a group, on the same channel layer; the cost the issue's 3 ms target
  was taken from) and the Node peer (bench/node_peer.mjs: `connection_init` and a
  `chatEvents` subscription); the project's first-connect figure is printed as a ratio to
  each. `--no-peers` skips them.

Only 127.0.0.1 is contacted; the run is bounded by `--sockets` and `--timeout`.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import Server, layer_env  # noqa: E402
from bench.proc import cpu_seconds, rss_bytes  # noqa: E402
from bench.push import setup_django  # noqa: E402
from tests.system.live import SERVERS, LiveStack, live_database  # noqa: E402

EVENTS = """subscription($c: ID!, $after: Int) {
  chatEvents(chatId: $c, after: $after) { ... on MessageAdded { revision } }
}"""
SEND = """mutation($c: ID!, $b: String!, $id: String!) {
  sendMessage(input: {chatId: $c, body: $b, clientId: $id}) { __typename }
}"""
PER_USER = 20


class Socket:
    """One client's view of the room: the revisions it received, in order."""

    def __init__(self, url: str, token: str, room: str) -> None:
        self.url, self.token, self.room = url, token, room
        self.last = 0
        self.duplicates = self.out_of_order = 0
        self.received: set[int] = set()
        self.acked = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.retries = self.first_retries = 0

    def start(self) -> None:
        self.acked.clear()
        self.task = asyncio.get_running_loop().create_task(self._retrying())

    async def _retrying(self) -> None:
        """As graphql-ws retries: a refused or dropped handshake is tried again after
        1 s, 2 s, 4 s ... (at most 30 s), plus 0.3 to 3 s of jitter."""
        rng = random.Random(id(self))
        attempt = 0
        while True:
            try:
                await self._follow()
                return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, AssertionError):
                self.retries += 1
                await asyncio.sleep(min(30, 2**attempt) + rng.uniform(0.3, 3))
                attempt += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _follow(self) -> None:
        async with connect(
            self.url, subprotocols=["graphql-transport-ws"], open_timeout=120
        ) as ws:
            auth = {"authorization": f"Bearer {self.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            variables = {"c": self.room, "after": self.last}
            payload = {"query": EVENTS, "variables": variables}
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
            self.acked.set()
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] != "next":
                    continue
                event = message["payload"]["data"]["chatEvents"]
                revision = event.get("revision")
                if revision is None:
                    continue
                if revision <= self.last:
                    self.duplicates += 1
                    continue
                if revision != self.last + 1:
                    self.out_of_order += 1
                self.last = revision
                self.received.add(revision)


def seed(database_url: str, sockets: int) -> tuple[str, list[str], str]:
    """The room, one token per socket (20 sockets per user), and the sender's token:
    written with the ORM in bulk."""
    setup_django(database_url)
    from chat import auth, services
    from chat.models import Chat, Membership, User

    owner = User.objects.create_user("owner@bench.example.com", None, display_name="Owner")
    room = services.create_room(owner=owner, name="Storm", is_public=True)
    users = User.objects.bulk_create(
        User(email=f"{n}@storm.example.com", display_name=f"User {n}")
        for n in range((sockets + PER_USER - 1) // PER_USER)
    )
    Membership.objects.bulk_create(Membership(chat=room, user=user) for user in users)
    Chat.objects.filter(pk=room.pk).update(member_count=len(users) + 1)
    tokens = [auth.issue_token(user=users[n // PER_USER])[0] for n in range(sockets)]
    return str(room.id), tokens, auth.issue_token(user=owner)[0]


async def sender(
    url: str, token: str, room: str, rate: float, stop: asyncio.Event, waits: list[float]
) -> int:
    """Sends `rate` messages a second until `stop`, each retried with its `clientId` until
    it lands (as clients do: a retry never doubles it); `waits` gets each send's time."""
    sent = 0
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            variables = {"c": room, "b": f"message {sent}", "id": f"bench-{sent}"}
            started = time.monotonic()
            while True:
                try:
                    response = await client.post(
                        url, json={"query": SEND, "variables": variables}, timeout=10
                    )
                    break
                except httpx.TimeoutException:
                    continue
            waits.append(time.monotonic() - started)
            reply = response.json()
            assert reply["data"]["sendMessage"]["__typename"] == "Message", reply
            sent += 1
            await asyncio.sleep(1 / rate)
    return sent


async def revision(url: str, token: str, room: str) -> int:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        reply = await client.post(
            url,
            json={
                "query": "query($c: ID!) { chat(id: $c) { revision } }",
                "variables": {"c": room},
            },
            timeout=120,
        )
        return reply.json()["data"]["chat"]["revision"]


async def until(sockets: list[Socket], target: int, limit: float) -> float:
    """Seconds until every socket has seen `target` (at most `limit`)."""
    started = time.monotonic()
    while any(s.last < target for s in sockets):
        if time.monotonic() - started > limit:
            behind = sum(s.last < target for s in sockets)
            raise TimeoutError(f"{behind} sockets still behind revision {target}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def crowd_stack(tmp: Path, database_url: str, **settings: str) -> LiveStack:
    """A stack that thousands of sockets from this one client address may join, each
    subscription priced but never refused, on Redis when REDIS_URL is set."""
    redis = {"REDIS_URL": os.environ["REDIS_URL"]} if os.environ.get("REDIS_URL") else {}
    return LiveStack(
        tmp,
        database_url,
        **redis,
        GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS="1000000",
        GRAPHQL_COST_RATE_BURST="100000000",
        GRAPHQL_COST_RATE_PER_SECOND="100000000",
        **settings,
    )


async def paced_connects(server: Server, url: str, frames, n: int, concurrency: int) -> float:
    """Server CPU seconds to open `n` sockets `concurrency` at a time, each sending
    `frames(i)` and waiting for an answer to each; they stay open until all are in."""
    gate, stop = asyncio.Semaphore(concurrency), asyncio.Event()
    ready = 0

    async def one(i: int) -> None:
        nonlocal ready
        async with gate:  # released once this socket is in; it stays open
            ws = await connect(url, subprotocols=["graphql-transport-ws"], open_timeout=120)
            for frame in frames(i):
                await ws.send(json.dumps(frame))
                if frame["type"] == "connection_init":
                    assert json.loads(await ws.recv())["type"] == "connection_ack"
            ready += 1
        try:
            await stop.wait()
        finally:
            await ws.close()

    pid = server.process.pid
    await asyncio.sleep(1)
    cpu = cpu_seconds(pid)
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    try:
        while ready < n:
            if failed := next((t for t in tasks if t.done()), None):
                await failed  # raises what failed
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # the last subscriptions start
        return cpu_seconds(pid) - cpu
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def peers(args, first_cpu: float) -> None:
    """What a first connect costs on the plain consumer and on the Node peer, in this run."""
    n = args.sockets
    env = {
        **os.environ,
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "server.settings",
        **layer_env("pubsub" if os.environ.get("REDIS_URL") else "memory"),
    }
    subscribe = {
        "type": "subscribe",
        "id": "1",
        "payload": {
            "query": "subscription($c: ID!) { chatEvents(chatId: $c) { __typename } }",
            "variables": {"c": "storm"},
        },
    }
    runs = {
        "plain Channels consumer (accept, join a group)": (
            Server("bench.baseline_asgi:application", env),
            "/ws/room/storm/",
            lambda i: [],
        ),
        "Node peer (connection_init, subscribe)": (
            Server("", env, node=True),
            "/graphql/",
            lambda i: [
                {
                    "type": "connection_init",
                    "payload": {"authorization": f"Bearer ct_bench_0_{i}_{os.getpid()}"},
                },
                subscribe,
            ],
        ),
    }
    print("\n| first connect, same sockets, same pacing | CPU per socket | project's ratio |")
    print("|---|---|---|")
    print(f"| the project | {first_cpu / n * 1000:.2f} ms | 1 |")
    for name, (server, path, frames) in runs.items():
        try:
            url = f"ws://127.0.0.1:{server.port}{path}"
            cpu = await paced_connects(server, url, frames, n, args.concurrency)
        finally:
            server.stop()
        print(f"| {name} | {cpu / n * 1000:.2f} ms | {first_cpu / cpu:.2f} |")


async def storm(server, args, room: str, tokens: list[str], owner: str) -> float:
    http_url = f"{server.url}/graphql/"
    pid = server.process.pid
    sockets = [Socket(server.ws_url, token, room) for token in tokens]

    # First, what a socket costs without a storm: at most --concurrency handshakes in
    # flight, so none waits long enough to be dropped and retried.
    gate = asyncio.Semaphore(args.concurrency)

    async def paced(socket: Socket) -> None:
        async with gate:
            socket.start()
            await socket.acked.wait()

    # Each client first loads the room's history and subscribes from its revision, as the
    # README tells clients to: nothing to replay on a first connect.
    start = await revision(http_url, owner, room)
    for socket in sockets:
        socket.last = start
    rss = rss_bytes(pid)
    cpu, started = cpu_seconds(pid), time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(paced(s) for s in sockets)), args.timeout)
    wall = time.monotonic() - started
    # The last subscriptions start, and the process does what the wave left it to do (a
    # garbage walk, server.collector): that is part of what the sockets cost.
    await asyncio.sleep(1 + args.settle)
    first = (wall, cpu_seconds(pid) - cpu)
    for socket in sockets:
        socket.first_retries = socket.retries
    # Idle: every socket subscribed, nothing sent; what presence and keep-alives cost.
    cpu = cpu_seconds(pid)
    await asyncio.sleep(args.idle)
    idle_core = (cpu_seconds(pid) - cpu) / args.idle
    per_socket_kb = (rss_bytes(pid) - rss) / len(sockets) / 1024

    stop = asyncio.Event()
    waits: list[float] = []
    sending = asyncio.create_task(sender(http_url, owner, room, args.rate, stop, waits))
    await asyncio.sleep(args.settle)
    await until(sockets, await revision(http_url, owner, room), args.timeout)

    for socket in sockets:  # the drop: every socket at once
        await socket.stop()
    cpu, started = cpu_seconds(pid), time.monotonic()
    target = await revision(http_url, owner, room)
    for socket in sockets:
        socket.start()
    await asyncio.wait_for(asyncio.gather(*(s.acked.wait() for s in sockets)), args.timeout)
    acked = time.monotonic() - started
    live = acked + await until(sockets, target, args.timeout)
    storm_cpu = cpu_seconds(pid) - cpu

    await asyncio.sleep(args.settle)
    stop.set()
    sent = await sending
    final = await revision(http_url, owner, room)
    await until(sockets, final, args.timeout)
    for socket in sockets:
        await socket.stop()
    report(args, sockets, Figures(first, acked, live, storm_cpu, idle_core, per_socket_kb, sent))
    waits.sort()
    print(
        f"sendMessage throughout: median {waits[len(waits) // 2] * 1000:.0f} ms, "
        f"slowest {waits[-1]:.1f} s (retried after 10 s without an answer)"
    )
    every = set(range(start + 1, final + 1))
    print(
        f"lost {sum(len(every - s.received) for s in sockets)}, "
        f"duplicated {sum(s.duplicates for s in sockets)}, "
        f"out of order {sum(s.out_of_order for s in sockets)} "
        f"(over {final - start} revisions x {len(sockets)} sockets)"
    )
    return first[1]


@dataclass
class Figures:
    first: tuple[float, float]  # wall and CPU seconds
    acked: float
    live: float
    storm_cpu: float
    idle_core: float
    per_socket_kb: float
    sent: int


def report(args, sockets: list[Socket], figures: Figures) -> None:
    f = figures
    first_retries = sum(s.first_retries for s in sockets)
    n = len(sockets)
    print(
        f"\n{n} sockets on one {args.server} process, {args.rate} messages/s sent "
        f"throughout ({f.sent} sent)\n"
    )
    print("| phase | wall time | server CPU | CPU per socket |")
    print("|---|---|---|---|")
    print(
        f"| first connect, {args.concurrency} at a time | {f.first[0]:.1f} s | "
        f"{f.first[1]:.1f} s | {f.first[1] / n * 1000:.2f} ms |"
    )
    print(
        f"| storm: all acked again | {f.acked:.1f} s | | |\n"
        f"| storm: all live again | {f.live:.1f} s | {f.storm_cpu:.1f} s | "
        f"{f.storm_cpu / n * 1000:.2f} ms |"
    )
    print(
        f"\nidle, {n} subscribed sockets: {f.idle_core * 100:.1f}% of a core over "
        f"{args.idle:.0f} s; memory {f.per_socket_kb:.1f} KB per socket "
        "(RSS growth over the first connect)"
    )
    retried = sum(s.retries for s in sockets)
    print(
        f"\nhandshakes retried (dropped or refused): {first_retries} on first connect, "
        f"{retried - first_retries} in the storm"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=5000)
    # 1 message a second to 5,000 subscribers is 5,000 deliveries a second, about half of
    # what one process can write; at 5 a second no process keeps up, storm or not.
    parser.add_argument("--rate", type=float, default=1, help="messages per second")
    parser.add_argument("--settle", type=float, default=3, help="seconds before and after")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--idle", type=float, default=30, help="seconds of idle measured after connecting"
    )
    parser.add_argument(
        "--concurrency", type=int, default=20, help="handshakes in flight on first connect"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the plain consumer and the Node peer"
    )
    parser.add_argument(
        "--server", choices=SERVERS, default="daphne", help="the ASGI server (default daphne)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-reconnect-"))
    with live_database(tmp) as database_url:
        stack = crowd_stack(tmp, database_url, SEND_RATE_BURST="1000000")
        room, tokens, owner = seed(database_url, args.sockets)
        server = stack.start(args.server)
        try:
            first_cpu = asyncio.run(storm(server, args, room, tokens, owner))
        finally:
            stack.stop()
    if not args.no_peers:
        asyncio.run(peers(args, first_cpu))


if __name__ == "__main__":
    main()
