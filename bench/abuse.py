"""One user's expensive queries against another user's latency, with and without the budget.

    .venv/bin/python bench/abuse.py                  # 15 s per phase
    .venv/bin/python bench/abuse.py --seconds 30 --attackers 8

Two daphne processes (`python -m server.serve`) on one database (a fresh PostgreSQL
database from DATABASE_URL, default the local server; SQLite without one): the first with
the query budget lifted (the baseline: what the server did before it had one), the second
with the default budget. On each, a victim loads a chat screen (the chat list and the
newest 30 messages) in a loop, first alone, then while attackers signed in as another user
send 30-alias queries of 100 messages with their authors as fast as they are answered. The
victim's latency is reported for each phase, with the attackers' answers by outcome. Only
127.0.0.1 is contacted, and every phase ends after `--seconds`.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.system.live import LiveStack, live_database  # noqa: E402

CREATE_ROOM = 'mutation { createRoom(name: "Busy", isPublic: true) { ... on Chat { id } } }'
JOIN = "mutation($c: ID!) { joinRoom(chatId: $c) { __typename } }"
SEND = (
    "mutation($c: ID!, $b: String!) { sendMessage(input: {chatId: $c, body: $b}) { __typename } }"
)
SCREEN = """query($c: ID!) {
  chats(first: 20) {
    edges { node { id name unreadCount lastMessage { seq body author { displayName } } } }
  }
  messages(chatId: $c, last: 30) {
    edges { node { seq body createdAt author { id displayName } } }
  }
}"""
HEAVY = (
    "query($c: ID!) { "
    + " ".join(
        f"m{n}: messages(chatId: $c, last: 100) "
        "{ edges { node { seq body createdAt author { id displayName joinedAt } } } }"
        for n in range(30)
    )
    + " }"
)


def percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 1)


async def post(client: httpx.AsyncClient, url: str, query: str, variables: dict, token: str):
    response = await client.post(
        url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.json()


async def victim(server, token, room, until: float) -> list[float]:
    timings = []
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            answer = await post(client, f"{server.url}/graphql/", SCREEN, {"c": room}, token)
            assert "errors" not in answer, answer
            timings.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return timings


async def attacker(server, token, room, until: float, outcomes: Counter) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < until:
            answer = await post(client, f"{server.url}/graphql/", HEAVY, {"c": room}, token)
            errors = answer.get("errors")
            outcomes[errors[0]["extensions"]["code"] if errors else "answered"] += 1


async def phase(server, tokens, room, seconds, attackers) -> dict:
    until = time.monotonic() + seconds
    outcomes: Counter = Counter()
    attacks = [
        asyncio.create_task(attacker(server, tokens["attacker"], room, until, outcomes))
        for _ in range(attackers)
    ]
    timings = await victim(server, tokens["victim"], room, until)
    await asyncio.gather(*attacks)
    return {
        "victim_p50_ms": percentile(timings, 50),
        "victim_p99_ms": percentile(timings, 99),
        "victim_requests": len(timings),
        "attacker_answers": dict(outcomes),
    }


async def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="abuse-"))
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp, database_url, SEND_RATE_BURST="1000", REGISTER_RATE_LIMIT_PER_ADDRESS="1000"
        )
        unlimited = stack.start(
            GRAPHQL_COST_RATE_BURST=str(10**9), GRAPHQL_COST_RATE_PER_SECOND=str(10**9)
        )
        budgeted = stack.start()
        try:
            victim_token, attacker_token = (
                unlimited.register("Victim"),
                unlimited.register("Attacker"),
            )
            room = unlimited.graphql(CREATE_ROOM, token=victim_token)["data"]["createRoom"]["id"]
            unlimited.graphql(JOIN, {"c": room}, token=attacker_token)
            for n in range(100):
                unlimited.graphql(
                    SEND, {"c": room, "b": f"message {n} " + "x" * 200}, token=victim_token
                )
            tokens = {"victim": victim_token, "attacker": attacker_token}
            results = {}
            for name, server in (("without budget", unlimited), ("with budget", budgeted)):
                results[name] = {
                    "calm": await phase(server, tokens, room, args.seconds, 0),
                    "under attack": await phase(
                        server, tokens, room, args.seconds, args.attackers
                    ),
                }
            return results
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--attackers", type=int, default=4)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
