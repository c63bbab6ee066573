"""History and chat-list cost against history length, on PostgreSQL.

    .venv/bin/python bench/history.py            # fills once (about a minute), then times
    .venv/bin/python bench/history.py --http     # the same operations over HTTP too
    .venv/bin/python bench/history.py --http --runs 2000   # more runs: a steadier p99
    .venv/bin/python bench/history.py --http --httpx       # timed through httpx instead

Fills a database of its own (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/
chat_bench) with one chat of 1,000,000 messages, one of 1,000, and a user in 5,000 chats;
then times GraphQL operations through the project's schema and resolvers (no HTTP):

- the newest history page (`last: 50`) of the 1k chat: the baseline;
- the newest page and a page deep in the past (`before` seq 500,000) of the 1M chat;
- `chats(first: 50)` for a user in 50 chats (baseline) and for a user in 5,000 chats.

Prints median and p99 per operation and the ratios to the baselines in the same run. With
`--http`, each operation is then also timed as clients call it: POSTed to one daphne process
(`python -m server.serve`) on the same database, with the server's CPU per operation (user
+ system time from /proc), beside the in-process figure. The first HTTP line is the floor:
`{ __typename }` with the same token, what a request costs before any resolver runs. The
requests go through `bench.keepalive`, a minimal keep-alive client sending what httpx sends,
because httpx's own work added 0.2-0.5 ms to each request's time (`--httpx` times through
it). This process's own heap is frozen before each timed loop (`quiet_client_heap`): its
full garbage collections are not the server's latency either.
"""

import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat_bench"
)
os.environ.setdefault("SECRET_KEY", "bench")
# Timing, not pricing: the query budget would refuse most of the runs.
os.environ.update(GRAPHQL_COST_RATE_BURST="100000000", GRAPHQL_COST_RATE_PER_SECOND="100000000")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

import django  # noqa: E402
import psycopg2  # noqa: E402

BIG, SMALL, MANY_CHATS, FEW_CHATS = 1_000_000, 1_000, 5_000, 50
RUNS, WARMUP = 300, 30
if "--runs" in sys.argv[1:]:
    RUNS = int(sys.argv[sys.argv.index("--runs") + 1])
# Time through httpx rather than bench.keepalive (whose docstring says why it is the default).
HTTPX = "--httpx" in sys.argv[1:]

HISTORY = """query($chatId: ID!, $before: String) {
  messages(chatId: $chatId, last: 50, before: $before) {
    edges { cursor node { id seq kind body createdAt author { id displayName } } }
    pageInfo { hasPreviousPage startCursor }
  }
}"""
CHATS = """query { chats(first: 50) { edges { node {
  id name unreadCount lastMessage { seq body author { displayName } } peer { id }
} } pageInfo { hasNextPage endCursor } } }"""


