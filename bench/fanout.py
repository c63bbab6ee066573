"""Fan-out cost: a GraphQL subscription against the classic Channels consumer.

    .venv/bin/python bench/fanout.py                        # N = 100, 1000; in-memory layer
    .venv/bin/python bench/fanout.py --subscribers 5000 --layer redis
    .venv/bin/python bench/fanout.py --event typing --layer pubsub
    .venv/bin/python bench/fanout.py --subscribers 1000 --servers daphne uvicorn granian

For each N, one daphne process on 127.0.0.1 serves N subscriber sockets opened by this
process in one room; messages are sent at a steady rate, each carrying its send time. The
server's CPU time (utime + stime from /proc) over the run, divided by the deliveries, is
its cost per delivered event; latency is receive time minus send time at the subscriber.
One event goes out before the timed ones and is left out of every figure but "first ms",
the latency of its slowest delivery: the first event through a fresh process also pays for
that process's warm-up.
Then the same load runs against the Channels tutorial consumer (bench/baseline_asgi.py),
the baseline, and against the Node peer (bench/node_peer.mjs: graphql-js and graphql-ws with
an in-process pub/sub, the same operations and client), and the ratios are printed. Memory
per idle subscribed socket is the server's RSS growth from 0 to N subscribed sockets,
divided by N. `--servers` runs the project under uvicorn or granian too, in the same run.

GraphQL subscribers run `chatEvents(chatId)` selecting a message's seq, body, time and
author; messages are sent with `sendMessage` over HTTP (so the GraphQL figure includes
writing each message). With `--event typing` they select typing changes instead, and each
event is a `setTyping` by a different subscriber (who does not hear their own). Baseline
messages are sent over the baseline's own socket. Traffic stays on 127.0.0.1 and every
wait is bounded.
"""

import argparse
import asyncio
import json
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds, rss_bytes  # noqa: E402
from tests.system.live import SERVERS, free_port, server_command  # noqa: E402

SUBSCRIPTION = """subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) {
    ... on MessageAdded { message { seq body createdAt author { id displayName } } }
  }
}"""
SEND = """mutation($chatId: ID!, $body: String!) {
  sendMessage(input: {chatId: $chatId, body: $body}) { __typename }
}"""
TYPING_SUBSCRIPTION = """subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) { ... on TypingChanged { typing user { displayName } } }
}"""
TYPING = """mutation($chatId: ID!) { setTyping(chatId: $chatId, typing: true) { __typename } }"""


def layer_env(layer: str) -> dict[str, str]:
    if layer == "memory":
        return {"REDIS_URL": ""}
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = {"REDIS_URL": url, "CHANNEL_LAYER_PREFIX": f"bench{os.getpid()}"}
    env["CHANNEL_LAYER_BACKEND"] = {
        "redis": "channels_redis.core.RedisChannelLayer",
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    }[layer]
    return env


class Server:
    """`server` (daphne) serving `app`, or with `node=True` the Node peer (bench/node_peer.mjs)."""

    def __init__(
        self, app: str, env: dict[str, str], *, node: bool = False, server: str = "daphne"
    ) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open while the server runs
            prefix="fanout-server-", suffix=".log", delete=False
        )
        command = (
            ["node", str(ROOT / "bench" / "node_peer.mjs"), str(self.port)]
            if node
            else server_command(server, self.port, app)
        )
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Result:
    deliveries: int
    expected: int
    cpu_us_per_delivery: float
    p50_ms: float
    p99_ms: float
    rss_per_socket_kb: float
    first_ms: float  # the slowest delivery of the untimed first event


async def _subscriber(url, init, subscribe, latencies, ready, parse) -> None:
    """One socket, read until cancelled.

    The receive loop is as cheap as the client allows (a plain `async for`, the time taken
    first): a thousand of these share one core, and whatever each frame costs here is in the
    latency the bench reports as the server's.
    """
    async with connect(
        url,
        subprotocols=["graphql-transport-ws"] if init else None,
        max_queue=None,
        open_timeout=60,
    ) as ws:
        if init:
            await ws.send(json.dumps(init))
            await ws.recv()
            await ws.send(json.dumps(subscribe))
        ready.set_result(None) if not ready.done() else None
        clock, record = time.time, latencies.append
        async for raw in ws:
            now = clock()
            sent = parse(raw)
            if sent is not None:
                record(now - sent)


