"""Search latency over a million messages, on PostgreSQL, through HTTP.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/search.py
    ... bench/search.py --messages 200000 --queries 100      # a quicker run

One daphne process on a fresh PostgreSQL database holding `--messages` messages in 500
rooms (bodies of 6 to 20 words drawn from a 5,000-word vocabulary with a Zipf-like
spread, so some words are everywhere and most are rare), loaded with COPY; the searching
user is in 50 of the rooms. A client on 127.0.0.1 then sends `searchMessages` one at a
time: a rare word, a common word, two words, and a quoted phrase taken from a real
message, `--queries` of each, alternated with a baseline (`me { id }`, the same HTTP and
GraphQL path with no search) so the ratio means something on a noisy machine. Prints
median and p99 latency per kind. Only 127.0.0.1 is contacted; the run is bounded by
`--messages` and `--queries`.
"""

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.system.live import LiveStack, live_database  # noqa: E402

ROOMS, MY_ROOMS, VOCABULARY = 500, 50, 5000
SEARCH = """query($q: String!) {
  searchMessages(query: $q, first: 20) { edges { node { snippet message { id } } } }
}"""
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "den", "pra", "gul", "ex", "yo"]


def vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def seed(dsn: str, viewer_id: str, messages: int, rng: random.Random) -> list[str]:
    """Rooms, the viewer's memberships and `messages` messages, by COPY; returns the
    bodies of a sample of the viewer's messages (for phrase queries)."""
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf-like
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        rooms = [str(uuid.uuid4()) for _ in range(ROOMS)]
        per_room = messages // ROOMS
        rows = io.StringIO()
        for n, room in enumerate(rooms):
            rows.write(
                f"{room}\tGROUP\tRoom {n}\t\tt\t2026-01-01 00:00:00+00\t{per_room}\t{per_room}\t"
                f"{2 if n < MY_ROOMS else 1}\n"
            )
        rows.seek(0)
        cursor.copy_expert(
            "COPY chat_chat (id, kind, name, topic, is_public, created_at, last_seq, revision,"
            " member_count) FROM STDIN",
            rows,
        )
        rows = io.StringIO()
        for room in rooms[:MY_ROOMS]:
            rows.write(f"{room}\t{viewer_id}\tMEMBER\t2026-01-01 00:00:00+00\t0\n")
        rows.seek(0)
        cursor.copy_expert(
            "COPY chat_membership (chat_id, user_id, role, joined_at, last_read_seq) FROM STDIN",
            rows,
        )
        sample: list[str] = []
        started = time.perf_counter()
        for batch_start in range(0, ROOMS, 50):
            rows = io.StringIO()
            for room in rooms[batch_start : batch_start + 50]:
                mine = room in rooms[:MY_ROOMS]
                for seq in range(1, per_room + 1):
                    body = " ".join(rng.choices(words, weights, k=rng.randint(6, 20)))
                    if mine and rng.random() < 0.001:
                        sample.append(body)
                    rows.write(
                        f"{uuid.uuid4()}\t{room}\t{seq}\tTEXT\t{body}\t\t\t"
                        f"2026-01-01 00:00:00+00\n"
                    )
            rows.seek(0)
            cursor.copy_expert(
                "COPY chat_message (id, chat_id, seq, kind, body, system_event, location_label,"
                " created_at) FROM STDIN",
                rows,
            )
        print(f"loaded {per_room * ROOMS:,} messages in {time.perf_counter() - started:.0f} s")
        cursor.execute("ANALYZE chat_message")
    connection.close()
    return sample


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="of each kind")
    args = parser.parse_args()
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    with live_database(tmp) as database_url:
        if not database_url.startswith("postgres"):
            sys.exit("Set DATABASE_URL to a PostgreSQL server: this measures its search.")
        stack = LiveStack(
            tmp,
            database_url,
            SEARCH_RATE_BURST="1000000",
            REGISTER_RATE_LIMIT_PER_ADDRESS="100000",
            GRAPHQL_COST_RATE_BURST="100000000",
        )
        server = stack.start()
        try:
            token = server.register("Searcher")
            viewer = server.graphql("{ me { id } }", token=token)["data"]["me"]["id"]
            sample = seed(database_url, viewer, args.messages, rng)
            run(server, token, sample, args.queries, rng)
        finally:
            stack.stop()


def run(server, token: str, sample: list[str], count: int, rng: random.Random) -> None:
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    url = f"{server.url}/graphql/"
    words = [w for body in sample for w in body.split()]
    common = max(set(words), key=words.count)
    rare = sorted(set(words), key=words.count)[:count]

    def timed(query: str, variables: dict) -> tuple[float, dict]:
        started = time.perf_counter()
        reply = client.post(url, json={"query": query, "variables": variables}).json()
        assert "errors" not in reply, reply
        return time.perf_counter() - started, reply

    def phrase() -> str:
        body = rng.choice(sample).split()
        start = rng.randrange(len(body) - 2)
        return '"' + " ".join(body[start : start + 3]) + '"'

    kinds = {
        "baseline: me { id }": lambda n: ("{ me { id } }", {}),
        "a rare word": lambda n: (SEARCH, {"q": rare[n % len(rare)]}),
        f"a common word ({common!r})": lambda n: (SEARCH, {"q": common}),
        "two words": lambda n: (SEARCH, {"q": f"{rng.choice(words)} {rng.choice(words)}"}),
        "a quoted 3-word phrase": lambda n: (SEARCH, {"q": phrase()}),
    }
    for n in range(5):  # warm up every path
        for make in kinds.values():
            timed(*make(n))
    latencies: dict[str, list[float]] = {name: [] for name in kinds}
    hits: dict[str, list[int]] = {name: [] for name in kinds}
    for n in range(count):  # alternated, so every kind sees the same machine
        for name, make in kinds.items():
            elapsed, reply = timed(*make(n))
            latencies[name].append(elapsed)
            edges = (reply["data"].get("searchMessages") or {}).get("edges", [])
            hits[name].append(len(edges))
    baseline = statistics.median(latencies["baseline: me { id }"])
    print(f"\n{count} of each, one at a time over HTTP; the viewer is in {MY_ROOMS} rooms\n")
    print("| query | p50 | p99 | p50 vs baseline | results (first 20) |")
    print("|---|---|---|---|---|")
    for name, values in latencies.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(
            f"| {name} | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms | x{p50 / baseline:.1f} | "
            f"{statistics.mean(hits[name]):.1f} |"
        )


if __name__ == "__main__":
    main()