def ensure_database(url: str) -> None:
    import dj_database_url

    config = dj_database_url.parse(url)
    admin = psycopg2.connect(
        dbname="postgres", user=config["USER"], host=config["HOST"], port=config["PORT"] or 5432
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{config["NAME"]}"')
    admin.close()


def fill() -> dict[str, uuid.UUID]:
    """Create the data once; later runs reuse it (ids are stored in a marker row)."""
    from django.db import connection

    from chat.models import Chat, User

    ids = {
        name: uuid.uuid5(uuid.NAMESPACE_DNS, f"bench-{name}")
        for name in ("reader", "busy", "big", "small")
    }
    if Chat.objects.filter(pk=ids["big"], last_seq=BIG).exists():
        return ids
    print("filling (once)...", flush=True)
    started = time.perf_counter()
    User.objects.filter(pk__in=[ids["reader"], ids["busy"]]).delete()
    reader = User.objects.create_user(
        f"reader-{ids['reader'].hex[:6]}@bench.test",
        "x" * 12,
        id=ids["reader"],
        display_name="Reader",
    )
    busy = User.objects.create_user(
        f"busy-{ids['busy'].hex[:6]}@bench.test", "x" * 12, id=ids["busy"], display_name="Busy"
    )
    with connection.cursor() as cursor:
        for key, size in (("big", BIG), ("small", SMALL)):
            cursor.execute(
                "INSERT INTO chat_chat (id, kind, name, topic, is_public, created_at, last_seq,"
                " revision, last_message_at, member_count) VALUES (%s, 'GROUP', %s, '', true,"
                " now(), %s, %s, now(), 1)",
                [ids[key], f"bench {key}", size, size],
            )
            cursor.execute(
                "INSERT INTO chat_membership (chat_id, user_id, role, joined_at, last_read_seq)"
                " VALUES (%s, %s, 'OWNER', now(), 0)",
                [ids[key], reader.id],
            )
            cursor.execute(
                "INSERT INTO chat_message (id, chat_id, seq, author_id, kind, body, system_event,"
                " location_label, created_at) SELECT gen_random_uuid(), %s, s, %s, 'TEXT',"
                " 'message number ' || s, '', '', now() - (%s - s) * interval '1 second'"
                " FROM generate_series(1, %s) AS s",
                [ids[key], reader.id, size, size],
            )
        # A user in 5,000 chats, each with one message, and a user in 50 (the baseline).
        for user, count in ((busy, MANY_CHATS), (reader, FEW_CHATS)):
            cursor.execute(
                "WITH c AS (INSERT INTO chat_chat (id, kind, name, topic, is_public, created_at,"
                " last_seq, revision, last_message_at, member_count) SELECT gen_random_uuid(),"
                " 'GROUP', 'room ' || s, '', false, now(), 1, 1,"
                " now() - s * interval '1 minute', 1"
                " FROM generate_series(1, %s) s RETURNING id, last_message_at),"
                " m AS (INSERT INTO chat_membership (chat_id, user_id, role, joined_at,"
                " last_read_seq) SELECT id, %s, 'OWNER', now(), 0 FROM c)"
                " INSERT INTO chat_message (id, chat_id, seq, author_id, kind, body, system_event,"
                " location_label, created_at) SELECT gen_random_uuid(), id, 1, %s, 'TEXT',"
                " 'hello', '', '', last_message_at FROM c",
                [count, user.id, user.id],
            )
        cursor.execute("ANALYZE")
    print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)
    return ids


def quiet_client_heap() -> None:
    """Keep this process's own full garbage collections out of the timings: it has Django
    and the schema loaded, and each full walk of that heap took 30-60 ms, which landed in
    whichever request it interrupted (one in a few thousand: the p99.9, sometimes the p99).
    The heap is frozen, so the collector skips it; the server is not touched."""
    import gc

    gc.collect()
    gc.freeze()


def measure(label: str, run, pid: int | None = None, check=None) -> dict[str, float]:
    """Median and p99 of `run`; with `pid`, also that process's CPU per run. `check` is
    given what `run` returned once its time is taken: decoding and checking a reply is
    the bench's work, not the server's latency."""
    from bench.proc import cpu_seconds

    for _ in range(WARMUP):
        result = run()
        if check is not None:
            check(result)
    quiet_client_heap()
    samples = []
    cpu = cpu_seconds(pid) if pid else 0.0
    for _ in range(RUNS):
        started = time.perf_counter()
        result = run()
        samples.append((time.perf_counter() - started) * 1000)
        if check is not None:
            check(result)
    samples.sort()
    figures = {
        "median": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99) - 1],
    }
    line = f"{label:<44} median {figures['median']:7.2f} ms   p99 {figures['p99']:7.2f} ms"
    if pid:
        figures["cpu"] = (cpu_seconds(pid) - cpu) / RUNS * 1000
        line += f"   server CPU {figures['cpu']:6.2f} ms"
    print(line, flush=True)
    return figures


def check_reply(reply) -> None:
    """A reply to a POST is a 200 with data and no errors."""
    assert reply.status_code == 200, reply.text
    assert "errors" not in reply.json(), reply.text