async def run_load(
    server: Server,
    n: int,
    messages: int,
    rate: float,
    *,
    url: str,
    init_for,
    subscribe,
    parse,
    send,
    per_event: int | None = None,
) -> Result:
    pid = server.process.pid
    await asyncio.sleep(1)
    rss_before = rss_bytes(pid)
    latencies: list[float] = []
    readies = [asyncio.get_running_loop().create_future() for _ in range(n)]
    tasks = []
    # Clients arrive in waves, each subscribed before the next: daphne closes sockets its
    # application has not accepted within its connect timeout (5 s), which thousands of
    # simultaneous handshakes on one process would exceed.
    for wave in range(0, n, 100):
        for i in range(wave, min(n, wave + 100)):
            tasks.append(
                asyncio.create_task(
                    _subscriber(url, init_for(i), subscribe, latencies, readies[i], parse)
                )
            )
        await asyncio.wait_for(asyncio.gather(*readies[wave : wave + 100]), timeout=120)
    await asyncio.sleep(2)  # every subscription has joined its group
    rss_after = rss_bytes(pid)

    per = n if per_event is None else per_event
    # One event first, out of the figures: the first through a fresh process also pays
    # for its warm-up (a request thread's first database connection, first-use caches),
    # which a 20-event run would otherwise report as its p99. Its latency is shown apart.
    await send(messages)
    await _until(lambda: len(latencies) >= per, seconds=60)
    first_ms = max(latencies, default=float("nan")) * 1000
    latencies.clear()

    cpu_before = cpu_seconds(pid)
    for m in range(messages):
        started = time.monotonic()
        await send(m)
        await asyncio.sleep(max(0, 1 / rate - (time.monotonic() - started)))
    expected = per * messages
    await _until(lambda: len(latencies) >= expected, seconds=120)
    cpu = cpu_seconds(pid) - cpu_before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(latencies)
    return Result(
        deliveries=len(latencies),
        expected=expected,
        cpu_us_per_delivery=cpu / max(1, len(latencies)) * 1e6,
        p50_ms=statistics.median(ordered) * 1000 if ordered else float("nan"),
        p99_ms=ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else float("nan"),
        rss_per_socket_kb=(rss_after - rss_before) / n / 1024,
        first_ms=first_ms,
    )


