"""The write path: `sendMessage` from concurrent senders over HTTP, against the SQL floor.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/sends.py
    ... bench/sends.py --senders 20 --count 50 --conn-max-age 60
    ... bench/sends.py --pool 10                  # Django's pool on psycopg 3 (make psycopg3)
    ... bench/sends.py --pgbouncer 10 --conn-max-age 60   # through PgBouncer, transaction mode
    ... bench/sends.py --server uvicorn           # or granian
    ... bench/sends.py --client-ids               # each send with a clientId, as apps send

One daphne process (`python -m server.serve`) on a fresh database (PostgreSQL from
DATABASE_URL, else SQLite). `--senders` users, each in a room of their own, send `--count`
messages each as fast as their replies come back, all at once. Prints the sends per second,
the latency, the server's CPU per send (user + system time from /proc, so the clients'
work is not counted) and how many sends failed (PostgreSQL refusing connections shows up
here).

The floor, in the same run: the same work in raw SQL on one persistent psycopg2 connection
from this process (lock the chat's row, take the next seq, insert the message, commit),
with this process's own CPU per send. Only 127.0.0.1 is contacted; the run is bounded by
`--senders` and `--count`.
"""

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from tests.system.live import SERVERS, LiveStack, PgBouncer, live_database  # noqa: E402

SEND = (
    "mutation($c: ID!, $b: String!, $k: String) "
    "{ sendMessage(input: {chatId: $c, body: $b, clientId: $k}) { __typename } }"
)
ROOM = "mutation($n: String!) { createRoom(name: $n) { ... on Chat { id } } }"


async def sender(
    url: str, token: str, room: str, count: int, client_ids: bool
) -> tuple[list[float], int]:
    latencies, failed = [], 0
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(count):
            key = f"{uuid.uuid4().hex[:12]}-{n}" if client_ids else None
            body = {"query": SEND, "variables": {"c": room, "b": f"message {n}", "k": key}}
            started = time.perf_counter()
            reply = await client.post(url, json=body, timeout=60)
            latencies.append(time.perf_counter() - started)
            data = reply.json().get("data") if reply.status_code == 200 else None
            if not (data and data["sendMessage"]["__typename"] == "Message"):
                failed += 1
    return latencies, failed


async def load(server, people: list[tuple[str, str]], count: int, client_ids: bool) -> dict:
    url = f"{server.url}/graphql/"
    await asyncio.gather(*(sender(url, t, room, 3, client_ids) for t, room in people))  # warm up
    cpu, started = cpu_seconds(server.process.pid), time.perf_counter()
    results = await asyncio.gather(
        *(sender(url, token, room, count, client_ids) for token, room in people)
    )
    wall, cpu = time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu
    latencies = sorted(x for lat, _ in results for x in lat)
    sends = len(latencies)
    return {
        "per_second": sends / wall,
        "cpu_ms": cpu / sends * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "failed": sum(failed for _, failed in results),
        "sends": sends,
    }


def floor(database_url: str, count: int) -> dict:
    """The same statements a send needs, in raw SQL on one persistent connection."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE floor_chat (id int PRIMARY KEY, last_seq int NOT NULL);"
            "CREATE TEMP TABLE floor_message (chat_id int, seq int, body text, "
            "created_at timestamptz, PRIMARY KEY (chat_id, seq));"
            "INSERT INTO floor_chat VALUES (1, 0);"
        )
    usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for n in range(count):
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT last_seq FROM floor_chat WHERE id = 1 FOR UPDATE")
            cursor.execute("UPDATE floor_chat SET last_seq = last_seq + 1 WHERE id = 1")
            cursor.execute(
                "INSERT INTO floor_message VALUES (1, %s, %s, now())", (n + 1, f"message {n}")
            )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    connection.close()
    return {"per_second": count / wall, "cpu_ms": cpu / count * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--count", type=int, default=50, help="messages per sender")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="the server's DATABASE_CONN_MAX_AGE (default: the server's, 60, or 0 with --pool)",
    )
    parser.add_argument(
        "--pool", type=int, default=0, help="DATABASE_POOL_SIZE: Django's pool, psycopg 3"
    )
    parser.add_argument(
        "--pgbouncer",
        type=int,
        default=0,
        help="serve through a PgBouncer (transaction mode) with this many server connections",
    )
    parser.add_argument("--server", choices=SERVERS, default="daphne")
    parser.add_argument(
        "--client-ids",
        action="store_true",
        help="send a clientId with each message, as Apollo and the reference client do",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sends-"))
    with live_database(tmp) as database_url:
        extra = {}
        if args.conn_max_age is not None:
            extra["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)
        if args.pool:
            extra["DATABASE_POOL_SIZE"] = str(args.pool)
        bouncer = PgBouncer(database_url, pool_size=args.pgbouncer) if args.pgbouncer else None
        if bouncer:
            extra["DATABASE_PGBOUNCER"] = "true"
        stack = LiveStack(
            tmp,
            bouncer.url if bouncer else database_url,
            psycopg3=bool(args.pool),
            SEND_RATE_BURST="1000000",
            SEND_RATE_PER_SECOND="100000",
            **extra,
        )
        server = stack.start(args.server)
        try:
            people = []
            for n in range(args.senders):
                token = server.register(f"Sender{n}")
                room = server.graphql(ROOM, {"n": f"Room {n}"}, token=token)
                people.append((token, room["data"]["createRoom"]["id"]))
            figures = asyncio.run(load(server, people, args.count, args.client_ids))
        finally:
            stack.stop()
            if bouncer:
                bouncer.stop()
        sql = (
            floor(database_url, figures["sends"]) if database_url.startswith("postgres") else None
        )

    how = (
        f"Django's pool of {args.pool} (psycopg 3)"
        if args.pool
        else f"PgBouncer, {args.pgbouncer} server connections"
        if args.pgbouncer
        else "psycopg2"
    )
    age = args.conn_max_age if args.conn_max_age is not None else 0 if args.pool else 60
    print(
        f"\n{args.senders} senders x {args.count} sendMessage over HTTP, one {args.server} "
        f"process, {how}, DATABASE_CONN_MAX_AGE={age}"
        f"{', each with a clientId' if args.client_ids else ''}\n"
    )
    print("| path | sends/s | CPU per send | p50 | p99 | failed |")
    print("|---|---|---|---|---|---|")
    print(
        f"| sendMessage over HTTP | {figures['per_second']:.0f} | {figures['cpu_ms']:.2f} ms | "
        f"{figures['p50_ms']:.0f} ms | {figures['p99_ms']:.0f} ms | {figures['failed']} |"
    )
    if sql is not None:
        print(
            f"| floor: raw SQL, one connection | {sql['per_second']:.0f} | "
            f"{sql['cpu_ms']:.3f} ms (client) | | | |"
        )
        print(f"\nsendMessage CPU / floor CPU: {figures['cpu_ms'] / sql['cpu_ms']:.0f}x")


if __name__ == "__main__":
    main()