def over_http(ids: dict[str, uuid.UUID], operations: list[tuple[str, str, str, dict]]) -> None:
    """The same operations POSTed to a live daphne process on the same database."""
    import logging
    import tempfile

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from bench.keepalive import KeepAliveClient
    from chat import auth
    from chat.models import User
    from tests.system.live import LiveServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    env = {
        **os.environ,
        "DEBUG": "false",
        "GRAPHQL_COST_RATE_BURST": "100000000",
        "GRAPHQL_COST_RATE_PER_SECOND": "100000000",
    }
    env.pop("REDIS_URL", None)
    server = LiveServer(env, tmp / "daphne.log")
    tokens = {
        name: auth.issue_token(user=User.objects.get(pk=ids[name]))[0]
        for name in ("reader", "busy")
    }
    try:
        print(f"\nover HTTP, one daphne process: {RUNS} runs after {WARMUP} warm-up", flush=True)
        print(f"client: {'httpx' if HTTPX else 'bench.keepalive (as httpx sends)'}", flush=True)
        for label, query, user, variables in operations:
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            if HTTPX:
                client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
            else:
                client = KeepAliveClient(server.url, headers)

            def run(client=client, query=query, variables=variables) -> Any:
                return client.post("/graphql/", json={"query": query, "variables": variables})

            measure(label, run, server.process.pid, check=check_reply)
            client.close()
    finally:
        server.stop()


def main() -> None:
    http = "--http" in sys.argv[1:]
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.test import RequestFactory

    call_command("migrate", verbosity=0)
    ids = fill()

    from chat.models import User
    from schema import schema
    from schema.context import Context
    from schema.pagination import encode_cursor

    def runner(query: str, user: User, **variables):
        request = RequestFactory().post("/graphql/")

        def run() -> None:
            result = schema.execute_sync(
                query,
                variable_values=variables,
                context_value=Context(request=request, user=user),
            )
            assert result.errors is None, result.errors

        return run

    reader = User.objects.get(pk=ids["reader"])
    busy = User.objects.get(pk=ids["busy"])
    deep = encode_cursor([BIG // 2])
    print(f"history page: last 50, {RUNS} runs after {WARMUP} warm-up, PostgreSQL", flush=True)
    small_newest = measure(
        "newest page, 1k-message chat (baseline)",
        runner(HISTORY, reader, chatId=str(ids["small"])),
    )
    big_newest = measure(
        "newest page, 1M-message chat", runner(HISTORY, reader, chatId=str(ids["big"]))
    )
    big_deep = measure(
        "page before seq 500,000, 1M-message chat",
        runner(HISTORY, reader, chatId=str(ids["big"]), before=deep),
    )
    few = measure(f"chats(first: 50), user in {FEW_CHATS} chats (baseline)", runner(CHATS, reader))
    many = measure(f"chats(first: 50), user in {MANY_CHATS} chats", runner(CHATS, busy))
    print()
    print(
        f"ratio deep page (1M) / newest page (1k): "
        f"median {big_deep['median'] / small_newest['median']:.2f}, "
        f"p99 {big_deep['p99'] / small_newest['p99']:.2f}"
    )
    print(
        f"ratio newest page (1M) / newest page (1k): "
        f"median {big_newest['median'] / small_newest['median']:.2f}"
    )
    print(
        f"ratio chats in {MANY_CHATS} / in {FEW_CHATS}: "
        f"median {many['median'] / few['median']:.2f}, p99 {many['p99'] / few['p99']:.2f}"
    )
    if http:
        over_http(
            ids,
            [
                # What any signed-in request costs through daphne, Django and Strawberry:
                # the part of each figure below that no resolver can save.
                ("floor: { __typename }, signed in", "query { __typename }", "reader", {}),
                ("newest page, 1k-message chat", HISTORY, "reader", {"chatId": str(ids["small"])}),
                ("newest page, 1M-message chat", HISTORY, "reader", {"chatId": str(ids["big"])}),
                (
                    "page before seq 500,000, 1M-message chat",
                    HISTORY,
                    "reader",
                    {"chatId": str(ids["big"]), "before": deep},
                ),
                (f"chats(first: 50), user in {FEW_CHATS} chats", CHATS, "reader", {}),
                (f"chats(first: 50), user in {MANY_CHATS} chats", CHATS, "busy", {}),
            ],
        )


if __name__ == "__main__":
    main()
