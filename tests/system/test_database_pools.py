"""The server on pooled PostgreSQL connections, each way the README offers: through a real
PgBouncer in transaction mode, and on Django's own pool with psycopg 3. Concurrent sends
keep their guarantees (gapless seq, every subscriber hears each message once, in order)
while PostgreSQL sees no more connections than the pool allows."""

import asyncio
import os
import subprocess
import sys

import httpx
import psycopg2
import pytest

from tests.system.live import ROOT, LiveStack, PgBouncer, live_database, with_psycopg3
from tests.system.test_scale_out import CREATE_ROOM, JOIN, SEND, Listener

pytestmark = pytest.mark.system

SENDERS, EACH, POOL = 10, 4, 4
# Everyone signs up and sends from 127.0.0.1 at once.
LIMITS = {"SEND_RATE_BURST": "1000", "REGISTER_RATE_LIMIT_PER_ADDRESS": "100000"}
HISTORY = "query($c: ID!) { messages(chatId: $c, last: 100) { edges { node { seq body } } } }"


@pytest.fixture
def postgres_url(tmp_path):
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("pools are PostgreSQL's: this runs in the PostgreSQL + Redis pass")
    with live_database(tmp_path) as url:
        yield url


def _connections(database_url: str) -> int:
    """Client connections PostgreSQL holds to this database, this one excluded."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        return cursor.fetchone()[0]


async def _exercise(server) -> tuple[list[tuple[int, str]], list[int]]:
    """Everyone sends at once into one room while a member listens; what was heard, and
    the seqs the history holds."""
    owner = server.register("Owner")
    room = server.graphql(CREATE_ROOM, token=owner)["data"]["createRoom"]["id"]
    listener_token = server.register("Listener")
    senders = [server.register(f"Sender{n}") for n in range(SENDERS)]
    for token in [listener_token, *senders]:
        assert server.graphql(JOIN, {"c": room}, token=token)["data"]["joinRoom"]
    first = 2 + SENDERS  # created, then the joins

    async def send(client: httpx.AsyncClient, token: str, n: int) -> None:
        for i in range(EACH):
            reply = await client.post(
                "/graphql/",
                json={"query": SEND, "variables": {"c": room, "b": f"{n}.{i}"}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert reply.json()["data"]["sendMessage"]["__typename"] == "Message", reply.text

    async with (
        Listener(server, listener_token, room) as listener,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        await asyncio.gather(*(send(client, t, n) for n, t in enumerate(senders)))
        await listener.collect(lambda _: len(listener.messages()) >= SENDERS * EACH, 20)
    history = server.graphql(HISTORY, {"c": room}, token=owner)["data"]["messages"]["edges"]
    seqs = [edge["node"]["seq"] for edge in history if edge["node"]["seq"] > first]
    return listener.messages(), seqs


def _check(heard: list[tuple[int, str]], seqs: list[int]) -> None:
    first = 2 + SENDERS
    total = SENDERS * EACH
    assert seqs == list(range(first + 1, first + total + 1))
    assert [seq for seq, _ in heard] == seqs
    assert sorted(body for _, body in heard) == sorted(
        f"{n}.{i}" for n in range(SENDERS) for i in range(EACH)
    )


def _backends(database_url: str) -> set[tuple[int, object]]:
    """The server's PostgreSQL sessions on this database, by pid and start time."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        return set(cursor.fetchall())


def test_requests_reuse_their_database_connection_by_default(tmp_path, postgres_url):
    """A new session per request doubled a small query's latency (bench/RESULTS.md)."""
    stack = LiveStack(tmp_path, postgres_url, **LIMITS)
    try:
        server = stack.start()
        token = server.register("Reader")
        server.graphql("{ me { id } }", token=token)
        first = _backends(postgres_url)
        for _ in range(20):
            assert server.graphql("{ me { id } }", token=token)["data"]["me"]
        assert first
        assert _backends(postgres_url) == first
    finally:
        stack.stop()


async def test_the_server_works_through_pgbouncer_in_transaction_mode(tmp_path, postgres_url):
    bouncer = PgBouncer(postgres_url, pool_size=POOL)
    stack = LiveStack(
        tmp_path,
        bouncer.url,
        DATABASE_PGBOUNCER="true",
        DATABASE_CONN_MAX_AGE="60",
        **LIMITS,
    )
    try:
        _check(*await _exercise(stack.start()))
        assert bouncer.server_connections() <= POOL
        assert _connections(postgres_url) <= POOL
    finally:
        stack.stop()
        bouncer.stop()


async def test_the_server_works_on_djangos_pool_with_psycopg3(tmp_path, postgres_url):
    stack = LiveStack(
        tmp_path,
        postgres_url,
        psycopg3=True,
        DATABASE_POOL_SIZE=str(POOL),
        **LIMITS,
    )
    try:
        # The server would refuse DATABASE_POOL_SIZE on psycopg2: it starting is the proof
        # that it runs on psycopg 3.
        _check(*await _exercise(stack.start()))
        assert _connections(postgres_url) <= POOL
    finally:
        stack.stop()


def _starting(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Django set up with these settings, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "server.settings", "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
    )


def test_the_pool_without_psycopg3_is_refused_at_startup():
    result = _starting(
        {
            "PYTHONPATH": "",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "DATABASE_POOL_SIZE": "4",
        }
    )

    assert result.returncode != 0
    assert "DATABASE_POOL_SIZE needs psycopg 3" in result.stderr


def test_the_pool_and_persistent_connections_are_refused_together(postgres_url):
    """Django's pool hands connections back after each request; a max age would keep them
    instead. Both at once is a configuration mistake, said at startup."""
    result = _starting(
        with_psycopg3(
            {
                "DATABASE_URL": postgres_url,
                "DATABASE_POOL_SIZE": "4",
                "DATABASE_CONN_MAX_AGE": "60",
            }
        )
    )

    assert result.returncode != 0
    assert "DATABASE_POOL_SIZE and DATABASE_CONN_MAX_AGE exclude each other" in result.stderr