async def _until(done, *, seconds: float) -> None:
    """Until `done()` or `seconds` have passed; whatever is missing then is counted lost."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a count
        await asyncio.sleep(0.05)


def prepare_graphql(n: int) -> tuple[str, list[str], str]:
    """A room with n subscribers and a sender, each with a token (bulk inserts)."""
    import django

    django.setup()
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from chat.auth import hash_token
    from chat.models import AuthToken, Chat, Membership, User

    call_command("migrate", verbosity=0)
    users = User.objects.bulk_create(
        [
            User(email=f"n{n}-{i}@bench.test", display_name=f"Bench {i}", password="!")  # noqa: S106 - unusable
            for i in range(n + 1)
        ]
    )
    tokens = [f"ct_bench_{n}_{i}_{os.getpid()}" for i in range(n + 1)]
    expires = timezone.now() + timedelta(days=1)
    AuthToken.objects.bulk_create(
        [
            AuthToken(user=u, key_hash=hash_token(t), prefix=t[:12], expires_at=expires)
            for u, t in zip(users, tokens, strict=True)
        ]
    )
    chat = Chat.objects.create(kind="GROUP", name="bench", member_count=n + 1)
    Membership.objects.bulk_create([Membership(chat=chat, user=u) for u in users])
    return str(chat.id), tokens[:n], tokens[n]


async def bench_graphql(
    env, n, messages, rate, chat_id, tokens, sender, event, *, node=False, server="daphne"
) -> Result:
    server = Server("server.asgi:application", env, node=node, server=server)
    sent_at: dict[int, float] = {}
    try:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)

        async def send_message(m: int) -> None:
            response = await http.post(
                "/graphql/",
                json={
                    "query": SEND,
                    "variables": {"chatId": chat_id, "body": repr(time.time())},
                },
                headers={"Authorization": f"Bearer {sender}"},
            )
            assert response.json()["data"]["sendMessage"]["__typename"] == "Message", response.text

        async def send_typing(m: int) -> None:
            # Typist m is subscriber m: one indicator each, so no throttle applies; the
            # typist's own subscription does not hear it.
            sent_at[m] = time.time()
            response = await http.post(
                "/graphql/",
                json={"query": TYPING, "variables": {"chatId": chat_id}},
                headers={"Authorization": f"Bearer {tokens[m % n]}"},
            )
            assert response.json()["data"]["setTyping"]["__typename"] == "Done", response.text

        def parse(raw: str) -> float | None:
            message = json.loads(raw)
            if message.get("type") != "next":
                return None
            # Other subscribers coming online arrive as presence events: not deliveries.
            event = message["payload"]["data"]["chatEvents"]
            if "message" in event:
                return float(event["message"]["body"])
            if event.get("typing"):
                return sent_at[int(event["user"]["displayName"].split()[-1])]
            return None

        result = await run_load(
            server,
            n,
            messages,
            rate,
            url=f"ws://127.0.0.1:{server.port}/graphql/",
            init_for=lambda i: {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {tokens[i]}"},
            },
            subscribe={
                "type": "subscribe",
                "id": "1",
                "payload": {
                    "query": SUBSCRIPTION if event == "message" else TYPING_SUBSCRIPTION,
                    "variables": {"chatId": chat_id},
                },
            },
            parse=parse,
            send=send_message if event == "message" else send_typing,
            per_event=n if event == "message" else n - 1,
        )
        await http.aclose()
        return result
    finally:
        server.stop()


async def bench_baseline(env, n, messages, rate, server="daphne") -> Result:
    server = Server("bench.baseline_asgi:application", env, server=server)
    try:
        url = f"ws://127.0.0.1:{server.port}/ws/room/bench/"
        async with connect(url) as sender:

            async def send(m: int) -> None:
                await sender.send(json.dumps({"message": repr(time.time())}))

            async def drain() -> None:
                while True:
                    await sender.recv()

            draining = asyncio.create_task(drain())
            result = await run_load(
                server,
                n,
                messages,
                rate,
                url=url,
                init_for=lambda i: None,
                subscribe=None,
                parse=lambda raw: float(json.loads(raw)["message"]),
                send=send,
            )
            draining.cancel()
            return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--rate", type=float, default=10, help="messages per second")
    parser.add_argument("--layer", choices=["memory", "redis", "pubsub"], default="memory")
    parser.add_argument(
        "--event",
        choices=["message", "typing"],
        default="message",
        help="what the GraphQL side sends: sendMessage, or setTyping by a new user each time",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=sorted(SERVERS),
        default=["daphne"],
        help="ASGI servers to run the project under, each in the same run (default daphne)",
    )
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    print(
        f"layer={args.layer} event={args.event} messages={args.messages} rate={args.rate}/s",
        flush=True,
    )
    print(
        f"{'N':>6} {'target':<16} {'delivered':>15} {'CPU us/delivery':>16} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'KB/socket':>10} {'first ms':>9}",
        flush=True,
    )
    # One database for the run: this process keeps its connection to it between N.
    database = Path(tempfile.mkdtemp(prefix="fanout-")) / "bench.sqlite3"
    for n in args.subscribers:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "SECRET_KEY": "bench",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SEND_RATE_BURST": "100000",
            # One client address opens every socket, and each subscribe is priced.
            "GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS": "1000000",
            "GRAPHQL_COST_RATE_BURST": "100000000",
            "GRAPHQL_COST_RATE_PER_SECOND": "100000000",
            # No typing indicator lapses during a run: each event is delivered once.
            "TYPING_TTL": "600",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "server.settings",
            **layer_env(args.layer),
        }
        os.environ.update(
            {
                k: env[k]
                for k in ("DATABASE_URL", "SECRET_KEY", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
            }
        )
        chat_id, tokens, sender = prepare_graphql(n)
        graphql_args = (env, n, args.messages, args.rate, chat_id, tokens, sender, args.event)
        runs = {
            **{
                f"graphql-{name}": partial(bench_graphql, *graphql_args, server=name)
                for name in args.servers
            },
            "baseline": partial(bench_baseline, env, n, args.messages, args.rate),
            "node": partial(bench_graphql, *graphql_args, node=True),
        }
        results: dict[str, Result] = {}
        for target, run in runs.items():
            try:
                r = results[target] = asyncio.run(run())
            except Exception as error:  # reported; the other target still runs
                print(f"{n:>6} {target:<16} failed: {error!r}", flush=True)
                continue
            print(
                f"{n:>6} {target:<16} {r.deliveries:>7}/{r.expected:<7} "
                f"{r.cpu_us_per_delivery:>16.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
                f"{r.rss_per_socket_kb:>10.1f} {r.first_ms:>9.1f}",
                flush=True,
            )
        for ours in (f"graphql-{name}" for name in args.servers):
            for peer in ("baseline", "node"):
                if ours in results and peer in results:
                    ratio = results[ours].cpu_us_per_delivery / max(
                        results[peer].cpu_us_per_delivery, 1e-9
                    )
                    print(f"{n:>6} ratio {ours}/{peer} CPU per delivery: {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
